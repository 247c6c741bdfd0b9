"""The API's answers as pydantic models, so `/openapi.json` (and `/docs`) show what each route returns.

Our routes answer in snake_case. Two seed-compatible answers keep the seed's camelCase: `IngestResponse`
(`POST /api/v1/traces`) and `TraceEvalRuleView` (`/api/v1/projects/{project}/trace-eval-rules`). The status counters are not listed here: `StatusCounts` is built from
`dataflow.rules.status.COUNTERS`, where they are declared.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from connectors.api.job_models import JobView
from connectors.api.score_models import ScoreView
from dataflow.judging.connections import ConnectionSpec
from dataflow.rules.engine import Outcome
from dataflow.rules.model import RuleSpec
from dataflow.rules.status import COUNTERS


class PartialSuccess(BaseModel):
    rejectedSpans: str = Field(description="OTLP's partial success: spans rejected (a decimal string).")
    errorMessage: str


class IngestResponse(BaseModel):
    """The seed's answer to an ingest (camelCase, as seed 003 defines it)."""

    acceptedSpans: int
    rejectedSpans: int
    traces: int
    partialSuccess: PartialSuccess | None = Field(None, description="Present when spans were rejected.")


class SpanScope(BaseModel):
    name: str
    version: str


class SpanEvent(BaseModel):
    time_unix_nano: str
    name: str
    attributes: dict[str, str]


class SpanView(BaseModel):
    trace_id: str
    span_id: str
    parent_span_id: str = Field(description="Empty for a root span.")
    name: str
    kind: str
    service_name: str
    project: str
    session_id: str
    start_time: str = Field(description="ISO 8601, UTC.")
    start_time_unix_nano: str
    duration_ms: float
    status_code: str
    status_message: str
    input: str
    output: str
    attributes: dict[str, str]
    resource: dict[str, str]
    scope: SpanScope
    events: list[SpanEvent]


class TraceView(BaseModel):
    trace_id: str
    project: str
    root_span_id: str | None = Field(description="None when the trace has no root span (yet).")
    span_count: int
    spans: list[SpanView]
    scores: list[ScoreView] = Field(description="The trace's scores, every source (rules, API, annotations).")
    judge_spans: list[SpanView] = Field(description="tracejudge's judge calls in this trace (also in spans).")


class TraceSummary(BaseModel):
    trace_id: str
    project: str
    start_time: str = Field(description="ISO 8601, UTC.")
    duration_ms: float
    spans: int
    root_name: str
    input: str = Field(description="The root span's input.")
    output: str = Field(description="The root span's output.")
    error_spans: int


class TraceList(BaseModel):
    traces: list[TraceSummary]
    count: int


class SqlRequest(BaseModel):
    query: str = Field(
        ..., min_length=1, max_length=100_000, description="One read-only ClickHouse SQL query."
    )


class SqlResponse(BaseModel):
    columns: list[str]
    types: list[str]
    data: list[list[Any]]
    rows: int
    truncated: bool = Field(description="True when the result was cut at the API's row limit.")
    elapsed_ms: float


class Deleted(BaseModel):
    deleted: str = Field(description="The id deleted.")


class RuleList(BaseModel):
    rules: list[RuleSpec]
    count: int


class PreviewScore(BaseModel):
    span_id: str
    name: str
    value: float | None
    string_value: str
    data_type: str
    passed: bool | None
    comment: str
    error: str


class PreviewTrace(BaseModel):
    trace_id: str
    root_name: str
    spans: int
    matched: bool = Field(description="The filter and targeting match (sampling aside).")
    reason: str = Field(description="scored, filtered_out, not_targeted or sampled_out.")
    sampled: bool = Field(description="The rule's deterministic sample includes the trace.")
    would_write: bool = Field(description="The live rule would write this trace's scores.")
    scores: list[PreviewScore]


# How many traces of a preview, and how many of them had each outcome (`dataflow.rules.engine.Outcome`).
_SUMMARY_FIELDS: dict[str, Any] = {"traces": (int, ...)} | {o.value: (int, ...) for o in Outcome}
PreviewSummary = create_model("PreviewSummary", **_SUMMARY_FIELDS)


class RulePreview(BaseModel):
    rule: RuleSpec
    traces: list[PreviewTrace]
    summary: PreviewSummary


# The status counters, as `dataflow.rules.status.RuleCounts` declares them.
_COUNTER_FIELDS: dict[str, Any] = {name: (int, Field(0, ge=0)) for name in COUNTERS}
StatusCounts = create_model("StatusCounts", **_COUNTER_FIELDS)


class ProcessStatus(BaseModel):
    process: str
    rule_version: int
    counts: StatusCounts
    last_evaluated_at_us: int = Field(description="When it last decided on a trace, Unix microseconds.")
    last_trace_at_ns: int = Field(description="Start of the newest trace it decided on, Unix nanoseconds.")


class LiveCursor(BaseModel):
    """How far live scoring has got: the start of the newest trace a process decided on."""

    last_trace_at: str | None = Field(description="RFC 3339; null when no trace was evaluated yet.")
    lag_s: float | None = Field(description="Seconds from that trace's start to now.")


class RuleStatus(BaseModel):
    id: str
    name: str
    version: int
    enabled: bool
    counts: StatusCounts
    last_evaluated_at_us: int = Field(description="Latest of the processes', Unix microseconds; 0: never.")
    connection_problems: list[str] = Field(description="Connections of its judges whose key is not set.")
    processes: list[ProcessStatus]
    live_cursor: LiveCursor
    last_error: str = Field("", description="The latest error a score row of this rule carries.")
    last_error_at: str | None = Field(None, description="RFC 3339: when that score was written.")
    jobs: list[JobView] = Field(default_factory=list, description="The rule's re-scoring jobs, newest first.")


class ConnectionView(ConnectionSpec):
    key_status: str = Field(description="'set', or 'missing: ...' naming the env var to set.")


class ConnectionList(BaseModel):
    connections: list[ConnectionView]
    count: int


MatchType = Literal["SPAN_NAME", "ATTRIBUTE"]


class TraceEvalRuleView(BaseModel):
    """A trace eval rule as the API answers it, in the seed's names (camelCase)."""

    id: str
    projectId: str
    name: str
    enabled: bool
    matchType: MatchType
    matchKey: str | None = Field(description="ATTRIBUTE: the attribute's key; SPAN_NAME: null.")
    matchValue: str
    connectionId: str
    connectionName: str
    evaluatorName: str
    criteria: str
    minScore: float
    maxScore: float
    threshold: float | None
