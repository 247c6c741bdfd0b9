"""Per-rule quality signals from written score rows: outcomes, verdicts, values, errors by class, sheds by reason,
judge latency, tokens, cost; the status counts; counted once per successful insert; the in-flight gauge.

Rows come from the real producers where they have a format (the judge step's `shed_row` / `result_outputs`, a
code scorer's error text), so a change of format there fails here. Each test uses rule names of its own: the
registry is process-wide.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest

from connectors.clickhouse.score_sink import ScoreWriter
from dataflow import metrics
from dataflow.config import SinkConfig
from dataflow.errors import SinkError
from dataflow.judging.client import JudgeAnswer, JudgeRequest
from dataflow.judging.connections import ConnectionSpec
from dataflow.judging.executor import CallResult, JudgeExecutor
from dataflow.judging.judge import LlmJudgeSpec
from dataflow.model import ScoreRow
from dataflow.rules.status import RuleStats, classify
from dataflow.scorers.code import CompiledScorer, ScoreResult
from dataflow.scoring.judge_step import JudgeJob, result_outputs, shed_row
from tests.waiting import eventually

CONN = ConnectionSpec(
    name="c", provider="openai", protocol="chat_completions", api_key_env="K", model="judge-m",
    input_price_per_mtok=2.0, output_price_per_mtok=10.0,
)  # fmt: skip
SPEC = LlmJudgeSpec(name="helpful", connection="c", criteria="right", min_score=1, max_score=5, threshold=3)


def value(name: str, **labels: str) -> float:
    """A sample's value, 0.0 when the series does not exist yet."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def code_row(rule: str, name: str, result: ScoreResult, rule_id: str = "rid-code") -> ScoreRow:
    return ScoreRow(
        score_id=uuid.uuid4().hex, project="p", trace_id="t" * 32, span_id="", session_id="", name=name,
        value=result.value, string_value=result.string_value, data_type=result.data_type, comment="",
        source="EVAL", rule_id=rule_id, rule_name=rule, rule_version=3, scorer="contains", model="",
        passed=result.passed, error=result.error, latency_ms=0.01, input_tokens=0, output_tokens=0,
        cost_usd=0.0, metadata={}, trace_start_ns=0, timestamp_ns=0,
    )  # fmt: skip


def job(rule: str, rule_id: str = "rid-judge") -> JudgeJob:
    return JudgeJob(
        uuid.uuid4().hex, "p", "t" * 32, "s" * 16, "", "s" * 16, rule_id, rule, 2, 0, 0, SPEC,
        JudgeRequest("sys", "prompt", 1, 5), 0, "root_settled",
    )  # fmt: skip


def judged(rule: str, result: CallResult) -> ScoreRow:
    row = result_outputs(job(rule), CONN, result, time.time_ns())[0][1]
    assert isinstance(row, ScoreRow)
    return row


def raising(exc: Exception) -> ScoreResult:
    """What a code scorer that raises `exc` gives (the real wrapper's error text)."""

    def boom(_target: Any) -> ScoreResult:
        raise exc

    return CompiledScorer("x", "pkg.mod:fn", boom).score(None)  # type: ignore[arg-type]


class PkgError(Exception):
    pass


def test_code_scorer_rows() -> None:
    rule = f"code-{uuid.uuid4().hex[:8]}"
    weird = ScoreResult(None, error="something broke, no class here")
    rows = [
        code_row(rule, "paris", ScoreResult(1.0, "BOOLEAN", passed=True)),
        code_row(rule, "paris", ScoreResult(1.0, "BOOLEAN", passed=True)),
        code_row(rule, "paris", ScoreResult(0.0, "BOOLEAN", passed=False)),
        code_row(rule, "sim", ScoreResult(0.42, "NUMERIC")),  # no threshold: no verdict
        code_row(rule, "sim", ScoreResult(42.0, "NUMERIC")),  # a user function's number above 1
        code_row(rule, "label", ScoreResult(None, "CATEGORICAL", string_value="good")),
        code_row(rule, "paris", raising(ValueError("boom"))),
        code_row(rule, "paris", raising(PkgError("x"))),
        code_row(rule, "paris", weird),
    ]
    stats = RuleStats()
    stats.record_rows(rows)

    assert value("tracejudge_rule_scores_total", rule=rule, scorer="paris", outcome="ok") == 3
    assert value("tracejudge_rule_scores_total", rule=rule, scorer="paris", outcome="error") == 3
    assert value("tracejudge_rule_scores_total", rule=rule, scorer="label", outcome="ok") == 1
    assert value("tracejudge_rule_verdicts_total", rule=rule, scorer="paris", verdict="pass") == 2
    assert value("tracejudge_rule_verdicts_total", rule=rule, scorer="paris", verdict="fail") == 1
    assert value("tracejudge_rule_verdicts_total", rule=rule, scorer="sim", verdict="pass") == 0
    for error_type in ("ValueError", "PkgError", "other"):
        assert (
            value("tracejudge_rule_score_errors_total", rule=rule, scorer="paris", error_type=error_type) == 1
        )
    # Values: errors and labels are not observed; 0.42 falls in le=0.5, 42 above 10.
    assert value("tracejudge_rule_score_ratio_count", rule=rule, scorer="paris") == 3
    assert value("tracejudge_rule_score_ratio_sum", rule=rule, scorer="paris") == 2.0
    assert value("tracejudge_rule_score_ratio_bucket", rule=rule, scorer="paris", le="0.0") == 1
    assert value("tracejudge_rule_score_ratio_bucket", rule=rule, scorer="sim", le="0.4") == 0
    assert value("tracejudge_rule_score_ratio_bucket", rule=rule, scorer="sim", le="0.5") == 1
    assert value("tracejudge_rule_score_ratio_bucket", rule=rule, scorer="sim", le="10.0") == 1
    assert value("tracejudge_rule_score_ratio_bucket", rule=rule, scorer="sim", le="100.0") == 2
    assert value("tracejudge_rule_score_ratio_count", rule=rule, scorer="label") == 0
    # Code scorers make no judge calls.
    assert value("tracejudge_judge_duration_seconds_count", rule=rule, scorer="paris") == 0

    counts = stats.get("rid-code")
    assert (counts.scorer_errors, counts.judge_errors, counts.shed_budget, counts.rule_version) == (
        3,
        0,
        0,
        3,
    )
    assert set(stats.take_dirty()) == {"rid-code"}


