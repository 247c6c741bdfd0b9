"""The jobs API's bodies and answers (issue 11): rewind, backfill, score selected traces, and the jobs they start.

A job re-scores stored traces through the live scoring path (`dataflow/jobs/`); these models are its JSON, in
snake_case like every route of ours. Times are RFC 3339 strings in UTC, or null when not reached yet.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobKind = Literal["rewind", "backfill", "score_traces"]
JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
MAX_TRACE_IDS = 1_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RewindRequest(_Body):
    since: str = Field(description="RFC 3339: traces that started at or after this time.")
    until: str | None = Field(
        None, description="RFC 3339: traces that started before this time (default: now)."
    )
    dry_run: bool = Field(False, description="Answer the estimate at once and write nothing.")


class BackfillRequest(_Body):
    last: int | None = Field(
        None, ge=1, le=100_000, description="The N most recent matching traces (default 50 without since)."
    )
    since: str | None = Field(None, description="RFC 3339; with `until`, a window instead of `last`.")
    until: str | None = Field(None, description="RFC 3339; default now.")
    dry_run: bool = False


class ScoreTracesRequest(_Body):
    trace_ids: list[str] = Field(description=f"Up to {MAX_TRACE_IDS:,} trace ids (32 hex digits).")
    rule_id: str | None = Field(None, description="Use this rule's scorers (and attribute the scores to it).")
    scorers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Scorer objects as in a rule, or [{'rule_id': ...}] for a rule's scorers.",
    )
    scope: Literal["trace", "span"] = "trace"
    span_ids: list[str] = Field(default_factory=list, description="Span scope: the spans to score (16 hex).")
    project: str | None = Field(None, description="Default: each trace's own project.")
    dry_run: bool = False


class DryRun(BaseModel):
    """What a run would do, estimated before anything is written."""

    traces: int = Field(description="Traces that would be scored (match and sampled).")
    spans: int = Field(
        description="Trace scope: spans of those traces; span scope: spans that would be scored."
    )
    judge_calls: int
    estimated_input_tokens: int = Field(description="From the stored input/output lengths and the prompt.")
    estimated_cost_usd: float = Field(description="From the connections' prices; 0 when a price is not set.")


class JobStarted(BaseModel):
    job_id: str


class JobCounts(BaseModel):
    total: int = Field(description="Traces the job covers (known once it has planned its pages).")
    processed: int = Field(description="Traces looked at so far.")
    matched: int = Field(
        description="Traces (trace scope) or spans (span scope) that matched and were sampled."
    )
    filtered_out: int
    sampled_out: int
    scored: int = Field(description="Score rows written without an error.")
    errors: int = Field(description="Score rows written with an error (scorer or judge).")
    shed: dict[str, int] = Field(description="Judge calls not made, by reason (budget, overload, ...).")
    judge_calls: int
    cost_usd: float


class JobView(BaseModel):
    job_id: str
    kind: JobKind
    rule_id: str = Field(description="The rule, or 'manual:<job id>' for scorers given to score-traces.")
    rule_version: int
    project: str
    params: dict[str, Any]
    state: JobStateName
    counts: JobCounts
    rate_per_s: float = Field(description="Traces processed per second while running.")
    eta_s: float | None = Field(description="Seconds left at the current rate; null when unknown or done.")
    paused: str = Field(description="Why the job waits now ('' when it does not): e.g. the live flow lags.")
    last_error: str
    process: str = Field(description="The process that runs (or ran) it; '' while queued.")
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobList(BaseModel):
    jobs: list[JobView]
    count: int
