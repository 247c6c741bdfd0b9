"""The job runner as a service component (issue 11): its thread, and what it needs from the running service.

One thread per process runs jobs (`dataflow/jobs/runner.py`); it looks for jobs every `jobs.poll_s`, and at once
when this process's API queued one (`wake`). A failing look-up (ClickHouse away) is logged and retried at the
next poll; a stop gives the running job back (queued, its cursor kept), and the next start resumes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.job_traces import JobTraces
from connectors.clickhouse.jobs_store import JobStore
from connectors.clickhouse.rules_store import RuleStore
from connectors.clickhouse.score_sink import ScoreWriter
from connectors.clickhouse.sink import SpanStore
from connectors.otlp.ingest import normalizer_from
from connectors.otlp.judge_spans import append_judge_spans
from connectors.wal.log import Wal
from dataflow import metrics
from dataflow.config import Settings
from dataflow.errors import TracejudgeError
from dataflow.jobs.manual import ManualRules
from dataflow.jobs.ports import JobServices, JobSettings
from dataflow.jobs.runner import JobRunner
from dataflow.rules.model import CompiledRule, compile_rule
from dataflow.scoring.judge_step import JudgeContext, Pending

logger = logging.getLogger(__name__)


class JobRunnerThread:
    name = "job-runner"

    def __init__(self, runner: JobRunner, stop: threading.Event, poll_s: float) -> None:
        self._runner = runner
        self._stop = stop
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._runner.tick()
            except TracejudgeError as exc:
                logger.warning("looking for jobs failed (retried in %g s): %s", self._poll_s, exc)
            except Exception:  # the runner must never die silently
                logger.exception("the job runner failed (retried in %g s)", self._poll_s)
            self._wake.wait(self._poll_s)
            self._wake.clear()


def live_busy(
    unstored_segments: Callable[[], int], max_segments: int, pending: Callable[[], int], max_pending: float
) -> Callable[[], str]:
    """Why a job should wait now ('' when it need not): ingest storage or live judge calls falling behind."""

    def busy() -> str:
        if (n := unstored_segments()) >= max_segments:
            return f"live ingest lags: {n} log segments wait to be stored"
        if (p := pending()) > max_pending:
            return f"live judge calls pending: {p}"
        return ""

    return busy


def received_requests() -> float:
    """Export requests the receivers have answered so far, all transports and outcomes: live traffic."""
    return sum(
        s.value for m in metrics.RECEIVER_REQUESTS.collect() for s in m.samples if s.name.endswith("_total")
    )


@dataclass(frozen=True)
class JobParts:
    """What the job runner uses of the running service."""

    ch: ClickHouse  # the jobs' own connection: plans, span reads, score writes
    wal: Wal  # judge spans go where the flow's go
    rules: RuleStore
    judges: JudgeContext  # the live flow's: its executor, connections and the rules' budgets
    span_store: SpanStore
    process: str


def job_runner(s: Settings, store: JobStore, parts: JobParts) -> JobRunnerThread:
    stop = threading.Event()
    normalizer = normalizer_from(s.ingest)

    def rule(rule_id: str) -> CompiledRule | None:
        spec = parts.rules.get(rule_id)
        return compile_rule(spec) if spec is not None else None

    live = parts.judges
    services = JobServices(
        store=store,
        traces=JobTraces(parts.ch, s.jobs.trace_lookback_s),
        rule=rule,
        manual_rule=ManualRules(parts.rules.get),
        write_scores=ScoreWriter(parts.ch, s.sink, stop).write,
        write_judge_spans=lambda spans: append_judge_spans(parts.wal, spans, normalizer, 60.0),
        judges=replace(live, pending=Pending(s.judging.max_pending, gauges=False), share=s.jobs.max_share),
        live_busy=live_busy(
            parts.span_store.pending, s.jobs.pause_unstored_segments, lambda: live.pending.taken,
            s.judging.max_pending * s.jobs.pause_pending_share,
        ),
        process=parts.process,
        live_traffic=received_requests,
    )  # fmt: skip
    settings = JobSettings(
        s.jobs.page_traces, s.jobs.lease_s, s.jobs.settle_s, s.jobs.poll_s, live_rest=s.jobs.live_rest
    )
    return JobRunnerThread(JobRunner(services, settings, stop), stop, s.jobs.poll_s)
