"""The judge step: judge jobs in, score rows and judge spans out, never blocking the worker.

Jobs are keyed on a few shard keys; each shard's logic hands new jobs to the executor in one batch and
collects finished batches from `on_notify` every ~10 ms while any are pending. Pending jobs are the logic's
snapshot, so after a crash they are submitted again; deterministic score ids keep one score per (rule, trace,
span, scorer). Before a call, a job can be refused or shed (no call made): its connection is unknown or has no
key, its request cannot be sent (an autoevals variable is missing or its connection is not OpenAI's), its rule
is over budget (calls per minute, USD per hour), or too many jobs are pending. Such a job still ends in a score
row, carrying the reason in `Error`, and is counted; a rewind can redo a shed one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulBatchLogic

from dataflow import metrics
from dataflow.errors import JudgeRequestError
from dataflow.judging.client import JudgeRequest
from dataflow.judging.connections import ConnectionSpec
from dataflow.judging.executor import CallResult, JudgeExecutor
from dataflow.judging.scorer import JudgeScorer
from dataflow.model import ScoreRow
from dataflow.rules.engine import EvalTask
from dataflow.rules.model import score_id
from dataflow.windowing.step import JUDGE_SCOPE

_POLL = timedelta(milliseconds=10)
__all__ = ["JUDGE_SCOPE", "JudgeContext", "JudgeJob", "JudgeLogic", "jobs_for"]


@dataclass(frozen=True)
class JudgeJob:
    """Everything one judge call and its score row need; picklable (it is the step's snapshot)."""

    score_id: str
    project: str
    trace_id: str
    span_id: str
    session_id: str
    subject_span_id: str
    rule_id: str
    rule_name: str
    rule_version: int
    max_calls_per_minute: float
    max_usd_per_hour: float
    spec: JudgeScorer
    request: JudgeRequest
    trace_start_ns: int
    close_reason: str


def jobs_for(task: EvalTask) -> list[JudgeJob]:
    rule = task.rule
    if not rule.judges:
        return []
    trace = task.trace
    subject = task.span if task.span is not None else trace.root
    span_id = task.span.span_id if task.span is not None else ""
    start = min((s.start_ns for s in trace.spans), default=0)
    return [
        JudgeJob(
            score_id(rule.id, trace.trace_id, span_id, spec.name),
            rule.spec.project,
            trace.trace_id,
            span_id,
            subject.session_id if subject else "",
            subject.span_id if subject else "",
            rule.id,
            rule.spec.name,
            rule.spec.version,
            rule.spec.max_calls_per_minute,
            rule.spec.max_usd_per_hour,
            spec,
            spec.build_request(trace, task.span),
            start,
            trace.close_reason.value,
        )
        for spec in rule.judges
    ]


class RuleBudgets:
    """Per-rule sliding windows of calls (per minute) and spend (per hour), shared by the shards.

    With `live` (how many processes share the store: tracejudge/heartbeat.py) this process admits its share of
    each budget: `max_calls_per_minute / live` rounded down (at least one call) and `max_usd_per_hour / live`.
    """

    def __init__(self, live: Callable[[], int] | None = None) -> None:
        self._live = live or (lambda: 1)
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}
        self._spend: dict[str, deque[tuple[float, float]]] = {}

    def admit(self, job: JudgeJob) -> bool:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(job.rule_id, deque())
            while calls and calls[0] < now - 60:
                calls.popleft()
            spend = self._spend.setdefault(job.rule_id, deque())
            while spend and spend[0][0] < now - 3600:
                spend.popleft()
            live = max(1, self._live())
            if job.max_calls_per_minute and len(calls) >= max(1, int(job.max_calls_per_minute / live)):
                return False
            if job.max_usd_per_hour and sum(c for _, c in spend) >= job.max_usd_per_hour / live:
                return False
            calls.append(now)
            return True

    def spent(self, rule_id: str, usd: float) -> None:
        if usd:
            with self._lock:
                self._spend.setdefault(rule_id, deque()).append((time.monotonic(), usd))


class Pending:
    """Process-wide count of jobs handed to the executor and not yet collected (the overload bound), shown in
    `tracejudge_judge_pending_jobs` against `tracejudge_judge_pending_limit_jobs`."""

    def __init__(self, limit: int, gauges: bool = True) -> None:
        self.limit = limit
        self._n = 0
        self._lock = threading.Lock()
        self._gauges = gauges  # the live flow's bound shows in the gauges; a job's has its own
        if gauges:
            metrics.JUDGE_PENDING_LIMIT.set(limit)
            metrics.JUDGE_PENDING.set(0)

    @property
    def taken(self) -> int:
        return self._n

    def take(self, n: int) -> int:
        with self._lock:
            granted = max(0, min(n, self.limit - self._n))
            self._n += granted
            if self._gauges:
                metrics.JUDGE_PENDING.set(self._n)
            return granted

    def release(self, n: int) -> None:
        with self._lock:
            self._n -= n
            if self._gauges:
                metrics.JUDGE_PENDING.set(self._n)