def test_judge_rows() -> None:
    rule = f"judge-{uuid.uuid4().hex[:8]}"
    answer = JudgeAnswer(4.0, None, "good", 1000, 200, "judge-m-2024", "{}")
    rows = [
        judged(rule, CallResult(answer, "", "", 1, 1500.0)),  # 4 on 1..5: 0.75, passed
        judged(rule, CallResult(JudgeAnswer(2.0, None, "meh", 10, 2, "m", "{}"), "", "", 2, 500.0)),
        judged(rule, CallResult(None, "JudgeTimeout: no answer in 60 s", "JudgeTimeout", 4, 30_000.0)),
        judged(rule, CallResult(None, "CircuitOpen: too many recent failures", "CircuitOpen", 0, 0.0, "circuit_open")),
        shed_row(job(rule), "budget", f"rule {rule!r} is over its budget"),
        shed_row(job(rule), "budget", f"rule {rule!r} is over its budget"),
        shed_row(job(rule), "overload", "too many judge calls pending"),
    ]  # fmt: skip
    stats = RuleStats()
    stats.record_rows(rows)
    labels = {"rule": rule, "scorer": "helpful"}

    assert value("tracejudge_rule_scores_total", **labels, outcome="ok") == 2
    assert value("tracejudge_rule_scores_total", **labels, outcome="error") == 1
    assert value("tracejudge_rule_scores_total", **labels, outcome="shed") == 4
    assert value("tracejudge_rule_verdicts_total", **labels, verdict="pass") == 1
    assert value("tracejudge_rule_verdicts_total", **labels, verdict="fail") == 1
    assert value("tracejudge_rule_score_ratio_sum", **labels) == pytest.approx(0.75 + 0.25)
    assert value("tracejudge_rule_score_errors_total", **labels, error_type="JudgeTimeout") == 1
    assert value("tracejudge_rule_shed_total", **labels, reason="budget") == 2
    assert value("tracejudge_rule_shed_total", **labels, reason="overload") == 1
    assert value("tracejudge_rule_shed_total", **labels, reason="circuit_open") == 1
    # Latency of the calls made (answers and the timeout), not of the shed tasks.
    assert value("tracejudge_judge_duration_seconds_count", **labels) == 3
    assert value("tracejudge_judge_duration_seconds_sum", **labels) == pytest.approx(32.0)
    assert value("tracejudge_judge_duration_seconds_bucket", **labels, le="1.0") == 1
    assert value("tracejudge_judge_duration_seconds_bucket", **labels, le="2.0") == 2
    assert value("tracejudge_judge_tokens_total", **labels, type="input") == 1010
    assert value("tracejudge_judge_tokens_total", **labels, type="output") == 202
    assert value("tracejudge_judge_cost_usd_total", **labels) == pytest.approx((1010 * 2 + 202 * 10) / 1e6)

    c = stats.get("rid-judge")
    assert (c.scorer_errors, c.judge_errors) == (1, 1)
    assert (c.shed_budget, c.shed_overload, c.shed_circuit_open) == (2, 1, 1)
    assert c.rule_version == 2


