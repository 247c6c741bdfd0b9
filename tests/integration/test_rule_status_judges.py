"""Judge outcomes in the rule status (shed tasks by reason, judge errors) and the per-rule quality metrics:
stored in `rule_status` (migration 0007), continued after a restart, summed over processes by the status API,
and seen through the API and /metrics."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from connectors.api.rules import build_rules_router
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.rules_store import RuleStore, StatusRow
from dataflow.rules.model import parse_rule
from dataflow.rules.status import COUNTERS, RuleCounts
from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess, http
from tests.integration.test_judges_e2e import wait_rows
from tests.integration.test_rules_e2e import FAST_WINDOWS, call, send_traces
from tests.waiting import eventually


def test_status_rows_carry_judge_counts(chdb_client: ClickHouse) -> None:
    store = RuleStore(chdb_client)
    rid = uuid.uuid4().hex
    counts = RuleCounts(
        rule_version=2, traces_seen=9, scored=9, scorer_errors=3, judge_errors=2, shed_budget=4, shed_overload=1,
        shed_circuit_open=5, last_evaluated_ns=1_800_000_000 * 10**9,
    )  # fmt: skip
    store.write_status([StatusRow.of(rid, "proc-q", counts)])
    (row,) = store.status(rid)
    assert (row.rule_id, row.process, row.counts) == (rid, "proc-q", counts)  # every field read back
    seeded = store.process_counts("proc-q")[rid]
    assert seeded == RuleCounts(traces_seen=9, scored=9, scorer_errors=3, judge_errors=2, shed_budget=4,
                                shed_overload=1, shed_circuit_open=5)  # fmt: skip
    # Every counter has a column of its own: distinct values come back in their places.
    distinct = RuleCounts(rule_version=3, **{name: i + 1 for i, name in enumerate(COUNTERS)})
    store.write_status([StatusRow.of(rid, "proc-d", distinct)])
    assert store.process_counts("proc-d")[rid] == replace(distinct, rule_version=0)
    # A row written without the judge columns (as before 0007) reads 0 there.
    store.write_status([StatusRow(rid, "proc-old", RuleCounts(rule_version=1, traces_seen=1, scored=1))])
    old = store.process_counts("proc-old")[rid]
    assert (old.traces_seen, old.judge_errors, old.shed_budget) == (1, 0, 0)


def test_the_status_api_sums_judge_counts_over_processes(chdb_client: ClickHouse) -> None:
    store = RuleStore(chdb_client)
    spec = store.save(parse_rule({"name": "summed", "project": f"sum-{uuid.uuid4().hex[:8]}", "scorers": [
        {"type": "code", "name": "valid_json", "function": "json_valid"}]}))  # fmt: skip
    store.write_status([
        StatusRow(spec.id, "proc-a", RuleCounts(1, 5, scored=5, scorer_errors=2, last_evaluated_ns=1000,
                  judge_errors=1, shed_budget=3, shed_overload=0, shed_circuit_open=7)),
        StatusRow(spec.id, "proc-b", RuleCounts(1, 4, scored=4, scorer_errors=3, last_evaluated_ns=2000,
                  judge_errors=2, shed_budget=1, shed_overload=6, shed_circuit_open=0)),
    ])  # fmt: skip
    app = FastAPI()
    app.include_router(build_rules_router(store, lambda: None, lambda *_: {}, lambda name: None))
    with TestClient(app) as client:
        answer = client.get(f"/api/v1/rules/{spec.id}/status")
    assert answer.status_code == 200, answer.text
    st = answer.json()
    assert st["counts"] == {
        "traces_seen": 9, "filtered_out": 0, "not_targeted": 0, "sampled_out": 0, "scored": 9, "scorer_errors": 5,
        "judge_errors": 3, "shed_budget": 4, "shed_overload": 6, "shed_circuit_open": 7,
    }  # fmt: skip
    assert [(p["process"], p["counts"]["shed_budget"]) for p in st["processes"]] == [
        ("proc-a", 3),
        ("proc-b", 1),
    ]
    assert st["last_evaluated_at_us"] == 2


def samples(svc: ServiceProcess, rule: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = http("GET", svc.api + "/metrics")[2].decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("rule") == rule:
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("rule", "scorer")))
                out[(s.name, labels)] = s.value
    return out


def wait_status(svc: ServiceProcess, rule_id: str, shed_budget: int) -> dict[str, Any]:
    """The rule's status once its one process counts `shed_budget` budget sheds."""

    def shed(st: dict[str, Any]) -> bool:
        (proc,) = st["processes"] or [{"counts": {"shed_budget": -1}}]
        return bool(proc["counts"]["shed_budget"] >= shed_budget)

    status = eventually(
        lambda: call(svc, "GET", f"/api/v1/rules/{rule_id}/status")[1], until=shed, timeout=30
    )
    return dict(status)


