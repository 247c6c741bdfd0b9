"""autoevals scorers with the REAL autoevals and openai SDK against the fake LLM server.

Through `make_client` (each OpenAI protocol, the SDK errors on the JudgeError tree, unreadable answers,
calls refused before anything is sent), through the executor (a 429 with Retry-After, then success) and the
judge step (score rows and judge spans, and the error row of a trace without an expected answer), and end to
end through a running service into ClickHouse.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from connectors.llm.factory import make_client
from dataflow.errors import (
    JudgeBadResponse,
    JudgeError,
    JudgeRateLimited,
    JudgeRequestError,
    JudgeServerError,
)
from dataflow.judging.autoevals_scorer import AutoevalsRequest, AutoevalsSpec
from dataflow.judging.connections import ConnectionSpec
from dataflow.judging.executor import ExecutorConfig, JudgeExecutor
from dataflow.model import ScoreRow, Span
from dataflow.rules.engine import EvalTask
from dataflow.rules.model import compile_rule, parse_rule
from dataflow.scoring.judge_step import JudgeContext, JudgeLogic, Pending, RuleBudgets, jobs_for
from tests import builders
from tests.builders import trace
from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess
from tests.integration.test_judges_e2e import wait_rows
from tests.integration.test_llm_clients import judge, judge_error
from tests.integration.test_rules_e2e import FAST_WINDOWS, call

KEY_ENV = "TRACEJUDGE_TEST_AUTOEVALS_KEY"
MODEL = "judge-model-ae"
PATHS = {"chat_completions": "/v1/chat/completions", "responses": "/v1/responses"}
FACT: dict[str, Any] = {"type": "autoevals", "name": "Factuality", "connection": "fake", "threshold": 0.5}


@pytest.fixture
def srv(llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    monkeypatch.setenv(KEY_ENV, "test-key")
    return llm


def make_spec(srv: FakeLLMServer, protocol: str = "chat_completions", **kw: Any) -> ConnectionSpec:
    provider = "anthropic" if protocol == "messages" else "openai"
    fields: dict[str, Any] = {
        "name": "fake", "provider": provider, "protocol": protocol, "api_key_env": KEY_ENV, "model": MODEL,
        "base_url": srv.anthropic_base_url if provider == "anthropic" else srv.openai_base_url, "timeout_s": 5.0,
        "input_price_per_mtok": 2.0, "output_price_per_mtok": 10.0,
    }  # fmt: skip
    fields.update(kw)
    return ConnectionSpec(**fields)


def span(sid: str, output: str, expected: str | None) -> Span:
    attrs = {} if expected is None else {"tracejudge.expected": expected}
    return builders.span(
        trace_id="b" * 32, span_id=sid, parent_span_id="root", name="llm.call", start_ns=1,
        input="What is the capital of France?", output=output, attributes=attrs,
    )  # fmt: skip


def fact_request(output: str, expected: str | None = "Paris") -> AutoevalsRequest:
    s = span("c1", output, expected)
    return AutoevalsSpec.model_validate(FACT).build_request(trace(s), s)


# ---- through the client -------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["chat_completions", "responses"])
def test_factuality_runs_on_each_openai_protocol(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol, params={"temperature": 0.0, "tools": "clobbered"})
    good = judge(spec, fact_request("The capital is Paris."))
    bad = judge(spec, fact_request("The capital is Lyon."))
    assert (good.score, good.choice, bad.score, bad.choice) == (1.0, "C", 0.0, "D")
    assert "contains the expected answer" in good.rationale and good.model == MODEL
    assert good.input_tokens > 100 and good.output_tokens > 0 and '"choice":"C"' in good.raw
    reqs = srv.requests
    assert [r["path"] for r in reqs] == [PATHS[protocol]] * 2  # one request per call: no retries inside
    assert all(r["headers"].get("x-stainless-retry-count", "0") == "0" for r in reqs)
    body = reqs[0]["body"]
    assert body["model"] == MODEL and body["temperature"] == 0.0  # connection params; reserved keys are not
    messages = body["messages"] if protocol == "chat_completions" else body["input"]
    assert "[Expert]: Paris" in messages[0]["content"]  # autoevals' own Factuality prompt
    (tool,) = body["tools"]
    if protocol == "chat_completions":
        assert tool["function"]["name"] == "select_choice"
        assert body["tool_choice"] == {"type": "function", "function": {"name": "select_choice"}}
    else:
        assert tool["name"] == "select_choice" and tool["strict"] is True
        assert tool["parameters"]["additionalProperties"] is False  # what strict mode demands
        assert body["tool_choice"] == {"type": "function", "name": "select_choice"}
        assert body["store"] is False


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 429, "retry_after": 2.5}, JudgeRateLimited),
        ({"status": 503}, JudgeServerError),
        ({"status": 400, "message": "bad tool"}, JudgeRequestError),
        ({"bad_structured": "out_of_range"}, JudgeBadResponse),
        ({"bad_structured": "not_json"}, JudgeBadResponse),
        ({"malformed": True}, JudgeBadResponse),
    ],
)
def test_faults_map_onto_the_judge_error_tree(
    srv: FakeLLMServer, fault: dict[str, Any], error: type[JudgeError]
) -> None:
    spec = make_spec(srv)
    srv.fail_next(fault)
    err = judge_error(spec, fact_request("Paris"))
    assert type(err) is error, err
    assert len(srv.requests) == 1  # autoevals' own retry loop (100 x RateLimitError) is off too
    if isinstance(err, JudgeRateLimited):
        assert err.retry_after_s == 2.5 and "HTTP 429" in str(err)
    if fault.get("bad_structured"):
        assert "autoevals Factuality could not read the answer" in str(err)


def test_a_missing_expected_or_an_anthropic_connection_sends_nothing(srv: FakeLLMServer) -> None:
    err = judge_error(make_spec(srv), fact_request("Paris", expected=None))
    assert isinstance(err, JudgeRequestError) and str(err).startswith("autoevals Factuality needs `expected`")
    err = judge_error(make_spec(srv, "messages", model="claude"), fact_request("Paris"))
    assert isinstance(err, JudgeRequestError) and "autoevals scorers need an OpenAI connection" in str(err)
    assert srv.requests == []


# ---- through the executor and the judge step ----------------------------------------------------------------


def test_a_429_with_retry_after_is_retried_by_the_executor(srv: FakeLLMServer) -> None:
    executor = JudgeExecutor(make_client, ExecutorConfig(max_backoff_s=0.05))
    executor.start()
    try:
        srv.fail_next(status=429, retry_after=0.4)
        (result,) = executor.submit([(make_spec(srv, max_retries=2), fact_request("Paris"))]).result(
            timeout=30
        )
    finally:
        executor.stop()
    assert result.answer is not None and result.answer.choice == "C" and result.attempts == 2, result
    first, second = srv.requests
    assert (first["status"], second["status"]) == (429, 200)
    assert second["t"] - first["t"] >= 0.4  # Retry-After honoured (a lower bound, not a duration)


def test_the_judge_step_writes_rows_judge_spans_and_an_error_row(srv: FakeLLMServer) -> None:
    conn = make_spec(srv)
    rule = compile_rule(
        parse_rule({"id": "r1", "name": "facts", "project": "p", "scope": "span", "scorers": [FACT]})
    )
    spans = [
        span("c1", "It is Paris.", "Paris"),
        span("c2", "It is Lyon.", "Paris"),
        span("c3", "Rome", None),
    ]
    jobs = [job for s in spans for job in jobs_for(EvalTask(rule, trace(*spans), s))]
    executor = JudgeExecutor(make_client, ExecutorConfig(max_backoff_s=0.05))
    executor.start()
    try:
        ctx = JudgeContext(
            executor, lambda name: conn if name == "fake" else None, RuleBudgets(), Pending(10), False
        )
        logic = JudgeLogic(ctx, None)
        out, _ = logic.on_batch(jobs)
        more, _ = logic.on_eof()  # waits for the calls
    finally:
        executor.stop()
    items = [*out, *more]
    rows: dict[str, ScoreRow] = {row.span_id: row for kind, row in items if kind == "scores"}
    judge_spans = [s for kind, s in items if kind == "judge_spans"]
    assert [(rows[s].value, rows[s].string_value, rows[s].passed, rows[s].scorer) for s in ("c1", "c2")] == [
        (1.0, "C", True, "autoevals"), (0.0, "D", False, "autoevals")
    ]  # fmt: skip
    assert rows["c1"].cost_usd == pytest.approx(
        (rows["c1"].input_tokens * 2 + rows["c1"].output_tokens * 10) / 1e6
    )
    assert rows["c1"].input_tokens > 0 and rows["c1"].comment and rows["c1"].error == ""
    assert rows["c3"].value is None and rows["c3"].error.startswith(
        "JudgeRequestError: autoevals Factuality needs `expected`: the span has no attribute 'tracejudge.expected'"
    )
    assert sorted(s["parent_span_id"] for s in judge_spans) == ["c1", "c2"]  # no call, no judge span
    assert all(s["event"]["gen_ai.evaluation.name"] == "Factuality" for s in judge_spans)
    assert len(srv.requests) == 2


def test_without_recovery_the_end_of_input_waits_eof_wait_s_then_cuts_calls_into_error_rows(
    srv: FakeLLMServer,
) -> None:
    """flow.recovery off: a stop cannot leave pending judge jobs to a restart, so the end of input waits for the
    calls, but only `judging.eof_wait_s`: a call still running then is cancelled and gets a JudgeCancelled row
    (never a silent loss, never an unbounded stop)."""
    conn = make_spec(srv)
    rule = compile_rule(
        parse_rule({"id": "r1", "name": "facts", "project": "p", "scope": "span", "scorers": [FACT]})
    )
    spans = [span("c1", "It is Paris.", "Paris"), span("c2", "It is Lyon.", "Paris")]
    jobs = [job for s in spans for job in jobs_for(EvalTask(rule, trace(*spans), s))]
    srv.set_latency(30.0)
    executor = JudgeExecutor(make_client, ExecutorConfig(max_backoff_s=0.05))
    executor.start()
    pending = Pending(10)
    try:
        ctx = JudgeContext(
            executor, lambda name: conn if name == "fake" else None, RuleBudgets(), pending, False, 0.5
        )
        logic = JudgeLogic(ctx, None)
        out, _ = logic.on_batch(jobs)
        more, _ = logic.on_eof()
    finally:
        executor.stop(grace_s=0.0)
    rows = [row for kind, row in [*out, *more] if kind == "scores"]
    # Cut, not waited for: a full wait would have ended each call in JudgeTimeout (timeout_s 5, 3 retries).
    assert sorted(r.span_id for r in rows) == ["c1", "c2"]
    assert all(r.value is None and r.error.startswith("JudgeCancelled: the service stopped") for r in rows)
    assert all("judging.eof_wait_s" in r.error and "rewind" in r.error for r in rows)
    assert not [s for kind, s in more if kind == "judge_spans"]  # no answer, no judge span
    assert logic.snapshot() == [] and pending.take(10) == 10  # nothing left pending or counted as pending


# ---- end to end ---------------------------------------------------------------------------------------------


def send(svc: ServiceProcess, project: str, cases: list[tuple[str, str | None]]) -> list[str]:
    """One trace per (output, expected): a root span and an `llm.call` child carrying `tracejudge.expected`."""
    provider = TracerProvider(resource=Resource.create({"service.name": "ae", "tracejudge.project": project}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=svc.otlp_grpc, insecure=True)))
    tracer = provider.get_tracer("ae")
    ids = []
    for output, expected in cases:
        with tracer.start_as_current_span("agent") as root, tracer.start_as_current_span("llm.call") as child:
            child.set_attribute("input.value", "What is the capital of France?")
            child.set_attribute("output.value", output)
            if expected is not None:
                child.set_attribute("tracejudge.expected", expected)
        ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return ids


def test_an_autoevals_rule_scores_traces_into_clickhouse(tmp_path: Path, llm: FakeLLMServer) -> None:
    svc = ServiceProcess(tmp_path / "data", env={**FAST_WINDOWS, "FAKE_LLM_KEY": "secret"}).start()
    try:
        status, _ = call(svc, "POST", "/api/v1/connections", {
            "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
            "api_key_env": "FAKE_LLM_KEY", "model": MODEL, "input_price_per_mtok": 2.0, "output_price_per_mtok": 10.0,
        })  # fmt: skip
        assert status == 201
        project = f"ae-{uuid.uuid4().hex[:8]}"
        rule = {
            "name": "facts",
            "project": project,
            "scope": "span",
            "span_names": ["llm.call"],
            "scorers": [FACT],
        }
        status, created = call(svc, "POST", "/api/v1/rules", rule)
        assert status == 201, created
        status, body = call(svc, "POST", "/api/v1/rules", {**rule, "name": "typo", "scorers": [
            {**FACT, "name": "Factualty"}]})  # fmt: skip
        assert status == 400 and body["error"]["field"] == "scorers[0].name"
        assert "supported: Battle" in body["error"]["message"]
        # A connection that does not speak OpenAI's API is refused when the rule is saved (POST and PATCH).
        status, _ = call(svc, "POST", "/api/v1/connections", {
            "name": "claude", "provider": "anthropic", "protocol": "messages", "base_url": llm.anthropic_base_url,
            "api_key_env": "FAKE_LLM_KEY", "model": "claude-judge",
        })  # fmt: skip
        assert status == 201
        refused = "scorers[1].connection: connection 'claude' is anthropic messages: autoevals scorers need an OpenAI"
        on_claude = {**FACT, "name": "fact-b", "evaluator": "Factuality", "connection": "claude"}
        status, body = call(svc, "POST", "/api/v1/rules", {**rule, "name": "on-claude", "scorers": [
            FACT, on_claude]})  # fmt: skip
        assert status == 400 and body["error"]["field"] == "scorers[1].connection", body
        assert body["error"]["message"].startswith(refused), body
        status, saved = call(svc, "GET", f"/api/v1/rules?project={project}")
        assert status == 200 and [r["name"] for r in saved["rules"]] == ["facts"]
        status, body = call(svc, "PATCH", f"/api/v1/rules/{created['id']}", {"scorers": [FACT, on_claude]})
        assert status == 400 and body["error"]["message"].startswith(refused), body
        ids = send(svc, project, [("Paris", "Paris"), ("Lyon", "Paris"), ("Rome", None)])
        rows = wait_rows(
            svc,
            "SELECT TraceId, Value, StringValue, Passed, Scorer, Model, InputTokens > 0, "
            "round(CostUsd, 9) = round((InputTokens * 2 + OutputTokens * 10) / 1e6, 9), Error "
            f"FROM scores FINAL WHERE Project = '{project}' ORDER BY TraceId",
            3,
        )
        by_trace = {r[0]: r[1:] for r in rows}
        assert by_trace[ids[0]][:7] == [1.0, "C", True, "autoevals", MODEL, True, True]
        assert by_trace[ids[1]][:4] == [0.0, "D", False, "autoevals"] and by_trace[ids[1]][7] == ""
        missing = by_trace[ids[2]]
        assert missing[0] is None and missing[7].startswith("JudgeRequestError: autoevals Factuality needs")
        spans = wait_rows(
            svc,
            "SELECT TraceId, Events.Attributes[1]['gen_ai.evaluation.score.label'] FROM otel_traces "
            f"WHERE ScopeName = 'tracejudge.judge' AND Project = '{project}' ORDER BY TraceId",
            2,
        )
        assert sorted((s[0], s[1]) for s in spans) == sorted([(ids[0], "C"), (ids[1], "D")])
        time.sleep(0.5)
        assert len(svc.sql(f"SELECT 1 FROM scores FINAL WHERE Project = '{project}'")) == 3
    finally:
        assert svc.stop() == 0, svc.output