@dataclass(frozen=True)
class JudgeContext:
    executor: JudgeExecutor
    connections: Callable[[str], ConnectionSpec | None]
    budgets: RuleBudgets
    pending: Pending
    keep_open_at_eof: bool
    eof_wait_s: float = (
        60.0  # without recovery: how long the end of input waits for calls (judging.eof_wait_s)
    )
    share: float | None = None  # re-scoring jobs: the part of each connection's limits their calls may use


Output = tuple[str, Any]  # ("scores", ScoreRow) or ("judge_spans", dict)


def _row(job: JudgeJob, **kw: Any) -> ScoreRow:
    base: dict[str, Any] = dict(
        score_id=job.score_id, project=job.project, trace_id=job.trace_id, span_id=job.span_id,
        session_id=job.session_id, name=job.spec.name, value=None, string_value="", data_type="NUMERIC",
        comment="", source="EVAL", rule_id=job.rule_id, rule_name=job.rule_name, rule_version=job.rule_version,
        scorer=job.spec.type, model="", passed=None, error="", latency_ms=0.0, input_tokens=0, output_tokens=0,
        cost_usd=0.0, metadata={"connection": job.spec.connection, "close_reason": job.close_reason},
        trace_start_ns=job.trace_start_ns, timestamp_ns=time.time_ns(),
    )  # fmt: skip
    base.update(kw)
    return ScoreRow(**base)


def shed_row(job: JudgeJob, reason: str, detail: str) -> ScoreRow:
    metrics.JUDGE_SHED.labels(job.spec.connection, reason).inc()
    return _row(
        job, error=f"Shed({reason}): {detail}", metadata={"connection": job.spec.connection, "shed": reason}
    )


def unsent_row(job: JudgeJob, conn: ConnectionSpec, problem: str) -> ScoreRow:
    """The error row of a call that would fail before anything is sent: as the executor would write it after
    that failure, without the call (no budget, rate-limit or pending slot used; no judge span)."""
    return _row(
        job, error=f"{JudgeRequestError.__name__}: {problem}"[:2000], model=conn.model,
        metadata={"connection": conn.name, "attempts": "0"},
    )  # fmt: skip


def _cancelled(started_ns: int, waited_s: float) -> CallResult:
    """The result of a call cut at the end of input without recovery."""
    msg = (
        f"JudgeCancelled: the service stopped with the call still running after {waited_s:g} s "
        "(judging.eof_wait_s); flow.recovery is off, so no restart redoes it: a rewind re-scores the trace"
    )
    return CallResult(None, msg, "JudgeCancelled", 0, (time.time_ns() - started_ns) / 1e6)


def result_outputs(job: JudgeJob, conn: ConnectionSpec, result: CallResult, started_ns: int) -> list[Output]:
    if result.answer is None:
        if result.shed:
            return [("scores", shed_row(job, result.shed, result.error))]
        return [("scores", _row(job, error=result.error, latency_ms=result.latency_ms, model=conn.model,
                                metadata={"connection": conn.name, "attempts": str(result.attempts)}))]  # fmt: skip
    ans = result.answer
    judged = job.spec.interpret(ans)
    cost = conn.cost_usd(ans.input_tokens, ans.output_tokens)
    meta = {"connection": conn.name, "attempts": str(result.attempts), "close_reason": job.close_reason}
    if judged.raw_score is not None:
        meta["raw_score"] = repr(judged.raw_score)
    row = _row(
        job, value=judged.value, string_value=judged.string_value, data_type=judged.data_type,
        comment=ans.rationale, model=ans.model or conn.model, passed=judged.passed,
        error="" if judged.value is not None else "JudgeBadResponse: no usable score",
        latency_ms=result.latency_ms, input_tokens=ans.input_tokens, output_tokens=ans.output_tokens,
        cost_usd=cost, metadata=meta,
    )  # fmt: skip
    return [("scores", row), ("judge_spans", judge_span(job, conn, row, started_ns))]


