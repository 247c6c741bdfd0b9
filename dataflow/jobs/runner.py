"""The job runner: claims a job, walks its traces page by page through the scoring path, checkpoints (issue 11).

One runner thread per process runs one job at a time. It takes a job that is queued, or running under a lease
nobody renewed (its process died), or running under this very process (it restarted). A job's traces come from
its plan (`TracePlanner.plan`: the stored traces it covers, in (start, trace id) order, with what the rule's
SQL filter matches there); traces outside the rule's sample or matching nothing are counted without being
fetched; the rest are fetched, decided again by the Python filter and scored (`dataflow.jobs.scoring`). After
each page the scores are written, then the progress and cursor: after a crash at most that page is scored
again, and its deterministic score ids replace themselves. Live traffic keeps priority: the job waits while
`live_busy()` names a reason, and its judge calls go through a share of each connection's limits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dataflow import metrics
from dataflow.errors import TracejudgeError
from dataflow.jobs.model import Candidate, Cursor, Job, JobKind, JobState
from dataflow.jobs.ports import JobServices, JobSettings
from dataflow.jobs.scoring import (
    chosen_tasks,
    planned,
    reads_root_only,
    replayed,
    root_tasks,
    rule_tasks,
    score_tasks,
)
from dataflow.rules.engine import EvalTask
from dataflow.rules.model import CompiledRule, span_needs

logger = logging.getLogger(__name__)


class JobLost(Exception):
    """Another process holds the job's lease now, or the job was cancelled: stop without writing progress."""


class _Watch:
    """While a page's judge calls run: a stop at once, a cancel (looked up once a second), and the lease
    renewed (the page-start checkpoint re-saved with a new heartbeat) every third of the lease."""

    def __init__(self, runner: JobRunner, checkpoint: Job) -> None:
        self._runner = runner
        self._checkpoint = checkpoint
        self._looked = self._renewed = time.monotonic()
        self._cancelled = False

    def interrupted(self) -> bool:
        runner = self._runner
        if runner._stop.is_set() or self._cancelled:
            return True
        now = time.monotonic()
        if now - self._looked >= 1.0:
            self._looked = now
            self._cancelled = runner._s.store.cancel_requested(self._checkpoint.job_id)
        if now - self._renewed >= runner._cfg.lease_s / 3:
            self._renewed = now
            runner._save(self._checkpoint)
        return self._cancelled


