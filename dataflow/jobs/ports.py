"""What the job runner (`dataflow.jobs.runner`) is given: its store, its traces, the service's parts, settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dataflow.jobs.model import Candidate, Job
from dataflow.model import ScoreRow, Span
from dataflow.rules.model import CompiledRule, SpanNeeds
from dataflow.scoring.judge_step import JudgeContext


class JobStorePort(Protocol):
    def save(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def claimable(self, lease_s: float) -> list[Job]: ...
    def claim(self, job_id: str, epoch: int, process: str) -> None: ...
    def claim_winner(self, job_id: str, epoch: int) -> str: ...
    def latest_epoch(self, job_id: str) -> int: ...
    def cancel_requested(self, job_id: str) -> bool: ...
    def running_on(self, process: str) -> list[Job]: ...


class TracePlanner(Protocol):
    def plan(self, job: Job, rule: CompiledRule | None, chars: bool = True) -> list[Candidate]: ...
    def fetch(self, trace_ids: list[str], needs: SpanNeeds | None = None) -> dict[str, list[Span]]: ...
    def roots(self, chosen: list[Candidate], needs: SpanNeeds | None = None) -> dict[str, Span]: ...


@dataclass(frozen=True)
class JobSettings:
    page_traces: int = 5000
    lease_s: float = 30.0
    settle_s: float = 1.0
    poll_s: float = 1.0
    retries: int = 5  # a page whose reads keep failing this many times fails the job
    # While live traffic arrives: rest this many times as long as a page took, after it.
    live_rest: float = 3.0


@dataclass(frozen=True)
class JobServices:
    store: JobStorePort
    traces: TracePlanner
    rule: Callable[[str], CompiledRule | None]  # a saved rule's current version
    manual_rule: Callable[[Job, str], CompiledRule]  # score_traces: its scorers as a rule of a project
    write_scores: Callable[[list[ScoreRow]], None]
    write_judge_spans: Callable[[list[dict[str, Any]]], None]
    judges: JudgeContext | None
    live_busy: Callable[[], str]
    process: str
    live_traffic: Callable[[], float] = lambda: (
        0.0
    )  # grows while live traffic arrives (e.g. requests answered)
