"""LLM judges across a graceful stop (SIGTERM) while judge calls are in flight: the process exits 0, the calls
still running are cancelled (one log line says how many), and after a restart every judge job runs again from
the judge step's snapshot: exactly one score per (rule, trace, span, scorer) after `FINAL`, none missing. The
log has no line per HTTP request.

The fake LLM server answers only after 15 s (under the connection's 20 s timeout), so at the stop no judge
call has been answered; a stop that waited for them would see them answered (200) rather than cut (499).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess
from tests.integration.test_judges_crash import (
    ENV,
    Client,
    all_answered,
    calls_in_flight,
    check_judge_spans,
    check_scores,
    create_rules,
    expected_scores,
    judge_rows,
)
from tests.waiting import eventually

TRACES = 8
SLOW_S = 15.0


def wait_for_calls_in_flight(svc: ServiceProcess, llm: FakeLLMServer, at_least: int) -> int:
    return eventually(
        lambda: calls_in_flight(llm), until=lambda n: n >= at_least, timeout=30, interval=0.05,
        message=lambda: f"fewer than {at_least} judge calls in flight\n{svc.output}",
    )  # fmt: skip


def test_a_stop_during_judging_exits_0_and_the_restart_judges_every_job(
    tmp_path: Path, llm: FakeLLMServer
) -> None:
    project = f"jstop-{uuid.uuid4().hex[:8]}"
    svc = ServiceProcess(tmp_path / "data", env=ENV).start()
    try:
        span_rule, trace_rule = create_rules(svc, llm, project)
        time.sleep(0.5)  # as in test_rules_e2e: this process reloaded already
        llm.set_latency(SLOW_S)
        client = Client(svc.otlp_grpc, project)
        traces = []
        for i in range(TRACES):
            sent, end_root = client.start_trace(f"Question S-{i}: capital of France?", "Paris")
            end_root()
            traces.append(sent)
        in_flight = wait_for_calls_in_flight(svc, llm, 3)
        assert judge_rows(svc, project) == 0
    finally:
        code = svc.stop()
    assert code == 0, svc.output
    cancelled = re.search(r".*cancelled (\d+) calls still running.*", svc.output)
    assert cancelled and int(cancelled.group(1)) >= in_flight, svc.output
    print(f"{in_flight} calls seen in flight; the log: {cancelled.group(0)}")
    before = all_answered(llm)  # the fake server notices the dropped connections
    assert before and all(r["status"] == 499 for r in before), [r["status"] for r in before]

    llm.set_latency(0.3)
    svc = ServiceProcess(tmp_path / "data", env=ENV).start()
    try:
        client.exporter.point_at(svc.otlp_grpc)
        client.close()
        check_scores(svc, project, expected_scores(traces, span_rule, trace_rule))
        check_judge_spans(svc, project, traces, span_rule)
        answered = [r for r in llm.requests[len(before) :] if r["status"] == 200]
        assert len(answered) >= 2 * TRACES  # every judge job was called again: none was answered before
    finally:
        assert svc.stop() == 0, svc.output
    assert "HTTP Request:" not in svc.output  # the HTTP client's line per request is off
