"""`tracejudge demo` against a running service: traces, rules and scores of every source are stored; a second
run with the same seed succeeds and adds nothing twice."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.service import REPO, ServiceProcess
from tests.waiting import eventually
from tracejudge.demo_data import AGENT_PROJECT, RAG_PROJECT, build

pytestmark = pytest.mark.timeout(300)
DATA = build(1, 0)
TOOL_SPANS = sum(
    1 for r in DATA.requests + DATA.live_requests for rs in r["resourceSpans"] for sc in rs["scopeSpans"] for s in sc["spans"]
    if s["name"].startswith("tool.")
)  # fmt: skip


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {"TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2"}
    service = ServiceProcess(tmp_path_factory.mktemp("demo") / "data", env=env).start()
    yield service
    assert service.stop() == 0, service.output


def demo(svc: ServiceProcess) -> str:
    cmd = [sys.executable, "-m", "tracejudge", "demo", "--api-url", svc.api, "--wait", "200"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, (proc.stdout, proc.stderr, svc.output)
    return proc.stdout


def counts(svc: ServiceProcess) -> dict[str, int]:
    return {
        "traces": svc.scalar("SELECT uniqExact(TraceId) FROM otel_traces"),
        "spans": svc.scalar("SELECT count() FROM otel_traces"),
        "scores": svc.scalar("SELECT count() FROM scores FINAL"),
    }


def scored(svc: ServiceProcess, rule_id: str) -> int:
    return int(svc.get_json(f"/api/v1/rules/{rule_id}/status")["counts"]["scored"])


def test_the_demo_loads_traces_rules_and_scores_and_runs_twice(svc: ServiceProcess) -> None:
    out = demo(svc)
    live = len(DATA.live_traces)
    assert f"open {svc.api}/" in out and f"history: {300 - live} traces sent" in out
    assert f"live: {live} traces sent" in out
    traces = len(DATA.rag_traces) + len(DATA.agent_traces)
    assert counts(svc)["traces"] == traces and counts(svc)["spans"] == DATA.spans
    assert svc.scalar("SELECT countIf(StatusCode = 'Error') FROM otel_traces") > 0
    assert svc.scalar("SELECT uniqExact(SessionId) FROM otel_traces WHERE SessionId != ''") > 20
    rules = {(r["project"], r["name"]) for r in svc.get_json("/api/v1/rules")["rules"]}
    assert rules == {(RAG_PROJECT, "answer-cites-source"), (AGENT_PROJECT, "tool-output-json")}
    by_source = dict(svc.sql("SELECT Source, count() FROM scores FINAL GROUP BY Source"))
    # Two scorers on every RAG trace, one on every tool span; 40 thumbs; 18 reviews.
    assert by_source == {"EVAL": 2 * len(DATA.rag_traces) + TOOL_SPANS, "API": 40, "ANNOTATION": 18}
    assert 0 < svc.scalar("SELECT avg(Value) FROM scores FINAL WHERE Name = 'cites_source'") < 1
    for rule in svc.get_json("/api/v1/rules")["rules"]:  # the live traces went through the rules' live path
        eventually(lambda: scored(svc, rule["id"]), timeout=30)  # noqa: B023 (called in this iteration)

    before = counts(svc)
    again = demo(svc)
    assert f"history: 0 traces sent, {300 - live} already stored" in again
    assert f"live: 0 traces sent ({live} already stored)" in again
    assert counts(svc) == before