def test_shed_tasks_reach_the_status_and_the_metrics(tmp_path: Path, llm: FakeLLMServer) -> None:
    svc = ServiceProcess(tmp_path / "data", env={**FAST_WINDOWS, "FAKE_LLM_KEY": "k"}).start()
    try:
        status, _ = call(svc, "POST", "/api/v1/connections", {
            "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
            "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "input_price_per_mtok": 1.0,
        })  # fmt: skip
        assert status == 201
        project = f"shed-{uuid.uuid4().hex[:8]}"
        rule_name = f"budgeted-{uuid.uuid4().hex[:6]}"
        # One call per minute: of three spans, one is judged and two are shed (budget).
        status, rule = call(svc, "POST", "/api/v1/rules", {
            "name": rule_name, "project": project, "scope": "span", "span_names": ["llm.call"],
            "max_calls_per_minute": 1,
            "scorers": [{"type": "llm_judge", "name": "helpfulness", "connection": "fake",
                         "criteria": "The answer is right.", "min_score": 1, "max_score": 5, "threshold": 3}],
        })  # fmt: skip
        assert status == 201, rule
        send_traces(svc, project, [("Capital of France?", "Paris"), ("a", "b"), ("c", "d")])
        rows = wait_rows(svc, f"SELECT Error FROM scores FINAL WHERE Project = '{project}' ORDER BY Error", 3)
        assert [r[0][:14] for r in rows] == ["", "Shed(budget): ", "Shed(budget): "]

        st = wait_status(svc, rule["id"], 2)
        (proc,) = st["processes"]
        sheds = ("shed_budget", "shed_overload", "shed_circuit_open", "judge_errors")
        assert [proc["counts"][k] for k in sheds] == [st["counts"][k] for k in sheds] == [2, 0, 0, 0]

        got = samples(svc, rule_name)
        assert got[("tracejudge_rule_scores_total", (("outcome", "ok"),))] == 1
        assert got[("tracejudge_rule_scores_total", (("outcome", "shed"),))] == 2
        assert got[("tracejudge_rule_shed_total", (("reason", "budget"),))] == 2
        assert got[("tracejudge_judge_duration_seconds_count", ())] == 1
        assert got[("tracejudge_rule_score_ratio_count", ())] == 1
        assert got[("tracejudge_judge_tokens_total", (("type", "input"),))] > 0
        assert got[("tracejudge_judge_cost_usd_total", ())] > 0
    finally:
        assert svc.stop() == 0, svc.output

    # After a restart the process continues from its stored counts: one more shed task makes three.
    svc = ServiceProcess(tmp_path / "data", env={**FAST_WINDOWS, "FAKE_LLM_KEY": "k"}).start()
    try:
        send_traces(svc, project, [("e", "f"), ("g", "h")])  # a fresh budget: one call, one shed
        wait_rows(svc, f"SELECT ScoreId FROM scores FINAL WHERE Project = '{project}'", 5)
        st = wait_status(svc, rule["id"], 3)
        assert (st["processes"][0]["counts"]["shed_budget"], st["counts"]["shed_budget"]) == (3, 3)
    finally:
        assert svc.stop() == 0, svc.output
