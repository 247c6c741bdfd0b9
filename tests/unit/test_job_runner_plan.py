"""The job runner keeps its lease while a job's plan is read (a huge window's plan can outlast `lease_s`), and
plans without the text lengths that only a dry run's estimate needs."""

from __future__ import annotations

import threading
from typing import Any

from dataflow.jobs.model import Candidate, Job, JobKind, JobState
from dataflow.jobs.runner import JobRunner, JobServices, JobSettings
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
    def __init__(self, store: Store) -> None:
        self.store = store
        self.chars: list[bool] = []

    def plan(self, job: Job, rule: CompiledRule | None, chars: bool = True) -> list[Candidate]:
        self.chars.append(chars)
        self.store.planning.set()
        self.store.saved_while_planning.wait(timeout=60)  # a slow plan: returns once the lease was renewed
        self.store.planning.clear()
        return []

    def fetch(self, trace_ids: list[str], needs: SpanNeeds | None = None) -> dict[str, list[Span]]:
        return {}

    def roots(self, chosen: list[Candidate], needs: SpanNeeds | None = None) -> dict[str, Span]:
        return {}


def test_the_lease_is_renewed_while_the_plan_runs() -> None:
    store = Store()
    planner = Planner(store)
    services: Any = JobServices(
        store=store, traces=planner, rule=lambda _: None, manual_rule=lambda *_: None,  # type: ignore[arg-type]
        write_scores=lambda _: None, write_judge_spans=lambda _: None, judges=None, live_busy=lambda: "",
        process="p1",
    )  # fmt: skip
    runner = JobRunner(services, JobSettings(lease_s=0.3), threading.Event())
    job = Job(
        "j1", JobKind.SCORE_TRACES, "manual:j1", 0, "p", {"trace_ids": [], "scope": "trace"}, lease_epoch=1
    )
    done = runner.run(job)
    assert store.saved_while_planning.is_set(), "no heartbeat while the plan ran"
    assert done.state == JobState.SUCCEEDED and planner.chars == [False]
