"""Two `tracejudge run` processes on one ClickHouse server (the test's HTTP front over chDB), spans routed by
trace id as the Collector's loadbalancing exporter does (issue 14): every span stored once, every trace scored
once, rule changes reach both, a rewind job runs on one, a judge budget holds across both, and a `kill -9` of
one process and its restart lose nothing; a trace split between the two (a Collector ring change) is scored
whole, whichever part closes first."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.builders import otlp_request, otlp_span
from tests.fakes.clickhouse_http import clickhouse_http_front
from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess, http
from tests.integration.test_rules_e2e import FAST_WINDOWS, JS, call
from tests.waiting import eventually

PROJECT = "scale"
BUDGET = 6  # the judge rule's max_calls_per_minute: each of the two processes admits 3
ENV = {
    **FAST_WINDOWS,
    "FAKE_LLM_KEY": "secret",
    "TRACEJUDGE_RULES__RELOAD_INTERVAL_S": "0.3",
    "TRACEJUDGE_JUDGING__HEARTBEAT_INTERVAL_S": "0.3",
    "TRACEJUDGE_WINDOWS__IDLE_GAP_S": "1.0",
    "TRACEJUDGE_JOBS__SETTLE_S": "0.3",
    "TRACEJUDGE_JOBS__POLL_S": "0.3",
}
USER_SPANS = "ScopeName != 'tracejudge.judge'"


def route(trace_id: str) -> int:
    """The backend of a trace: a hash of its id, as the loadbalancing exporter's `routing_key: traceID`."""
    return hashlib.blake2b(bytes.fromhex(trace_id), digest_size=4).digest()[0] % 2


def trace_spans(trace_id: str, judged: bool) -> list[dict[str, Any]]:
    """A root `agent` span and a child: `llm.call` (the judge rule's span) when `judged`, else `tool`."""
    root = trace_id[16:]
    child = format(int(root, 16) + 1, "016x")
    return [
        otlp_span(trace_id=trace_id, span_id=root, name="agent",
                  attributes={"input.value": "capital of France?", "output.value": "Paris"}),
        otlp_span(trace_id=trace_id, span_id=child, parent_span_id=root, name="llm.call" if judged else "tool",
                  attributes={"input.value": "capital of France?", "output.value": "Paris"}),
    ]  # fmt: skip


def send(procs: list[ServiceProcess], trace_ids: list[str], judged: bool = False) -> None:
    """Each trace's spans to its process, one OTLP request per process (acknowledged: 200)."""
    by_proc: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tid in trace_ids:
        by_proc[route(tid)] += trace_spans(tid, judged)
    for i, spans in by_proc.items():
        body = otlp_request(*spans, resource={"service.name": "scale", "tracejudge.project": PROJECT})
        status, _, raw = http("POST", procs[i].otlp_http + "/v1/traces", json.dumps(body).encode(), JS)
        assert status == 200, raw


def ids(phase: int, n: int) -> list[str]:
    return [f"{phase:08x}{i + 1:024x}" for i in range(n)]


def gauge(svc: ServiceProcess, name: str) -> float:
    text = http("GET", svc.api + "/metrics")[2].decode()
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else -1.0


def gauges_are(procs: list[ServiceProcess], name: str, value: float) -> None:
    eventually(lambda: [gauge(p, name) for p in procs], until=lambda v: v == [value] * len(procs), timeout=60,
               message=lambda: "\n---\n".join(p.output for p in procs))  # fmt: skip


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    with clickhouse_http_front(tmp_path / "clickhouse-server") as url:
        args = ["--clickhouse-dsn", url]
        procs = [ServiceProcess(tmp_path / name, env=ENV, args=args) for name in ("a", "b")]
        with ThreadPoolExecutor(2) as pool:  # both start at once: half the wait
            list(pool.map(ServiceProcess.start, procs))
        try:
            yield procs
        finally:
            with ThreadPoolExecutor(2) as pool:
                codes = list(pool.map(ServiceProcess.stop, procs))
            assert codes == [0, 0], "\n---\n".join(p.output for p in procs)


