"""A tiny application that sends its spans and its own scores to tracejudge (see examples/README.md).

It answers one question inside two OpenTelemetry SDK spans (`answer_question`, and `llm.call` under it, with
their input and output in OpenInference's `input.value` / `output.value`), exports them over OTLP/HTTP, and
scores them with the Python client: `score_current_span` (the `llm.call` span), `score_current_trace` (the
whole trace), and later `create_score` on the trace's id (a user's thumbs-up and a reviewer's label, as they
arrive after the request). Then it flushes both and prints what it sent.

    make run                                   # the service, in another terminal
    .venv/bin/python examples/score_app.py

Where it sends, from the standard variables: OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318) for
the spans, TRACEJUDGE_API_URL (default http://localhost:8080) for the scores.
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import tracejudge_client
from tracejudge_client import TraceJudge

QUESTION = "How long does a refund take?"


def call_llm(prompt: str) -> str:
    """The application's model call (a canned answer here)."""
    return "Refunds reach your account within five business days."


def answer(judge: TraceJudge, tracer: trace.Tracer, question: str) -> tuple[str, str]:
    """Answer inside two spans, scoring the inner span and the trace; (trace id, llm.call span id) in hex."""
    with tracer.start_as_current_span("answer_question") as root:
        root.set_attribute("input.value", question)
        with tracer.start_as_current_span("llm.call") as llm:
            llm.set_attribute("input.value", question)
            reply = call_llm(question)
            llm.set_attribute("output.value", reply)
            # an app-side check of this span's output
            judge.score_current_span(name="mentions_timeframe", value="business days" in reply)
        root.set_attribute("output.value", reply)
        judge.score_current_trace(name="helpfulness", value=0.85, comment="answers the question asked")
    ids = llm.get_span_context()
    return format(ids.trace_id, "032x"), format(ids.span_id, "016x")


def main() -> int:
    provider = TracerProvider(resource=Resource.create({"service.name": "score-app"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    judge = tracejudge_client.get_client()  # the default client, from TRACEJUDGE_API_URL etc.

    trace_id, span_id = answer(judge, trace.get_tracer("score_app"), QUESTION)

    # Later, by id: the user's thumbs-up (module-level shortcut) and a reviewer's label on the model call.
    tracejudge_client.create_score(name="user_feedback", value=True, trace_id=trace_id, comment="thumbs up")
    judge.create_score(
        name="tone",
        value="friendly",
        trace_id=trace_id,
        observation_id=span_id,
        data_type="CATEGORICAL",
        score_id=f"tone-{trace_id}",
    )

    provider.shutdown()  # exports the spans
    delivered = judge.flush(timeout_s=10)
    print(f"trace_id={trace_id} span_id={span_id}")
    print("spans: answer_question, llm.call (input.value / output.value)")
    print(f"scores: sent {judge.sent}, failed {judge.failed}, dropped {judge.dropped}")
    print("  mentions_timeframe=True on the span, helpfulness=0.85 on the trace,")
    print("  user_feedback=True on the trace, tone='friendly' on the span")
    return 0 if delivered and judge.sent == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
