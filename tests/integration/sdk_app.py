"""The Langfuse or InteractiveAI SDK's own example, unchanged, run as its own process by the tests:

    python -m tests.integration.sdk_app langfuse|interactiveai

Each SDK reads its host and keys from its own environment variables (``LANGFUSE_BASE_URL``,
``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY``; ``INTERACTIVEAI_BASE_URL``, ``INTERACTIVEAI_PUBLIC_KEY``,
``INTERACTIVEAI_SECRET_KEY``): pointing them at tracejudge is the whole change. The example opens a span with
input and output, scores it (``score_current_span``) and its trace (``score_current_trace``), scores the trace
again by id (``create_score``), flushes, and prints one JSON line: the trace and span ids, and every address it connected to that is not
loopback (an audit hook sees each `socket.connect`; the SDKs must reach nothing but the host they are given).
Both SDKs set up OpenTelemetry globally, so each gets a fresh interpreter.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Any

QUESTION = {"question": "What is the capital of France?"}
ANSWER = "Paris"
REMOTE: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = str(args[1][0])
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            REMOTE.append(host)


def langfuse_example() -> dict[str, Any]:
    from langfuse import Langfuse

    langfuse = Langfuse()
    with langfuse.start_as_current_observation(
        as_type="span", name="answer-question", input=QUESTION
    ) as span:
        span.update(output=ANSWER)
        langfuse.score_current_span(name="relevance", value=0.9, comment="on topic")
        langfuse.score_current_trace(name="helpful", value=1.0, data_type="BOOLEAN")
        ids = {"trace_id": span.trace_id, "span_id": span.id}
    langfuse.create_score(name="tone", value="friendly", trace_id=ids["trace_id"], data_type="CATEGORICAL")
    langfuse.flush()
    return ids


def interactiveai_example() -> dict[str, Any]:
    from interactiveai import Interactive

    interactiveai = Interactive()
    with interactiveai.start_as_current_span(name="answer-question", input=QUESTION) as span:
        span.update(output=ANSWER)
        interactiveai.score_current_span(name="relevance", value=0.9, comment="on topic")
        interactiveai.score_current_trace(name="helpful", value=1.0, data_type="BOOLEAN")
        ids = {"trace_id": span.trace_id, "span_id": span.id}
    interactiveai.create_score(
        name="tone", value="friendly", trace_id=ids["trace_id"], data_type="CATEGORICAL"
    )
    interactiveai.flush()
    return ids


if __name__ == "__main__":
    sys.addaudithook(_audit)
    example = {"langfuse": langfuse_example, "interactiveai": interactiveai_example}[sys.argv[1]]
    print(json.dumps({**example(), "remote": REMOTE}), flush=True)
