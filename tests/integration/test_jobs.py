"""Re-scoring jobs end to end (issue 11): rewind, backfill and score-traces against a running service.

Spans are stored first with no rule, so live traffic scores nothing; then rules are created and jobs re-score
the stored traces. Expected sets are computed here from the spans sent and the rule's deterministic sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dataflow.rules.model import sampled
from tests.builders import otlp_request, otlp_span
from tests.integration.service import ServiceProcess, http
from tests.waiting import eventually

PROJECT = "jobs"
N_TRACES = 90
JS = {"Content-Type": "application/json"}


def call(svc: ServiceProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, raw = http(method, svc.api + path, json.dumps(body).encode() if body is not None else b"", JS)
    return status, json.loads(raw) if raw else None


def trace_ids() -> list[str]:
    return [f"{i + 1:032x}" for i in range(N_TRACES)]


def capital(i: int) -> bool:
    return i % 3 != 0


def send(svc: ServiceProcess, base_ns: int) -> None:
    """Trace i: a root `agent` (input asks for a capital on 2 of 3) and an `llm` child, started i ms apart."""
    spans = []
    for i, tid in enumerate(trace_ids()):
        start = base_ns + i * 1_000_000
        question = f"capital of country {i}?" if capital(i) else f"weather {i}?"
        spans.append(otlp_span(trace_id=tid, span_id=f"{2 * i + 1:016x}", name="agent", start_ns=start,
                               attributes={"input.value": question, "output.value": f"Paris {i}"}))  # fmt: skip
        spans.append(otlp_span(trace_id=tid, span_id=f"{2 * i + 2:016x}", parent_span_id=f"{2 * i + 1:016x}",
                               name="llm", start_ns=start + 10,
                               attributes={"input.value": question, "output.value": '{"a": 1}'}))  # fmt: skip
    body = otlp_request(*spans, resource={"service.name": "jobs-test", "tracejudge.project": PROJECT})
    status, _, raw = http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)
    assert status == 200, raw


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        "TRACEJUDGE_JOBS__SETTLE_S": "0.2",
        "TRACEJUDGE_JOBS__PAGE_TRACES": "16",
        "TRACEJUDGE_JOBS__POLL_S": "0.2",
    }
    service = ServiceProcess(tmp_path_factory.mktemp("jobs") / "data", env=env).start()
    send(service, time.time_ns() - 600 * 10**9)
    service.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
    yield service
    if service.proc is not None and service.proc.poll() is None:
        assert service.stop() == 0, service.output


def make_rule(svc: ServiceProcess, **fields: Any) -> dict[str, Any]:
    body = {
        "name": f"r-{time.time_ns()}", "project": PROJECT, "filter": "input ILIKE '%capital%'",
        "scorers": [
            {"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}},
            {"type": "code", "name": "short", "function": "length_between", "args": {"max": 100}},
        ],
        **fields,
    }  # fmt: skip
    status, rule = call(svc, "POST", "/api/v1/rules", body)
    assert status == 201, rule
    return dict(rule)


def finished(svc: ServiceProcess, job_id: str) -> dict[str, Any]:
    def state() -> dict[str, Any]:
        return dict(call(svc, "GET", f"/api/v1/jobs/{job_id}")[1])

    return eventually(state, until=lambda j: j["state"] in ("succeeded", "failed", "cancelled"), timeout=60,
                      message=lambda: svc.output)  # fmt: skip


def rule_scores(svc: ServiceProcess, rule_id: str) -> list[list[Any]]:
    return svc.sql(
        f"SELECT TraceId, SpanId, Name, Value FROM scores FINAL WHERE RuleId = '{rule_id}' "
        "ORDER BY TraceId, SpanId, Name"
    )


def expected_traces(rule_id: str, rate: float) -> set[str]:
    return {t for i, t in enumerate(trace_ids()) if capital(i) and sampled(rule_id, t, rate)}


def test_rewind_trace_scope_dry_run_equals_run_and_twice_is_once(svc: ServiceProcess) -> None:
    rule = make_rule(svc, sampling_rate=0.5)
    want = expected_traces(rule["id"], 0.5)
    assert 0 < len(want) < 60
    since = "2000-01-01T00:00:00Z"
    status, dry = call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": since, "dry_run": True})
    assert status == 200, dry
    assert dry["traces"] == len(want) and dry["spans"] == 2 * len(want) and dry["judge_calls"] == 0
    assert rule_scores(svc, rule["id"]) == []  # a dry run writes nothing

    for _ in range(2):
        status, started = call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": since})
        assert status == 202, started
        job = finished(svc, started["job_id"])
        assert job["state"] == "succeeded", job
        c = job["counts"]
        assert (c["total"], c["processed"], c["matched"]) == (N_TRACES, N_TRACES, len(want)), job
        assert c["sampled_out"] + c["filtered_out"] + c["matched"] == N_TRACES
        assert c["scored"] == 2 * len(want) and c["errors"] == 0
        rows = rule_scores(svc, rule["id"])
        assert {r[0] for r in rows} == want and len(rows) == 2 * len(want)


def test_changed_scorer_replaces_values(svc: ServiceProcess) -> None:
    rule = make_rule(svc)
    since = "2000-01-01T00:00:00Z"
    job = finished(
        svc, call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": since})[1]["job_id"]
    )
    assert job["state"] == "succeeded"
    assert {r[3] for r in rule_scores(svc, rule["id"]) if r[2] == "paris"} == {1.0}
    scorers = [{"type": "code", "name": "paris", "function": "contains", "args": {"value": "Berlin"}},
               {"type": "code", "name": "short", "function": "length_between", "args": {"max": 100}}]  # fmt: skip
    status, changed = call(svc, "PATCH", f"/api/v1/rules/{rule['id']}", {"scorers": scorers})
    assert status == 200, changed
    job = finished(
        svc, call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": since})[1]["job_id"]
    )
    assert job["state"] == "succeeded" and job["rule_version"] == changed["version"]
    rows = rule_scores(svc, rule["id"])
    assert {r[3] for r in rows if r[2] == "paris"} == {0.0}
    assert len(rows) == 2 * len(expected_traces(rule["id"], 1.0))


def test_rewind_span_scope_counts_spans(svc: ServiceProcess) -> None:
    rule = make_rule(svc, scope="span", span_names=["llm"], scorers=[
        {"type": "code", "name": "json", "function": "json_valid"}])  # fmt: skip
    want = expected_traces(rule["id"], 1.0)
    body = {"since": "2000-01-01T00:00:00Z", "dry_run": True}
    status, dry = call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", body)
    assert status == 200 and dry["traces"] == len(want) and dry["spans"] == len(want), dry
    job = finished(
        svc, call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": body["since"]})[1]["job_id"]
    )
    assert job["counts"]["matched"] == dry["spans"], job
    rows = rule_scores(svc, rule["id"])
    assert len(rows) == len(want) and all(r[1] and r[3] == 1.0 for r in rows)


def test_rewind_window_excludes_traces_outside_it(svc: ServiceProcess) -> None:
    rule = make_rule(svc)
    since = "2000-01-01T00:00:00Z"
    status, dry = call(svc, "POST", f"/api/v1/rules/{rule['id']}/rewind",
                       {"since": since, "until": "2001-01-01T00:00:00Z", "dry_run": True})  # fmt: skip
    assert status == 200 and dry["traces"] == 0, dry


def test_backfill_last_picks_most_recent_matching(svc: ServiceProcess) -> None:
    rule = make_rule(svc, sampling_rate=0.5)
    ordered = [t for i, t in enumerate(trace_ids()) if capital(i) and sampled(rule["id"], t, 0.5)]
    status, dry = call(svc, "POST", f"/api/v1/rules/{rule['id']}/backfill", {"last": 5, "dry_run": True})
    assert status == 200 and dry["traces"] == 5, dry
    status, started = call(svc, "POST", f"/api/v1/rules/{rule['id']}/backfill", {"last": 5})
    assert status == 202, started
    job = finished(svc, started["job_id"])
    assert job["state"] == "succeeded" and job["kind"] == "backfill", job
    assert {r[0] for r in rule_scores(svc, rule["id"])} == set(ordered[-5:])


def test_score_traces_scores_exactly_the_listed_ids(svc: ServiceProcess) -> None:
    chosen = [trace_ids()[0], trace_ids()[3], trace_ids()[7]]  # two of them do not match any filter
    scorers = [{"type": "code", "name": "manual_paris", "function": "contains", "args": {"value": "Paris"}}]
    status, started = call(svc, "POST", "/api/v1/score-traces", {"trace_ids": chosen, "scorers": scorers})
    assert status == 202, started
    job = finished(svc, started["job_id"])
    assert job["state"] == "succeeded" and job["rule_id"] == f"manual:{started['job_id']}", job
    rows = rule_scores(svc, job["rule_id"])
    assert sorted(r[0] for r in rows) == sorted(chosen) and {r[3] for r in rows} == {1.0}
    source = svc.scalar(f"SELECT groupUniqArray(Source) FROM scores FINAL WHERE RuleId = '{job['rule_id']}'")
    assert source == ["EVAL"]


def test_score_traces_errors_name_the_field(svc: ServiceProcess) -> None:
    status, err = call(svc, "POST", "/api/v1/score-traces", {"trace_ids": ["xyz"], "scorers": []})
    assert status == 400 and err["error"]["field"] == "trace_ids", err
    status, err = call(svc, "POST", "/api/v1/score-traces", {"trace_ids": [trace_ids()[0]], "scorers": []})
    assert status == 400 and err["error"]["field"] == "scorers", err
    status, err = call(svc, "POST", "/api/v1/rules/nope/rewind", {"since": "2000-01-01T00:00:00Z"})
    assert status == 404, err


def test_rule_status_lists_its_jobs_and_last_error(svc: ServiceProcess) -> None:
    boom = "tests.testdata.scorers.user_scorers:boom"  # raises: every score row carries its error
    rule = make_rule(svc, scorers=[{"type": "code", "name": "boom", "function": boom}])
    status, started = call(
        svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": "2000-01-01T00:00:00Z"}
    )
    assert status == 202, started
    job = finished(svc, started["job_id"])
    status, doc = call(svc, "GET", f"/api/v1/rules/{rule['id']}/status")
    assert status == 200, doc
    assert [j["job_id"] for j in doc["jobs"]] == [started["job_id"]]
    assert doc["jobs"][0]["counts"] == job["counts"] and doc["jobs"][0]["state"] == "succeeded"
    assert set(doc["live_cursor"]) == {"last_trace_at", "lag_s"}
    assert job["counts"]["errors"] == job["counts"]["matched"] > 0 and job["counts"]["scored"] == 0, job
    assert "scorer exploded" in doc["last_error"] and doc["last_error_at"], doc


def test_backfill_defaults_to_the_50_most_recent_matching_traces(svc: ServiceProcess) -> None:
    rule = make_rule(svc)
    ordered = [t for i, t in enumerate(trace_ids()) if capital(i)]
    assert len(ordered) > 50
    status, started = call(svc, "POST", f"/api/v1/rules/{rule['id']}/backfill", {})
    assert status == 202, started
    job = finished(svc, started["job_id"])
    assert job["params"]["last"] == 50 and job["counts"]["total"] == 50, job
    assert {r[0] for r in rule_scores(svc, rule["id"])} == set(ordered[-50:])


def test_reading_roots_alone_writes_what_reading_every_span_writes(svc: ServiceProcess) -> None:
    """A rule of built-in code scorers is rewound from its traces' root spans alone (the plan's SQL decided);
    score-traces with the same rule reads every span: the same rows. One trace's child started before its
    root (the trace's start is the child's); the other has no root stored (read whole, its earliest span)."""
    base, project, early, orphan = time.time_ns() - 300 * 10**9, "jobs-roots", "a" * 32, "b" * 32
    ask = {"input.value": "capital of France?", "output.value": "Paris"}
    spans = [
        otlp_span(trace_id=early, span_id="1" * 16, name="agent", start_ns=base + 10**6, attributes=ask),
        otlp_span(trace_id=early, span_id="2" * 16, parent_span_id="1" * 16, start_ns=base,
                  attributes={"input.value": "x" * 200, "output.value": "no"}),
        otlp_span(trace_id=orphan, span_id="3" * 16, parent_span_id="9" * 16, start_ns=base + 2 * 10**6,
                  attributes={"input.value": "weather?", "output.value": "x" * 200}),
        otlp_span(trace_id=orphan, span_id="4" * 16, parent_span_id="9" * 16, start_ns=base + 3 * 10**6,
                  attributes=ask),
    ]  # fmt: skip
    body = otlp_request(*spans, resource={"service.name": "jobs-test", "tracejudge.project": project})
    assert http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)[0] == 200
    svc.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 4)
    rule = make_rule(svc, project=project)
    query = ("SELECT TraceId, Name, Value, toUnixTimestamp64Nano(TraceStart) FROM scores FINAL "
             f"WHERE RuleId = '{rule['id']}' ORDER BY TraceId, Name")  # fmt: skip
    runs = []
    for path, body in (
        (f"/api/v1/rules/{rule['id']}/rewind", {"since": "2000-01-01T00:00:00Z"}),
        ("/api/v1/score-traces", {"trace_ids": [early, orphan], "rule_id": rule["id"]}),
    ):
        status, started = call(svc, "POST", path, body)
        assert status == 202, started
        assert finished(svc, started["job_id"])["state"] == "succeeded"
        runs.append(svc.sql(query))
    assert runs[0] == runs[1] == [
        [early, "paris", 1.0, base], [early, "short", 1.0, base],
        [orphan, "paris", 0.0, base + 2 * 10**6], [orphan, "short", 0.0, base + 2 * 10**6],
    ], runs  # fmt: skip
