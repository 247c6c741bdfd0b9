"""Spans from REAL openai instrumentations, calling the fake chat-completions server, get the right Input/Output.

Each instrumentation runs in its own process (``tests/integration/instrumented_app.py``: they all patch the
``openai`` SDK globally), exports over OTLP gRPC or HTTP to a running tracejudge, and the test reads the
instrumentation's span back from ``otel_traces``. The versions are pinned in the ``test`` extra of
``pyproject.toml``; a missing package fails the child process and so the test (nothing is skipped).

What the pinned versions put on their chat span (checked here):

* ``openinference-instrumentation-openai`` 0.1.66: ``ChatCompletion`` with ``input.value`` (the whole request
  as JSON) and ``output.value`` (the whole response as JSON), ``llm.input_messages.N.message.*``,
  ``llm.output_messages.N.message.*``, ``llm.token_count.*``, ``openinference.span.kind=LLM``; ``session.id``
  from ``using_session``.
* OpenLLMetry ``opentelemetry-instrumentation-openai`` 0.62.4: ``openai.chat`` with ``gen_ai.input.messages``
  / ``gen_ai.output.messages`` (JSON strings ``[{role, parts: [{type: "text", content}]}]``),
  ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``. Content is on by default
  (``TRACELOOP_TRACE_CONTENT``).
* ``opentelemetry-instrumentation-openai-v2`` 2.4b0 with ``opentelemetry-util-genai`` 1.1b0: ``chat
  fake-model`` (scope ``opentelemetry.util.genai.handler``) with ``gen_ai.operation.name``,
  ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.*``, ``gen_ai.usage.*``; the messages
  (``gen_ai.input.messages`` / ``gen_ai.output.messages``, same shape as above) only with
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only`` (or ``span_and_event``); ``true`` is not a
  valid value on this path and by default there is no content, so no Input/Output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import REPO, ServiceProcess

pytestmark = pytest.mark.timeout(120)

SYSTEM = "You answer in one short sentence."
COLUMNS = (
    "SpanName", "ScopeName", "TraceId", "SpanId", "ServiceName", "Project", "SessionId", "Input", "Output",
    "SpanAttributes",
)  # fmt: skip


@dataclass
class Run:
    project: str
    session: str
    message: str
    reply: str
    spans: list[dict[str, Any]]
    row: dict[str, Any]


def run_app(
    service: ServiceProcess,
    llm: FakeLLMServer,
    instrumentation: str,
    protocol: str,
    env: dict[str, str] | None = None,
) -> Run:
    """Run the instrumented app in a child process; return what it printed and its one stored span."""
    tag = uuid.uuid4().hex[:10]
    project = f"{instrumentation}-{tag}"
    session = f"sess-{tag}"
    # Distinctive, and with a quote and non-ASCII letters so JSON escaping would show.
    message = f'Which city is "{tag}": Zürich or Genève?'
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    child_env.update(env or {})
    endpoint = service.otlp_grpc if protocol == "grpc" else service.otlp_http
    cmd = [
        sys.executable, "-m", "tests.integration.instrumented_app", "--instrumentation", instrumentation,
        "--protocol", protocol, "--endpoint", endpoint, "--base-url", llm.openai_base_url,
        "--project", project, "--session", session, "--message", message,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=child_env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"{instrumentation} app failed:\n{proc.stdout}\n{proc.stderr}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["flushed"] is True
    assert out["reply"] == "echo: " + message

    # The instrumented call really reached the fake server with our message.
    bodies = [r["body"] for r in llm.requests_for("/v1/chat/completions")]
    assert any(b["messages"][-1]["content"] == message for b in bodies)

    service.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", len(out["spans"]))
    rows = service.sql(f"SELECT {', '.join(COLUMNS)} FROM otel_traces WHERE Project = '{project}'")
    assert len(rows) == 1, rows
    row = dict(zip(COLUMNS, rows[0], strict=True))
    return Run(project, session, message, out["reply"], out["spans"], row)


def assert_same_span(run: Run, name: str, scope: str) -> dict[str, str]:
    """The stored row is the one span the instrumentation made; return its remaining attributes."""
    [span] = run.spans
    assert (span["name"], span["scope"]) == (name, scope)
    row = run.row
    assert (row["SpanName"], row["ScopeName"]) == (name, scope)
    assert (row["TraceId"], row["SpanId"]) == (span["trace_id"], span["span_id"])
    assert row["Project"] == run.project
    attrs = row["SpanAttributes"]
    assert isinstance(attrs, dict), attrs
    return attrs


def genai_texts(messages_json: str) -> list[tuple[str, str]]:
    """(role, text) pairs of an OTel GenAI ``gen_ai.input.messages`` / ``gen_ai.output.messages`` value."""
    messages = json.loads(messages_json)
    return [(m["role"], p["content"]) for m in messages for p in m["parts"] if p["type"] == "text"]


def test_openinference_openai(service: ServiceProcess, llm: FakeLLMServer) -> None:
    run = run_app(service, llm, "openinference", "grpc")
    attrs = assert_same_span(run, "ChatCompletion", "openinference.instrumentation.openai")
    row = run.row

    # Input is OpenInference's input.value: the whole request as JSON; Output its output.value.
    request = json.loads(row["Input"])
    assert request["model"] == "fake-model"
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": run.message},
    ]
    response = json.loads(row["Output"])
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"] == {
        "role": "assistant",
        "content": run.reply,
        "refusal": None,
        "annotations": [],
    }

    # The attributes that supplied them moved to the columns; the flattened messages stay.
    assert "input.value" not in attrs and "output.value" not in attrs
    assert attrs["input.mime_type"] == attrs["output.mime_type"] == "application/json"
    assert attrs["openinference.span.kind"] == "LLM"
    assert attrs["llm.input_messages.1.message.content"] == run.message
    assert attrs["llm.output_messages.0.message.content"] == run.reply
    assert attrs["llm.model_name"] == "fake-model"
    assert int(attrs["llm.token_count.total"]) > 0

    # using_session() puts session.id on the span itself.
    assert attrs["session.id"] == run.session
    assert row["SessionId"] == run.session
    assert row["ServiceName"] == "instrumented-app-openinference"


def test_openllmetry_openai(service: ServiceProcess, llm: FakeLLMServer) -> None:
    run = run_app(service, llm, "openllmetry", "http")
    attrs = assert_same_span(run, "openai.chat", "opentelemetry.instrumentation.openai.v1")
    row = run.row

    # Current OTel GenAI message attributes, as JSON strings.
    assert genai_texts(row["Input"]) == [("system", SYSTEM), ("user", run.message)]
    assert genai_texts(row["Output"]) == [("assistant", run.reply)]
    assert json.loads(row["Output"])[0]["finish_reason"] == "stop"
    assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs

    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "fake-model"
    assert int(attrs["gen_ai.usage.input_tokens"]) > 0
    assert int(attrs["gen_ai.usage.output_tokens"]) > 0
    # No legacy indexed prompt attributes that could compete for Input.
    assert not any(k.startswith(("gen_ai.prompt", "gen_ai.completion", "traceloop.entity")) for k in attrs)

    # No session hook without traceloop-sdk: session.id comes from the resource.
    assert "session.id" not in attrs
    assert row["SessionId"] == run.session
    assert row["ServiceName"] == "instrumented-app-openllmetry"


OPENAI_V2_CONTENT = {
    "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
}


def assert_openai_v2_span(run: Run) -> dict[str, str]:
    attrs = assert_same_span(run, "chat fake-model", "opentelemetry.util.genai.handler")
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "fake-model"
    assert attrs["gen_ai.response.finish_reasons"] == '["stop"]'
    assert int(attrs["gen_ai.usage.input_tokens"]) > 0
    assert int(attrs["gen_ai.usage.output_tokens"]) > 0
    # No session hook for chat calls: session.id comes from the resource.
    assert "session.id" not in attrs and "gen_ai.conversation.id" not in attrs
    assert run.row["SessionId"] == run.session
    assert run.row["ServiceName"] == "instrumented-app-openai-v2"
    return attrs


def test_openai_v2_with_span_content(service: ServiceProcess, llm: FakeLLMServer) -> None:
    run = run_app(service, llm, "openai-v2", "grpc", env=OPENAI_V2_CONTENT)
    attrs = assert_openai_v2_span(run)
    assert genai_texts(run.row["Input"]) == [("system", SYSTEM), ("user", run.message)]
    assert genai_texts(run.row["Output"]) == [("assistant", run.reply)]
    assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs


def test_openai_v2_default_has_no_content(service: ServiceProcess, llm: FakeLLMServer) -> None:
    """By default (and with the legacy value ``true``) openai-v2 records no messages: nothing to derive."""
    run = run_app(
        service, llm, "openai-v2", "http", env={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    )
    attrs = assert_openai_v2_span(run)
    assert run.row["Input"] == "" and run.row["Output"] == ""
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.prompt")) for k in attrs)