def test_refused_before_a_call_is_an_error_without_latency() -> None:
    rule = f"nokey-{uuid.uuid4().hex[:8]}"
    rows = [
        judged(rule, CallResult(None, "JudgeAuthError: environment variable K is not set", "JudgeAuthError", 1, 0.0)),
        judged(rule, CallResult(None, "JudgeBadResponse: score 9 outside [1, 5]", "JudgeBadResponse", 2, 800.0)),
    ]  # fmt: skip
    RuleStats().record_rows(rows)
    labels = {"rule": rule, "scorer": "helpful"}
    assert value("tracejudge_rule_score_errors_total", **labels, error_type="JudgeAuthError") == 1
    assert value("tracejudge_rule_score_errors_total", **labels, error_type="JudgeBadResponse") == 1
    assert value("tracejudge_judge_duration_seconds_count", **labels) == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("", ("ok", "")),
        ("Shed(budget): rule 'x' is over its budget", ("shed", "budget")),
        ("Shed(circuit_open): CircuitOpen: too many recent failures", ("shed", "circuit_open")),
        ("JudgeRateLimited: 429 (retry after 2.0 s)", ("error", "JudgeRateLimited")),
        ("requests.exceptions.ConnectTimeout: host", ("error", "ConnectTimeout")),
        ("KeyError: 'answer'", ("error", "KeyError")),
        ("http://x: not a class", ("error", "other")),
        ("the scorer said no", ("error", "other")),
    ],
)
def test_classify(error: str, expected: tuple[str, str]) -> None:
    assert classify(code_row("r", "s", ScoreResult(None, error=error))) == expected


class FlakyClickHouse:
    """Fails the first `failures` inserts, then stores."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.stored: list[int] = []

    def insert_arrow(self, table: str, data: Any, token: str, columns: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise SinkError("connection refused")
        self.stored.append(data.num_rows)


def test_a_retried_flush_counts_its_rows_once() -> None:
    rule = f"retry-{uuid.uuid4().hex[:8]}"
    ch = FlakyClickHouse(failures=2)
    stats = RuleStats()
    config = SinkConfig(retry_initial_s=0.001, retry_max_s=0.001)
    writer = ScoreWriter(ch, config, threading.Event(), on_written=stats.record_rows)  # type: ignore[arg-type]
    writer.write([code_row(rule, "s", ScoreResult(1.0, "BOOLEAN", passed=True))] * 3)
    assert ch.attempts == 3 and ch.stored == [3]
    assert value("tracejudge_rule_scores_total", rule=rule, scorer="s", outcome="ok") == 3
    assert value("tracejudge_rule_verdicts_total", rule=rule, scorer="s", verdict="pass") == 3


def test_rows_that_never_reach_clickhouse_are_not_counted() -> None:
    rule = f"lost-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    stop.set()
    stats = RuleStats()
    config = SinkConfig(retry_initial_s=0.001, retry_max_s=0.001)
    writer = ScoreWriter(FlakyClickHouse(10**9), config, stop, 0.0, stats.record_rows)  # type: ignore[arg-type]
    with pytest.raises(SinkError):
        writer.write([code_row(rule, "s", ScoreResult(None, error="ValueError: x"), rule_id=rule)])
    assert value("tracejudge_rule_scores_total", rule=rule, scorer="s", outcome="error") == 0
    assert stats.get(rule).scorer_errors == 0


def test_a_failing_recorder_never_stops_the_sink() -> None:
    def broken(_rows: list[ScoreRow]) -> None:
        raise RuntimeError("bug")

    ch = FlakyClickHouse(failures=0)
    writer = ScoreWriter(ch, SinkConfig(), threading.Event(), on_written=broken)  # type: ignore[arg-type]
    writer.write([code_row("r", "s", ScoreResult(1.0))])
    assert ch.stored == [1]


class Gate:
    """A judge client whose calls wait until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()

    async def judge(self, request: JudgeRequest) -> JudgeAnswer:
        while not self.open.is_set():
            await asyncio.sleep(0.005)
        return JudgeAnswer(1.0, None, "ok", 1, 1, "m", "{}")

    async def aclose(self) -> None:
        return None


def test_in_flight_gauge_counts_calls_awaiting_the_provider() -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    conn = CONN.model_copy(update={"name": name, "max_concurrency": 2})
    gate = Gate()
    executor = JudgeExecutor(lambda _spec: gate)
    executor.start()
    try:
        fut = executor.submit([(conn, JudgeRequest("s", "p"))] * 3)
        eventually(
            lambda: value("tracejudge_judge_in_flight_calls", connection=name) == 2, timeout=10, interval=0.005,
            message="two calls in flight",
        )  # fmt: skip
        time.sleep(0.05)  # the third call waits for a slot and is not counted
        assert value("tracejudge_judge_in_flight_calls", connection=name) == 2
        gate.open.set()
        assert all(r.answer is not None for r in fut.result(timeout=10))
        assert value("tracejudge_judge_in_flight_calls", connection=name) == 0
    finally:
        gate.open.set()
        executor.stop()