class JobRunner:
    def __init__(self, services: JobServices, settings: JobSettings, stop: threading.Event) -> None:
        self._s = services
        self._cfg = settings
        self._stop = stop
        self.current: str = ""

    # --- claiming ------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Run every job this process can claim now, one after another."""
        while not self._stop.is_set():
            job = self._next_claimed()
            if job is None:
                return
            self.run(job)

    def _next_claimed(self) -> Job | None:
        for job in self._s.store.claimable(self._cfg.lease_s) + self._own_running():
            if self._s.store.cancel_requested(job.job_id):
                self._finish(job, JobState.CANCELLED)
                continue
            # The epoch after the one the row names: every process that read this row claims the same epoch, so
            # the earliest claim wins; a process that read an older row claims an epoch already decided.
            epoch = job.lease_epoch + 1
            self._s.store.claim(job.job_id, epoch, self._s.process)
            if self._stop.wait(self._cfg.settle_s):
                return None
            if self._s.store.claim_winner(job.job_id, epoch) != self._s.process:
                continue
            now = self._s.store.get(job.job_id)  # unchanged since read: nobody ran it meanwhile
            if now is not None and (now.state, now.lease_epoch, now.heartbeat_ns) == (
                job.state,
                job.lease_epoch,
                job.heartbeat_ns,
            ):
                return job.with_(lease_epoch=epoch)
        return None

    def _own_running(self) -> list[Job]:
        """Jobs this process ran before it restarted: resumed at once, not after the lease runs out."""
        return self._s.store.running_on(self._s.process)

    # --- running -------------------------------------------------------------------------------------------
    def run(self, job: Job) -> Job:
        """Run (or resume) a claimed job to its end; never raises."""
        self.current = job.job_id
        now = time.time_ns()
        job = job.with_(
            state=JobState.RUNNING, process=self._s.process, started_ns=job.started_ns or now,
            heartbeat_ns=now, paused="",
        )  # fmt: skip
        logger.info(
            "job %s (%s of rule %s): running, lease epoch %d, from %s",
            job.job_id, job.kind.value, job.rule_id, job.lease_epoch, job.cursor.encode() or "the start",
        )  # fmt: skip
        metrics.JOB_RUNNING.labels("false").set(1)
        try:
            self._s.store.save(job)
            return self._walk(job)
        except JobLost as lost:
            logger.info("job %s: %s", job.job_id, lost)
            return job
        except Exception as exc:  # a job's failure is its state, never the runner's end
            logger.exception("job %s failed", job.job_id)
            return self._finish(job, JobState.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self.current = ""
            metrics.JOB_RUNNING.labels("false").set(0)
            metrics.JOB_RUNNING.labels("true").set(0)

    def _walk(self, job: Job) -> Job:
        rule: CompiledRule | None = None
        if job.kind != JobKind.SCORE_TRACES:
            rule = self._s.rule(job.rule_id)
            if rule is None:
                return self._finish(job, JobState.FAILED, f"rule {job.rule_id} no longer exists")
        job, plan = self._plan(job, rule)
        progress = job.progress.copy()
        progress.total = len(plan)
        todo = [c for c in plan if job.cursor.before(c.start_ns, c.trace_id)]
        size = self._cfg.page_traces
        for i in range(0, len(todo), size):
            page = todo[i : i + size]
            job = self._checkpoint_ready(job.with_(progress=progress))
            if self._stop.is_set():
                return self._requeue(job)
            before, started, seen = progress.copy(), time.monotonic(), self._s.live_traffic()
            if not self._score_page(job, rule, page):
                if self._stop.is_set():  # the page is redone on resume: its counts are not kept
                    return self._requeue(job.with_(progress=before))
                progress.processed += len(page)  # cancelled: what the page scored stays, and is counted
                return self._cancelled(job.with_(progress=progress))
            progress.processed += len(page)
            metrics.JOB_TRACES.labels(job.kind.value).inc(len(page))
            job = self._save(
                job.with_(progress=progress, cursor=Cursor(page[-1].start_ns, page[-1].trace_id))
            )
            if self._cfg.live_rest and self._s.live_traffic() != seen:
                self._rest(time.monotonic() - started)
        return self._finish(job.with_(progress=progress), JobState.SUCCEEDED)

    def _rest(self, page_s: float) -> None:
        """Live traffic arrives: leave it the cores (and the GIL) `live_rest` times as long as the page took, at
        most a third of the lease (the next page's watch renews it a third of the lease after it starts)."""
        self._stop.wait(min(self._cfg.live_rest * page_s, self._cfg.lease_s / 3))

    def _plan(self, job: Job, rule: CompiledRule | None) -> tuple[Job, list[Candidate]]:
        """The job's plan, read on a thread while this one renews the lease: a huge window's plan can take
        longer than `lease_s`, and another process must not take the job over meanwhile."""
        with ThreadPoolExecutor(1, thread_name_prefix="job-plan") as pool:
            planning = pool.submit(self._retrying, lambda: self._s.traces.plan(job, rule, chars=False))
            while True:
                try:
                    return job, planning.result(timeout=self._cfg.lease_s / 3)
                except TimeoutError:
                    job = self._save(job)

    def _score_page(self, job: Job, rule: CompiledRule | None, page: list[Candidate]) -> bool:
        """Score one page and write its rows; False when a stop or cancel cut its judge calls short."""
        progress = job.progress
        chosen = planned(page, rule, progress) if rule is not None else page
        tasks, starts = self._tasks(job, rule, chosen)
        progress.matched += len(tasks)
        watch = _Watch(self, job.with_(progress=job.progress.copy()))
        result = score_tasks(tasks, self._s.judges, progress, self._stop, watch.interrupted, starts)
        self._s.write_scores(result.rows)
        if result.judge_spans:
            self._s.write_judge_spans(result.judge_spans)
        return result.complete

    def _tasks(
        self, job: Job, rule: CompiledRule | None, chosen: list[Candidate]
    ) -> tuple[list[EvalTask], dict[str, int]]:
        """The tasks of the chosen traces, and the plan's start of those read by their root alone."""
        progress = job.progress
        wanted = [c.trace_id for c in chosen]
        # Only the attributes the rule reads become Python (as live; a user scorer gets them all).
        needs = span_needs([rule]) if rule is not None else None
        tasks: list[EvalTask] = []
        starts: dict[str, int] = {}
        if rule is not None and reads_root_only(rule) and wanted:
            roots = self._retrying(lambda: self._s.traces.roots(chosen, needs))
            tasks = root_tasks(chosen, roots, rule)
            starts = {c.trace_id: c.start_ns for c in chosen if c.trace_id in roots}
            wanted = [tid for tid in wanted if tid not in roots]  # no root stored: read whole, as below
        spans = self._retrying(lambda: self._s.traces.fetch(wanted, needs)) if wanted else {}
        traces = [replayed(tid, spans[tid]) for tid in wanted if spans.get(tid)]
        progress.filtered_out += len(wanted) - len(traces)  # gone from ClickHouse since the plan
        if rule is not None:
            tasks += rule_tasks(traces, rule, progress)
        else:
            ids = frozenset(job.params.get("span_ids") or ())
            tasks = chosen_tasks(traces, lambda p: self._s.manual_rule(job, p), job.params["scope"], ids)
        return tasks, starts

    # --- checkpoints ---------------------------------------------------------------------------------------
    def _checkpoint_ready(self, job: Job) -> Job:
        """Before a page: stop if cancelled or the lease was lost; wait while live traffic needs the room."""
        while True:
            if self._s.store.cancel_requested(job.job_id):
                self._cancelled(job)
                msg = "cancelled"
                raise JobLost(msg)
            if self._s.store.latest_epoch(job.job_id) > job.lease_epoch:
                msg = "another process took over its lease"
                raise JobLost(msg)
            reason = self._s.live_busy()
            metrics.JOB_RUNNING.labels("true").set(1 if reason else 0)
            metrics.JOB_RUNNING.labels("false").set(0 if reason else 1)
            if reason != job.paused:
                job = self._save(job.with_(paused=reason))
            if not reason or self._stop.is_set():
                return job
            if self._stop.wait(self._cfg.poll_s):
                return job
            job = self._save(job)  # the heartbeat: a paused job keeps its lease

    def _save(self, job: Job) -> Job:
        job = job.with_(heartbeat_ns=time.time_ns())
        self._retrying(lambda: self._s.store.save(job))
        return job

    def _requeue(self, job: Job) -> Job:
        """The service stops: give the job back (any process, this one after its restart, resumes it)."""
        return self._save(job.with_(state=JobState.QUEUED, process="", paused=""))

    def _cancelled(self, job: Job) -> Job:
        logger.info("job %s: cancelled after %d traces", job.job_id, job.progress.processed)
        return self._finish(job, JobState.CANCELLED)

    def _finish(self, job: Job, state: JobState, error: str = "") -> Job:
        done = job.with_(
            state=state, finished_ns=time.time_ns(), paused="", last_error=error or job.last_error
        )
        try:
            return self._save(done)
        except TracejudgeError:
            logger.exception("job %s: could not record its end (%s)", job.job_id, state.value)
            return done

    def _retrying(self, call: Callable[[], Any]) -> Any:
        delay = 0.5
        for attempt in range(self._cfg.retries + 1):
            try:
                return call()
            except TracejudgeError:
                if attempt == self._cfg.retries or self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 10.0)
        return None
