"""A re-scoring job as the runner sees it: what was asked, where it is, what it has done (issue 11).

Three kinds share one mechanism: `rewind` (a rule's traces that started in a window, matched and sampled by the
rule's current version), `backfill` (the same for the last N matching traces, or a window) and `score_traces`
(listed traces with given scorers, no filter and no sampling). A job moves queued -> running -> succeeded |
failed | cancelled; its progress is checkpointed after every page of traces, with the cursor (trace start,
trace id) of the last trace done, so a resumed job starts after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class JobKind(StrEnum):
    REWIND = "rewind"
    BACKFILL = "backfill"
    SCORE_TRACES = "score_traces"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


MANUAL_PREFIX = "manual:"


@dataclass(frozen=True)
class Cursor:
    """The last trace done, in the order jobs walk traces: (start, trace id)."""

    start_ns: int = -1
    trace_id: str = ""

    def encode(self) -> str:
        return "" if self.start_ns < 0 else f"{self.start_ns}:{self.trace_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if not text:
            return cls()
        start, _, trace_id = text.partition(":")
        return cls(int(start), trace_id)

    def before(self, start_ns: int, trace_id: str) -> bool:
        """Whether (start_ns, trace_id) comes after this cursor (is still to do)."""
        return (start_ns, trace_id) > (self.start_ns, self.trace_id)


@dataclass
class Progress:
    """Counts so far; `matched` counts tasks (traces in trace scope, spans in span scope)."""

    total: int = 0
    processed: int = 0
    matched: int = 0
    filtered_out: int = 0
    sampled_out: int = 0
    scored: int = 0
    errors: int = 0
    shed: dict[str, int] = field(default_factory=dict)
    judge_calls: int = 0
    cost_usd: float = 0.0

    def add_shed(self, reason: str) -> None:
        self.shed[reason] = self.shed.get(reason, 0) + 1

    def copy(self) -> Progress:
        return replace(self, shed=dict(self.shed))


@dataclass(frozen=True)
class Job:
    """One job's row: what was asked and its latest state."""

    job_id: str
    kind: JobKind
    rule_id: str
    rule_version: int
    project: str
    params: dict[str, Any]
    state: JobState = JobState.QUEUED
    progress: Progress = field(default_factory=Progress)
    cursor: Cursor = field(default_factory=Cursor)
    last_error: str = ""
    paused: str = ""
    process: str = ""
    lease_epoch: int = 0
    heartbeat_ns: int = 0
    created_ns: int = 0
    started_ns: int = 0
    finished_ns: int = 0

    def with_(self, **changes: Any) -> Job:
        return replace(self, **changes)


@dataclass(frozen=True)
class Candidate:
    """A stored trace a job may score, as its plan found it: start, id, project, spans (judge spans excluded),
    `tasks` (what the rule's filter and targeting match there, computed in ClickHouse; the Python filter
    decides again on the fetched spans, unless only the root is read: `dataflow.jobs.scoring.reads_root_only`)
    and the input/output characters its judge calls would read (0 in a job's own plan: only estimates need them),
    and the start of its earliest root span (0: none)."""

    start_ns: int
    trace_id: str
    project: str
    spans: int
    tasks: int
    io_chars: int = 0
    root_ns: int = 0
