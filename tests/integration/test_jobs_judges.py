"""Re-scoring jobs with LLM judges (issue 11): estimates, judge spans, cancel, the share of a connection's
limits while live traffic is judged, and `kill -9` in the middle of a job."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess, http
from tests.integration.test_jobs import JS, N_TRACES, PROJECT, call, capital, finished, send, trace_ids
from tests.waiting import eventually

JOB_ENV = {"TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2", "FAKE_LLM_KEY": "secret",
           "TRACEJUDGE_WINDOWS__SETTLE_S": "0.5"}  # fmt: skip
SINCE = {"since": "2000-01-01T00:00:00Z"}
MATCHING = sum(1 for i in range(N_TRACES) if capital(i))


def start(tmp: Path, llm: FakeLLMServer, **env: str) -> ServiceProcess:
    svc = ServiceProcess(tmp / "data", env={**JOB_ENV, **env}).start()
    send(svc, time.time_ns() - 600 * 10**9)
    svc.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
    connect(svc, llm)
    return svc


def connect(svc: ServiceProcess, llm: FakeLLMServer, concurrency: int = 4) -> None:
    status, conn = call(svc, "POST", "/api/v1/connections", {
        "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
        "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 10, "max_concurrency": concurrency,
        "input_price_per_mtok": 2.0, "output_price_per_mtok": 10.0,
    })  # fmt: skip
    assert status == 201, conn


def judge_rule(svc: ServiceProcess, project: str = PROJECT, **fields: Any) -> dict[str, Any]:
    status, rule = call(svc, "POST", "/api/v1/rules", {
        "name": f"judge-{time.time_ns()}", "project": project, "scope": "span", "span_names": ["llm"],
        "filter": "input ILIKE '%capital%'",
        "scorers": [{"type": "llm_judge", "name": "helpful", "connection": "fake", "criteria": "Right?",
                     "min_score": 1, "max_score": 5, "threshold": 3}], **fields,
    })  # fmt: skip
    assert status == 201, rule
    return dict(rule)


def rewind(svc: ServiceProcess, rule: dict[str, Any], **body: Any) -> Any:
    status, doc = call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {**SINCE, **body})
    assert status in (200, 202), doc
    return doc


def test_judge_rewind_estimates_then_scores_with_judge_spans(tmp_path: Path, llm: FakeLLMServer) -> None:
    svc = start(tmp_path, llm)
    try:
        rule = judge_rule(svc)
        dry = rewind(svc, rule, dry_run=True)
        assert dry["traces"] == dry["spans"] == dry["judge_calls"] == MATCHING, dry
        assert dry["estimated_input_tokens"] > 0 and dry["estimated_cost_usd"] > 0, dry
        job = finished(svc, rewind(svc, rule)["job_id"])
        c = job["counts"]
        assert job["state"] == "succeeded" and c["judge_calls"] == dry["judge_calls"] == c["scored"], job
        assert c["cost_usd"] > 0 and c["errors"] == 0, job
        rows = svc.sql(f"SELECT count(), uniqExact(SpanId), countIf(Error = '') FROM scores FINAL "
                       f"WHERE RuleId = '{rule['id']}'")  # fmt: skip
        assert rows == [[MATCHING, MATCHING, MATCHING]]
        svc.wait_for(
            "SELECT uniqExact(SpanId) FROM otel_traces WHERE ScopeName = 'tracejudge.judge' "
            f"AND SpanAttributes['tracejudge.judge'] = '{rule['id']}'",
            MATCHING,
        )
    finally:
        assert svc.stop() == 0, svc.output


def test_cancel_stops_the_job_and_keeps_what_it_scored(tmp_path: Path, llm: FakeLLMServer) -> None:
    llm.set_latency(0.3)
    svc = start(tmp_path, llm, TRACEJUDGE_JOBS__PAGE_TRACES="4")
    try:
        rule = judge_rule(svc)
        job_id = rewind(svc, rule)["job_id"]
        eventually(
            lambda: call(svc, "GET", f"/api/v1/jobs/{job_id}")[1]["counts"]["processed"] >= 8, timeout=60
        )
        status, doc = call(svc, "POST", f"/api/v1/jobs/{job_id}/cancel")
        assert status == 200 and doc["state"] == "running", doc
        job = finished(svc, job_id)
        assert job["state"] == "cancelled" and job["counts"]["processed"] < N_TRACES, job
        scored = svc.scalar(f"SELECT count() FROM scores FINAL WHERE RuleId = '{rule['id']}' AND Error = ''")
        assert scored >= job["counts"]["scored"] > 0
        requests = len(llm.requests)
        time.sleep(1.5)
        assert len(llm.requests) == requests  # no call after the cancel took effect
        assert svc.scalar(f"SELECT count() FROM scores FINAL WHERE RuleId = '{rule['id']}'") < MATCHING
    finally:
        assert svc.stop() == 0, svc.output


def overlap(requests: list[dict[str, Any]]) -> int:
    """The most requests in flight at once, from their arrival and answer times."""
    edges = sorted([(r["t"], 1) for r in requests] + [(r["t_end"], -1) for r in requests if r["t_end"]])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_job_calls_keep_to_their_share_while_live_traffic_is_judged(
    tmp_path: Path, llm: FakeLLMServer
) -> None:
    llm.set_latency(0.25)
    svc = start(tmp_path, llm)  # connection: 4 at once; jobs.max_share 0.5: a job's calls 2 at once
    try:
        live_rule = judge_rule(svc, project="live", filter="")
        job_rule = judge_rule(svc)
        job_id = rewind(svc, job_rule)["job_id"]
        base = time.time_ns()
        sent = 0
        while call(svc, "GET", f"/api/v1/jobs/{job_id}")[1]["state"] in ("queued", "running") and sent < 40:
            body = {"resourceSpans": [{"resource": {"attributes": [
                {"key": "tracejudge.project", "value": {"stringValue": "live"}}]}, "scopeSpans": [{"spans": [
                {"traceId": f"{0xABC000 + sent:032x}", "spanId": f"{sent + 1:016x}", "name": "llm",
                 "startTimeUnixNano": str(base + sent), "endTimeUnixNano": str(base + sent + 1000),
                 "attributes": [{"key": "input.value", "value": {"stringValue": f"live {sent}"}}]}]}]}]}  # fmt: skip
            assert http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)[0] == 200
            sent += 1
            time.sleep(0.1)
        assert finished(svc, job_id)["state"] == "succeeded"
        eventually(lambda: svc.scalar(f"SELECT count() FROM scores FINAL WHERE RuleId = '{live_rule['id']}'")
                   >= sent, timeout=60)  # fmt: skip
        calls = [r for r in llm.requests if r["path"].endswith("/chat/completions")]
        job_calls = [r for r in calls if "capital of country" in json.dumps(r["body"])]
        assert len(job_calls) == MATCHING
        assert overlap(job_calls) <= 2 < overlap(calls) <= 4, (overlap(job_calls), overlap(calls))
    finally:
        assert svc.stop() == 0, svc.output


def test_kill_9_mid_job_resumes_to_exactly_the_expected_scores(tmp_path: Path, llm: FakeLLMServer) -> None:
    llm.set_latency(0.2)
    svc = start(tmp_path, llm, TRACEJUDGE_JOBS__PAGE_TRACES="4")
    rule = judge_rule(svc)
    job_id = rewind(svc, rule)["job_id"]
    eventually(lambda: call(svc, "GET", f"/api/v1/jobs/{job_id}")[1]["counts"]["processed"] >= 12, timeout=60)
    svc.kill()
    svc = ServiceProcess(tmp_path / "data", env={**JOB_ENV, "TRACEJUDGE_JOBS__PAGE_TRACES": "4"}).start()
    try:
        job = finished(svc, job_id)
        assert job["state"] == "succeeded", job
        assert job["counts"]["processed"] == N_TRACES and job["counts"]["matched"] >= MATCHING, job
        want = {f"{2 * i + 2:016x}" for i, _ in enumerate(trace_ids()) if capital(i)}
        rows = svc.sql(f"SELECT SpanId, Error FROM scores FINAL WHERE RuleId = '{rule['id']}'")
        assert sorted(r[0] for r in rows) == sorted(want) and {r[1] for r in rows} == {""}
    finally:
        assert svc.stop() == 0, svc.output
