"""The job runner keeps its lease while a job's plan is read (a huge window's plan can outlast `lease_s`), plans
without the text lengths that only a dry run's estimate needs, and rests after a page while live traffic arrives."""

from __future__ import annotations

import threading
from typing import Any

from dataflow.jobs.model import Candidate, Job, JobKind, JobState
from dataflow.jobs.ports import JobServices, JobSettings
from dataflow.jobs.runner import JobRunner
from dataflow.model import Span
from dataflow.rules.model import CompiledRule, SpanNeeds


class Store:
    """Just what `JobRunner.run` calls: every saved row kept, a save seen while the plan runs flagged."""

    def __init__(self) -> None:
        self.saved: list[Job] = []
        self.planning = threading.Event()
        self.saved_while_planning = threading.Event()

    def save(self, job: Job) -> None:
        self.saved.append(job)
        if self.planning.is_set():
            self.saved_while_planning.set()

    def cancel_requested(self, job_id: str) -> bool:
        return False

    def latest_epoch(self, job_id: str) -> int:
        return 1


class Planner:
    def __init__(self, store: Store, plan: list[Candidate] | None = None) -> None:
        self.store = store
        self.chars: list[bool] = []
        self.planned = plan or []

    def plan(self, job: Job, rule: CompiledRule | None, chars: bool = True) -> list[Candidate]:
        self.chars.append(chars)
        if self.planned:
            return self.planned
        self.store.planning.set()
        self.store.saved_while_planning.wait(timeout=60)  # a slow plan: returns once the lease was renewed
        self.store.planning.clear()
        return []

    def fetch(self, trace_ids: list[str], needs: SpanNeeds | None = None) -> dict[str, list[Span]]:
        return {}

    def roots(self, chosen: list[Candidate], needs: SpanNeeds | None = None) -> dict[str, Span]:
        return {}


def services_of(planner: Planner, **more: Any) -> Any:
    return JobServices(
        store=planner.store, traces=planner, rule=lambda _: None, manual_rule=lambda *_: None,  # type: ignore[arg-type]
        write_scores=lambda _: None, write_judge_spans=lambda _: None, judges=None, live_busy=lambda: "",
        process="p1", **more,
    )  # fmt: skip


JOB = Job("j1", JobKind.SCORE_TRACES, "manual:j1", 0, "p", {"trace_ids": [], "scope": "trace"}, lease_epoch=1)


def test_the_lease_is_renewed_while_the_plan_runs() -> None:
    store = Store()
    planner = Planner(store)
    runner = JobRunner(services_of(planner), JobSettings(lease_s=0.3), threading.Event())
    done = runner.run(JOB)
    assert store.saved_while_planning.is_set(), "no heartbeat while the plan ran"
    assert done.state == JobState.SUCCEEDED and planner.chars == [False]


class Stop(threading.Event):
    """Never set; records how long the runner asked to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return False


def test_a_job_rests_after_a_page_only_while_live_traffic_arrives() -> None:
    plan = [Candidate(i, f"{i:032x}", "p", 1, 1) for i in range(4)]
    for traffic, rests in ((iter([0.0, 0.0, 0.0]), False), (iter([0.0, 5.0, 9.0]), True)):
        stop = Stop()
        live = lambda it=traffic: next(it)  # noqa: E731
        runner = JobRunner(
            services_of(Planner(Store(), plan), live_traffic=live), JobSettings(page_traces=4), stop
        )
        assert runner.run(JOB).state == JobState.SUCCEEDED
        assert bool(stop.waits) == rests and all(w is not None and w >= 0 for w in stop.waits), stop.waits