def judge_span(job: JudgeJob, conn: ConnectionSpec, row: ScoreRow, started_ns: int) -> dict[str, Any]:
    """The judge call as a span in the scored trace (a child of the scored span), OTel GenAI shaped."""
    span_id = hashlib.blake2b(f"judge\x00{job.score_id}".encode(), digest_size=8).hexdigest()
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": conn.provider,
        "gen_ai.request.model": conn.model,
        "gen_ai.response.model": row.model,
        "gen_ai.usage.input_tokens": str(row.input_tokens),
        "gen_ai.usage.output_tokens": str(row.output_tokens),
        "tracejudge.judge": job.rule_id,
        "tracejudge.rule": job.rule_name,
        "tracejudge.score_id": job.score_id,
    }
    event = {
        "gen_ai.evaluation.name": job.spec.name,
        "gen_ai.evaluation.score.value": "" if row.value is None else repr(row.value),
        "gen_ai.evaluation.score.label": row.string_value
        or ("pass" if row.passed else "fail" if row.passed is False else ""),
        "gen_ai.evaluation.explanation": row.comment,
    }
    end = started_ns + int(row.latency_ms * 1e6)
    return {
        "trace_id": job.trace_id, "span_id": span_id, "parent_span_id": job.subject_span_id,
        "name": f"judge {job.rule_name}/{job.spec.name}", "project": job.project, "session_id": job.session_id,
        "start_ns": started_ns, "end_ns": end, "attributes": attrs, "event": event,
        "input": job.request.prompt, "output": row.comment,
    }  # fmt: skip


class JudgeLogic(StatefulBatchLogic[JudgeJob, Output, list[JudgeJob]]):
    def __init__(self, ctx: JudgeContext, state: list[JudgeJob] | None) -> None:
        self._ctx = ctx
        self._pending: list[tuple[list[tuple[JudgeJob, ConnectionSpec]], Future[list[CallResult]], int]] = []
        self._early: list[Output] = list(self._submit(state or []))

    def _submit(self, jobs: Iterable[JudgeJob]) -> list[Output]:
        out: list[Output] = []
        calls: list[tuple[JudgeJob, ConnectionSpec]] = []
        for job in jobs:
            conn = self._ctx.connections(job.spec.connection)
            if conn is None:
                out.append(
                    (
                        "scores",
                        _row(job, error=f"JudgeConfigError: no connection named {job.spec.connection!r}"),
                    )
                )
            elif conn.key_problem():
                out.append(("scores", _row(job, error=f"JudgeAuthError: {conn.key_problem()}")))
            elif problem := job.request.problem or job.spec.connection_problem(conn):
                out.append(("scores", unsent_row(job, conn, problem)))
            elif not self._ctx.budgets.admit(job):
                out.append(("scores", shed_row(job, "budget", f"rule {job.rule_name!r} is over its budget")))
            else:
                calls.append((job, conn))
        granted = self._ctx.pending.take(len(calls))
        for job, _ in calls[granted:]:
            out.append(("scores", shed_row(job, "overload", "too many judge calls pending")))
        calls = calls[:granted]
        if calls:
            fut = self._ctx.executor.submit([(conn, job.request) for job, conn in calls], self._ctx.share)
            self._pending.append((calls, fut, time.time_ns()))
        return out

    def _harvest(self, deadline: float | None = None) -> list[Output]:
        """Rows and spans of the batches whose calls are done; with a `deadline` (time.monotonic()), wait for
        every batch until then, and cancel those still running at it: each of their calls gets a
        JudgeCancelled error row, since nothing would redo them (the end of input without recovery)."""
        out: list[Output] = []
        still = []
        for calls, fut, started in self._pending:
            if deadline is None and not fut.done():
                still.append((calls, fut, started))
                continue
            try:
                results = fut.result(
                    timeout=None if deadline is None else max(0.0, deadline - time.monotonic())
                )
            except (TimeoutError, CancelledError):
                fut.cancel()
                results = [_cancelled(started, self._ctx.eof_wait_s)] * len(calls)
            self._ctx.pending.release(len(calls))
            for (job, conn), result in zip(calls, results, strict=True):
                outputs = result_outputs(job, conn, result, started)
                row = outputs[0][1]
                self._ctx.budgets.spent(job.rule_id, row.cost_usd)
                out.extend(outputs)
        self._pending = still
        return out

    def abandon(self) -> None:
        """Cancel the calls still running and forget their jobs (a re-scoring job cut short redoes its page)."""
        for calls, fut, _ in self._pending:
            fut.cancel()
            self._ctx.pending.release(len(calls))
        self._pending = []

    def on_batch(self, values: list[JudgeJob]) -> tuple[Iterable[Output], bool]:
        out, self._early = self._early, []
        out += self._submit(values)
        out += self._harvest()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        out, self._early = self._early, []
        return out + self._harvest(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        out, self._early = self._early, []
        if self._ctx.keep_open_at_eof:
            return out, StatefulBatchLogic.RETAIN  # pending jobs stay in the snapshot and run after a restart
        return out + self._harvest(
            deadline=time.monotonic() + self._ctx.eof_wait_s
        ), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + _POLL if self._pending or self._early else None

    def snapshot(self) -> list[JudgeJob]:
        return [job for calls, _, _ in self._pending for job, _ in calls]
