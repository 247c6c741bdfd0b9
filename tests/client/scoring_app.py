"""A tiny LLM application for the client tests, run as its own process (the instrumentations patch ``openai``
globally):

    python -m tests.client.scoring_app --instrumentation openinference --base-url http://127.0.0.1:PORT/v1

It traces with the OTel SDK and one REAL openai instrumentation (``tests/integration/instrumented_app.py``'s
``instrument``), handles one request in a span of its own, makes one Chat Completions call to the fake LLM
server, and scores with the module-level shortcuts (the default client, from ``TRACEJUDGE_API_URL``): the
instrumentation's span from inside the call (an HTTP response hook runs while that span is current), then
the request's trace. It exits without flushing (the exit flush delivers) after printing one JSON line: the
finished spans with their ids.
"""

from __future__ import annotations

import argparse
import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import tracejudge_client
from tests.integration.instrumented_app import INSTRUMENTATIONS, Recorder, instrument


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrumentation", choices=INSTRUMENTATIONS, required=True)
    parser.add_argument("--base-url", required=True, help="the OpenAI base URL (…/v1)")
    args = parser.parse_args(argv)
    provider = TracerProvider(resource=Resource.create({"service.name": "llm-app"}))
    recorder = Recorder()
    provider.add_span_processor(recorder)
    instrument(args.instrumentation, provider)

    import openai

    def score_the_llm_span(response: object) -> None:
        tracejudge_client.score_current_span(name="llm-call", value=0.5)

    http = openai.DefaultHttpxClient(event_hooks={"response": [score_the_llm_span]})
    client = openai.OpenAI(base_url=args.base_url, api_key="x", max_retries=0, http_client=http)
    with provider.get_tracer("app").start_as_current_span("handle-request"):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
        tracejudge_client.score_current_trace(name="request", value=True)
    print(json.dumps({"spans": recorder.spans}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
