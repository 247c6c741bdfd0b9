"""LLM judges end to end: a connection and a judge rule through the API, real OTel spans in, the real
openai/anthropic SDKs against the fake LLM server, score rows and judge spans in ClickHouse."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess, http
from tests.integration.test_rules_e2e import FAST_WINDOWS, call, send_traces
from tests.waiting import eventually


def wait_rows(svc: ServiceProcess, sql: str, n: int, timeout: float = 60.0) -> list[list[Any]]:
    return eventually(
        lambda: svc.sql(sql), until=lambda rows: len(rows) >= n, timeout=timeout, interval=0.3,
        message=lambda: f"expected {n} rows\n{svc.output}",
    )  # fmt: skip


def helpful_rule(project: str) -> dict[str, Any]:
    """A span rule judging every `llm.call` span of `project` with the connection `fake`."""
    return {
        "name": "helpful", "project": project, "scope": "span", "span_names": ["llm.call"],
        "scorers": [{"type": "llm_judge", "name": "helpfulness", "connection": "fake",
                     "criteria": "The answer is right.", "min_score": 1, "max_score": 5, "threshold": 3}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "protocol"),
    [("openai", "chat_completions"), ("openai", "responses"), ("anthropic", "messages")],
)
def test_judge_rule_scores_traces(tmp_path: Path, llm: FakeLLMServer, provider: str, protocol: str) -> None:
    env = {**FAST_WINDOWS, "FAKE_LLM_KEY": "secret"}
    svc = ServiceProcess(tmp_path / "data", env=env).start()
    try:
        base_url = llm.openai_base_url if provider == "openai" else llm.anthropic_base_url
        status, conn = call(svc, "POST", "/api/v1/connections", {
            "name": "fake", "provider": provider, "protocol": protocol, "base_url": base_url,
            "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 10,
            "input_price_per_mtok": 2.0, "output_price_per_mtok": 10.0,
        })  # fmt: skip
        assert status == 201 and conn["key_status"] == "set" and "secret" not in str(conn)
        project = f"judge-{uuid.uuid4().hex[:8]}"
        status, rule = call(svc, "POST", "/api/v1/rules", helpful_rule(project))
        assert status == 201, rule
        ids = send_traces(svc, project, [("Capital of France?", "Paris"), ("Capital of Spain?", "wrong")])
        rows = wait_rows(
            svc,
            "SELECT TraceId, Value, Passed, Comment != '', Model, InputTokens > 0, OutputTokens > 0, "
            "round(CostUsd, 9) = round((InputTokens * 2 + OutputTokens * 10) / 1e6, 9), Error, "
            f"Metadata['raw_score'] FROM scores FINAL WHERE Project = '{project}' ORDER BY Value DESC",
            2,
        )
        assert [(r[0], r[1], r[2], r[8]) for r in rows] == [(ids[0], 1.0, True, ""), (ids[1], 0.0, False, "")]
        assert all(r[3] and r[4] == "judge-model" and r[5] and r[6] and r[7] for r in rows), rows
        assert [r[9] for r in rows] == ["5.0", "1.0"]
        # One judge span per call: a child of the scored span, with the GenAI evaluation event.
        spans = wait_rows(
            svc,
            "SELECT j.TraceId, j.ParentSpanId = s.SpanId, j.SpanAttributes['gen_ai.provider.name'], "
            "j.SpanAttributes['gen_ai.request.model'], j.Events.Name, "
            "j.Events.Attributes[1]['gen_ai.evaluation.name'] FROM otel_traces AS j "
            "INNER JOIN otel_traces AS s ON s.TraceId = j.TraceId AND s.SpanName = 'llm.call' "
            f"WHERE j.ScopeName = 'tracejudge.judge' AND j.Project = '{project}' ORDER BY j.TraceId",
            2,
        )
        assert sorted(s[0] for s in spans) == sorted(ids)
        assert all(s[1] == 1 and s[2] == provider and s[3] == "judge-model" for s in spans), spans
        assert all(s[4] == ["gen_ai.evaluation.result"] and s[5] == "helpfulness" for s in spans)
        # Judge spans never re-enter the windows: no late spans, no second evaluation.
        time.sleep(1.5)
        metrics = http("GET", svc.api + "/metrics")[2].decode()
        assert "tracejudge_window_late_spans_total 0.0" in metrics
        # Where the flow's CPU went, per stage (issue 15): every stage these traces passed through has some.
        for stage in ("spans", "windows", "scoring", "judges"):
            line = f'tracejudge_flow_stage_seconds_total{{stage="{stage}"}} '
            assert float(metrics.split(line, 1)[1].split("\n", 1)[0]) > 0, stage
        _, st = call(svc, "GET", f"/api/v1/rules/{rule['id']}/status")
        assert st["counts"]["traces_seen"] == 2 and st["connection_problems"] == []
    finally:
        assert svc.stop() == 0, svc.output


def test_a_missing_key_is_reported_and_scored_as_an_error(tmp_path: Path, llm: FakeLLMServer) -> None:
    svc = ServiceProcess(tmp_path / "data", env=FAST_WINDOWS).start()
    try:
        before = len(llm.requests)
        status, conn = call(svc, "POST", "/api/v1/connections", {
            "name": "nokey", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
            "api_key_env": "TRACEJUDGE_TEST_UNSET_KEY", "model": "m",
        })  # fmt: skip
        assert status == 201 and conn["key_status"].startswith("missing:")
        assert "TRACEJUDGE_TEST_UNSET_KEY" in conn["key_status"]
        project = f"nokey-{uuid.uuid4().hex[:8]}"
        rule = {"name": "r", "project": project, "scorers": [
            {"type": "llm_judge", "name": "j", "connection": "nokey", "criteria": "c"}]}  # fmt: skip
        status, created = call(svc, "POST", "/api/v1/rules", rule)
        assert status == 201
        status, body = call(svc, "POST", "/api/v1/rules", {**rule, "name": "r2", "scorers": [
            {"type": "llm_judge", "name": "j", "connection": "nope", "criteria": "c"}]})  # fmt: skip
        assert status == 400 and body["error"]["field"] == "scorers[0].connection"
        send_traces(svc, project, [("q", "a")])
        rows = wait_rows(svc, f"SELECT Error FROM scores FINAL WHERE Project = '{project}'", 1)
        assert rows[0][0].startswith("JudgeAuthError: connection 'nokey': environment variable")
        _, st = call(svc, "GET", f"/api/v1/rules/{created['id']}/status")
        assert st["connection_problems"] and "TRACEJUDGE_TEST_UNSET_KEY" in st["connection_problems"][0]
        assert len(llm.requests) == before  # nothing was sent
        status, body = call(svc, "DELETE", f"/api/v1/connections/{conn['id']}")
        assert status == 409 and "used by rules" in body["error"]["message"]
    finally:
        assert svc.stop() == 0, svc.output
