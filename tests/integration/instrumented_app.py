"""A tiny LLM "application" traced by one REAL openai instrumentation, run as its own process by the tests.

Every instrumentation patches the ``openai`` SDK globally, so each one gets a fresh interpreter:

    python -m tests.integration.instrumented_app --instrumentation openinference --protocol grpc \\
        --endpoint 127.0.0.1:4317 --base-url http://127.0.0.1:PORT/v1 --project P --session S --message M

It sets up a TracerProvider whose resource carries ``tracejudge.project``, exports over OTLP (gRPC or HTTP
protobuf) to the given endpoint, instruments ``openai``, makes one Chat Completions call to the base URL (the
fake server in ``tests/fakes``), flushes, and prints one JSON line: the answer and the finished spans.

Session: OpenInference has ``using_session`` (a ``session.id`` span attribute); OpenLLMetry without
``traceloop-sdk`` and ``opentelemetry-instrumentation-openai-v2`` have no per-call session hook, so for them
``session.id`` goes on the resource (tracejudge's documented fallback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

INSTRUMENTATIONS = ("openinference", "openllmetry", "openai-v2")


class Recorder(SpanProcessor):
    """Remembers the finished spans so the test can match them with what tracejudge stored."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.get_span_context()
        assert ctx is not None
        self.spans.append(
            {
                "name": span.name,
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
                "attributes": sorted((span.attributes or {}).keys()),
            }
        )


def exporter(protocol: str, endpoint: str) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http(endpoint=endpoint.rstrip("/") + "/v1/traces")


def instrument(name: str, provider: TracerProvider) -> None:
    if name == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference

        OpenInference().instrument(tracer_provider=provider)
    elif name == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetry

        OpenLLMetry().instrument(tracer_provider=provider)
    else:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OpenAIV2

        OpenAIV2().instrument(tracer_provider=provider)


@contextlib.contextmanager
def session_scope(name: str, session: str) -> Iterator[None]:
    if name == "openinference" and session:
        from openinference.instrumentation import using_session

        with using_session(session):
            yield
    else:
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrumentation", choices=INSTRUMENTATIONS, required=True)
    parser.add_argument("--protocol", choices=("grpc", "http"), required=True)
    parser.add_argument("--endpoint", required=True, help="host:port for gRPC, a base URL for HTTP")
    parser.add_argument("--base-url", required=True, help="the OpenAI base URL (…/v1)")
    parser.add_argument("--project", required=True)
    parser.add_argument("--session", default="")
    parser.add_argument("--message", required=True)
    args = parser.parse_args(argv)

    attrs = {"service.name": f"instrumented-app-{args.instrumentation}", "tracejudge.project": args.project}
    if args.session and args.instrumentation != "openinference":
        attrs["session.id"] = args.session
    provider = TracerProvider(resource=Resource.create(attrs))
    recorder = Recorder()
    provider.add_span_processor(recorder)
    provider.add_span_processor(BatchSpanProcessor(exporter(args.protocol, args.endpoint)))
    instrument(args.instrumentation, provider)

    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key="x", max_retries=0, timeout=30.0)
    with session_scope(args.instrumentation, args.session):
        resp = client.chat.completions.create(
            model="fake-model",
            messages=[
                {"role": "system", "content": "You answer in one short sentence."},
                {"role": "user", "content": args.message},
            ],
        )
    flushed = provider.force_flush(30_000)
    provider.shutdown()
    print(json.dumps({"reply": resp.choices[0].message.content, "flushed": flushed, "spans": recorder.spans}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