def make_rules(a: ServiceProcess, b: ServiceProcess, llm: FakeLLMServer) -> tuple[str, str]:
    """A connection and a judge rule through `b`, a code rule through `a`: both processes load both rules."""
    status, conn = call(b, "POST", "/api/v1/connections", {
        "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
        "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 10,
    })  # fmt: skip
    assert status == 201, conn
    status, judge = call(b, "POST", "/api/v1/rules", {
        "name": "helpful", "project": PROJECT, "scope": "span", "span_names": ["llm.call"],
        "max_calls_per_minute": BUDGET,
        "scorers": [{"type": "llm_judge", "name": "helpfulness", "connection": "fake", "criteria": "Right."}],
    })  # fmt: skip
    assert status == 201, judge
    status, code = call(a, "POST", "/api/v1/rules", {
        "name": "paris", "project": PROJECT, "scope": "trace",
        "scorers": [{"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}}],
    })  # fmt: skip
    assert status == 201, code
    gauges_are([a, b], "tracejudge_rules_loaded_rules", 2.0)
    return str(code["id"]), str(judge["id"])


def scored(svc: ServiceProcess, rule_id: str, trace_ids: list[str], version: int | None = None) -> None:
    """Every trace has exactly one score row of the rule (FINAL), at `version` when given."""
    where = f"RuleId = '{rule_id}' AND TraceId IN ({', '.join(repr(t) for t in trace_ids)})"
    sql = f"SELECT TraceId, count(), groupUniqArray(RuleVersion) FROM scores FINAL WHERE {where} GROUP BY TraceId"

    def check() -> bool:
        rows = svc.sql(sql)
        assert all(r[1] == 1 for r in rows), rows  # never two rows for one (rule, trace, scorer)
        return len(rows) == len(trace_ids) and all(version is None or r[2] == [version] for r in rows)

    eventually(check, timeout=60, interval=0.3, message=lambda: svc.output)


def test_two_processes_share_one_clickhouse(pair: list[ServiceProcess], llm: FakeLLMServer) -> None:
    a, b = pair
    gauges_are(pair, "tracejudge_live_processes", 2.0)
    code_rule, judge_rule = make_rules(a, b, llm)

    # 1. Judged traces spread over both: each process admits its half of the budget; the rest is shed.
    first = ids(1, 16)
    assert {route(t) for t in first} == {0, 1}
    send(pair, first, judged=True)
    scored(a, code_rule, first)
    scored(a, judge_rule, first)
    rows = a.sql(f"SELECT Error FROM scores FINAL WHERE RuleId = '{judge_rule}'")
    shed = [e for (e,) in rows if e.startswith("Shed(budget)")]
    assert len(rows) == len(first) and len(shed) == len(first) - BUDGET, rows  # BUDGET calls admitted
    calls = len(llm.requests)
    assert 0 < calls <= BUDGET * 3, rows  # each admitted call sent (a timeout under load may retry it)

    # 2. A rule change through one process reaches both (disabled, then enabled again: version 3).
    for enabled, loaded in ((False, 1.0), (True, 2.0)):
        status, _ = call(b, "PATCH", f"/api/v1/rules/{code_rule}", {"enabled": enabled})
        assert status == 200
        gauges_are(pair, "tracejudge_rules_loaded_rules", loaded)
    second = ids(2, 12)
    send(pair, second)
    scored(b, code_rule, second, version=3)

    # 3. A rewind job runs on exactly one process.
    status, job = call(a, "POST", f"/api/v1/rules/{code_rule}/rewind", {"since": "2000-01-01T00:00:00Z"})
    assert status == 202, job
    done = eventually(lambda: call(b, "GET", f"/api/v1/jobs/{job['job_id']}")[1],
                      until=lambda j: j["state"] in ("succeeded", "failed"), timeout=60)  # fmt: skip
    assert done["state"] == "succeeded" and done["counts"]["processed"] == len(first) + len(second), done
    runs = [p for p in pair if any(f"job {job['job_id']} (" in line and "running" in line for line in p.log)]
    assert len(runs) == 1, done

    # 4. kill -9 of one process right after its spans were acknowledged, and a restart: nothing lost.
    third = ids(3, 12)
    send(pair, third)
    b.kill()
    pair[1] = b = ServiceProcess(b.data_dir, env=ENV, args=b.args).start()
    scored(a, code_rule, third, version=3)
    everything = first + second + third
    n = 2 * len(everything)
    a.wait_for(f"SELECT count() FROM otel_traces WHERE {USER_SPANS}", n)
    spans = a.sql(
        f"SELECT uniqExact(TraceId, SpanId), uniqExact(TraceId) FROM otel_traces WHERE {USER_SPANS}"
    )
    assert spans == [[n, len(everything)]]
    scored(a, code_rule, everything)
    assert len(llm.requests) == calls  # no judged span in phases 2-4: nothing more was called
    a_span_on_the_wrong_process(pair)


def traces_seen(svc: ServiceProcess, rule_id: str) -> dict[str, int]:
    rows = svc.sql(f"SELECT Process, TracesSeen FROM rule_status FINAL WHERE RuleId = '{rule_id}'")
    return {str(p): int(n) for p, n in rows}


def a_span_on_the_wrong_process(pair: list[ServiceProcess]) -> None:
    """Issue 14 item 2: a trace's root on its process, a child on the other (a Collector ring change). Both spans
    are stored once; each process completes the trace from ClickHouse before scoring it, and the child's
    process, finding the root elsewhere, scores the whole trace again as a late one (same score ids), so the
    stored score is the whole trace's. The rule only matches the whole trace (its filter needs the child, its
    scorer reads the root's output); scored on the child's fragment alone, the value would be 0 (the child
    standing in for the root, its output "Lyon")."""
    a, b = pair
    status, rule = call(a, "POST", "/api/v1/rules", {
        "name": "pin", "project": "pin", "scope": "trace", "filter": "name = 'tool'",
        "scorers": [{"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}}],
    })  # fmt: skip
    assert status == 201, rule
    gauges_are(pair, "tracejudge_rules_loaded_rules", 3.0)
    tid = ids(5, 1)[0]
    root = trace_spans(tid, judged=False)[0]
    child = otlp_span(trace_id=tid, span_id=format(int(tid[16:], 16) + 1, "016x"), parent_span_id=tid[16:],
                      name="tool", attributes={"input.value": "capital of France?", "output.value": "Lyon"})  # fmt: skip
    foreign_before = gauge(b, "tracejudge_scoring_foreign_fragments_total")
    for svc, span in zip(pair, (root, child), strict=True):
        body = otlp_request(span, resource={"service.name": "scale", "tracejudge.project": "pin"})
        assert http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)[0] == 200
    a.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{tid}' AND {USER_SPANS}", 2)
    query = f"SELECT Value, SpanId FROM scores FINAL WHERE RuleId = '{rule['id']}'"
    eventually(lambda: a.sql(query), until=lambda rows: rows == [[1.0, ""]], timeout=60,
               message=lambda: f"{a.sql(query)}\n{b.output}")  # fmt: skip  # one score, of the whole trace
    eventually(lambda: gauge(b, "tracejudge_scoring_foreign_fragments_total"), until=lambda n: n == foreign_before + 1,
               timeout=60, message=lambda: b.output)  # fmt: skip
    assert a.sql(query) == [[1.0, ""]]  # the child's process scored the whole trace again: the same score
    a_root_after_the_other_part_closed(pair, str(rule["id"]))


def a_root_after_the_other_part_closed(pair: list[ServiceProcess], rule_id: str) -> None:
    """The last case of item 2: the child reaches `b`, which closes its root-less part, scores it (no root
    anywhere yet: the child stands in, 0) and records it in `trace_fragments`; only then does the root reach `a`.
    `a` finds the record (the trace started more than half an idle gap before `a` closed it, so `a` looks),
    completes the trace and scores it whole, replacing `b`'s score (the same score id)."""
    a, b = pair
    tid = ids(6, 1)[0]
    start = time.time_ns() - 2_000_000_000
    child = otlp_span(trace_id=tid, span_id=format(int(tid[16:], 16) + 1, "016x"), parent_span_id=tid[16:],
                      name="tool", start_ns=start + 1_000_000, attributes={"output.value": "Lyon"})  # fmt: skip
    root = otlp_span(trace_id=tid, span_id=tid[16:], name="agent", start_ns=start, duration_ns=4_000_000_000,
                     attributes={"output.value": "Paris"})  # fmt: skip
    query = f"SELECT Value, SpanId FROM scores FINAL WHERE RuleId = '{rule_id}' AND TraceId = '{tid}'"
    foreign_before = gauge(a, "tracejudge_scoring_foreign_fragments_total")
    for svc, span, value in ((b, child, 0.0), (a, root, 1.0)):
        body = otlp_request(span, resource={"service.name": "scale", "tracejudge.project": "pin"})
        assert http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)[0] == 200
        eventually(lambda: a.sql(query), until=lambda rows, v=value: rows == [[v, ""]], timeout=60,
                   message=lambda: f"{a.sql(query)}\n{a.output}\n{b.output}")  # fmt: skip
    assert gauge(a, "tracejudge_scoring_foreign_fragments_total") == foreign_before + 1
