"""Records that cross steps.

Spans travel as Arrow record batches whose columns are exactly the insert columns of ClickHouse's
`otel_traces` (the OpenTelemetry Collector ClickHouse exporter's shape, plus Project, SessionId, Input,
Output, IngestedAt). Only the few fields that windows and rules need ever become Python objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import NamedTuple

import pyarrow as pa

_TS = pa.timestamp("ns", tz="UTC")
_MAP = pa.map_(pa.string(), pa.string())

SPAN_SCHEMA = pa.schema(
    [
        pa.field("Timestamp", _TS, nullable=False),
        pa.field("TraceId", pa.string(), nullable=False),
        pa.field("SpanId", pa.string(), nullable=False),
        pa.field("ParentSpanId", pa.string(), nullable=False),
        pa.field("TraceState", pa.string(), nullable=False),
        pa.field("SpanName", pa.string(), nullable=False),
        pa.field("SpanKind", pa.string(), nullable=False),
        pa.field("ServiceName", pa.string(), nullable=False),
        pa.field("ResourceAttributes", _MAP, nullable=False),
        pa.field("ScopeName", pa.string(), nullable=False),
        pa.field("ScopeVersion", pa.string(), nullable=False),
        pa.field("SpanAttributes", _MAP, nullable=False),
        pa.field("Duration", pa.uint64(), nullable=False),
        pa.field("StatusCode", pa.string(), nullable=False),
        pa.field("StatusMessage", pa.string(), nullable=False),
        pa.field("Events.Timestamp", pa.list_(_TS), nullable=False),
        pa.field("Events.Name", pa.list_(pa.string()), nullable=False),
        pa.field("Events.Attributes", pa.list_(_MAP), nullable=False),
        pa.field("Links.TraceId", pa.list_(pa.string()), nullable=False),
        pa.field("Links.SpanId", pa.list_(pa.string()), nullable=False),
        pa.field("Links.TraceState", pa.list_(pa.string()), nullable=False),
        pa.field("Links.Attributes", pa.list_(_MAP), nullable=False),
        pa.field("Project", pa.string(), nullable=False),
        pa.field("SessionId", pa.string(), nullable=False),
        pa.field("Input", pa.string(), nullable=False),
        pa.field("Output", pa.string(), nullable=False),
        pa.field("IngestedAt", _TS, nullable=False),
    ]
)

SPAN_COLUMNS: tuple[str, ...] = tuple(SPAN_SCHEMA.names)

# OTLP enum values as the Collector's ClickHouse exporter writes them.
SPAN_KINDS: tuple[str, ...] = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES: tuple[str, ...] = ("Unset", "Ok", "Error")


@dataclass(frozen=True)
class SpanBlock:
    """A sealed write-ahead-log segment's spans, inserted into ClickHouse as one deduplicated block.

    `token` is deterministic (log id, partition, segment), so a block replayed after a crash is
    recognised by ClickHouse and not stored twice.
    """

    partition: int
    segment: int
    token: str
    table: pa.Table

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)


@dataclass(frozen=True)
class SpanRecords:
    """One durable batch of the write-ahead log, read as soon as it was committed.

    `offset` is the byte offset just after the batch in its segment: where a reader resumes.
    """

    partition: int
    segment: int
    offset: int
    batch: pa.RecordBatch


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


class Span(NamedTuple):
    """The Python view of one span that windows, rules and scorers read (decoded from a span batch).

    Field names are the filter language's: `name`, `input`, `output`, `kind`, `status_code`, ...
    `attributes` and `resource` are the span's and its resource's attributes, values as text.
    A named tuple, not a dataclass: one is built per span, and a tuple is several times cheaper to build.
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    status_code: str
    status_message: str
    service_name: str
    project: str
    session_id: str
    start_ns: int
    duration_ns: int
    input: str
    output: str
    attributes: Mapping[str, str] = _NO_ATTRIBUTES
    resource: Mapping[str, str] = _NO_ATTRIBUTES
    # Only the ids, project and start are set: no rule sampled and matched the span's trace when it arrived, so
    # its text and attributes stayed in Arrow. A trace holding such spans is completed from ClickHouse when some
    # rule's decision needs its text.
    partial: bool = False
    # The rules the span matched when it arrived (`dataflow.rules.matching`): bit i for the i-th rule of the
    # project's rules whose tag is `rules_tag` (0: not known; the rules' predicates are evaluated on the span).
    rules_tag: int = 0
    matched: int = 0

    @property
    def is_root(self) -> bool:
        return self.parent_span_id == ""

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


class CloseReason(StrEnum):
    ROOT_SETTLED = "root_settled"
    IDLE_GAP = "idle_gap"
    MAX_WAIT = "max_wait"
    MAX_SPANS = "max_spans"
    EVICTED = "evicted"
    SHUTDOWN = "shutdown"
    REPLAY = "replay"  # read back from ClickHouse (test rule, rewind), not closed by a window


@dataclass(frozen=True)
class Trace:
    """A closed window: the spans of one trace that arrived together, and why it closed."""

    trace_id: str
    spans: tuple[Span, ...]
    close_reason: CloseReason
    first_seen_ns: int
    last_seen_ns: int
    closed_at_ns: int
    late: bool = False
    lateness_ns: int = 0
    complete: bool = True
    # For a late trace completed from ClickHouse: the spans that arrived late (span-scope rules score only
    # those; trace-scope rules score the whole trace again).
    new_span_ids: frozenset[str] = frozenset()

    @property
    def project(self) -> str:
        return self.spans[0].project if self.spans else ""

    @cached_property
    def root(self) -> Span | None:
        """The root span, or the earliest span when no root arrived."""
        if not self.spans:
            return None
        roots = [s for s in self.spans if s.is_root]
        pool = roots or list(self.spans)
        return min(pool, key=lambda s: (s.start_ns, s.span_id))


class ScoreRow(NamedTuple):
    """One row of the `scores` table (a named tuple: one is built per score, and tuples are cheap to build)."""

    score_id: str
    project: str
    trace_id: str
    span_id: str
    session_id: str
    name: str
    value: float | None
    string_value: str
    data_type: str
    comment: str
    source: str
    rule_id: str
    rule_name: str
    rule_version: int
    scorer: str
    model: str
    passed: bool | None
    error: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    metadata: Mapping[str, str]
    trace_start_ns: int
    timestamp_ns: int


SCORE_SCHEMA = pa.schema(
    [
        pa.field("ScoreId", pa.string(), nullable=False),
        pa.field("Project", pa.string(), nullable=False),
        pa.field("TraceId", pa.string(), nullable=False),
        pa.field("SpanId", pa.string(), nullable=False),
        pa.field("SessionId", pa.string(), nullable=False),
        pa.field("Name", pa.string(), nullable=False),
        pa.field("Value", pa.float64(), nullable=True),
        pa.field("StringValue", pa.string(), nullable=False),
        pa.field("DataType", pa.string(), nullable=False),
        pa.field("Comment", pa.string(), nullable=False),
        pa.field("Source", pa.string(), nullable=False),
        pa.field("RuleId", pa.string(), nullable=False),
        pa.field("RuleName", pa.string(), nullable=False),
        pa.field("RuleVersion", pa.uint32(), nullable=False),
        pa.field("Scorer", pa.string(), nullable=False),
        pa.field("Model", pa.string(), nullable=False),
        pa.field("Passed", pa.bool_(), nullable=True),
        pa.field("Error", pa.string(), nullable=False),
        pa.field("LatencyMs", pa.float64(), nullable=False),
        pa.field("InputTokens", pa.uint64(), nullable=False),
        pa.field("OutputTokens", pa.uint64(), nullable=False),
        pa.field("CostUsd", pa.float64(), nullable=False),
        pa.field("Metadata", _MAP, nullable=False),
        pa.field("TraceStart", _TS, nullable=False),
        pa.field("Timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
SCORE_COLUMNS: tuple[str, ...] = tuple(SCORE_SCHEMA.names)


def _metadata_column(maps: list[Mapping[str, str]]) -> pa.MapArray:
    """Map column from flat keys and values (several times faster than a list of item lists per row)."""
    offsets = [0]
    keys: list[str] = []
    values: list[str] = []
    total = 0
    for m in maps:
        total += len(m)
        offsets.append(total)
        keys.extend(m.keys())
        values.extend(m.values())
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string())
    )


def scores_to_arrow(rows: list[ScoreRow]) -> pa.Table:
    """Score rows as one Arrow table with SCORE_SCHEMA."""
    cols = [
        [r.score_id for r in rows],
        [r.project for r in rows],
        [r.trace_id for r in rows],
        [r.span_id for r in rows],
        [r.session_id for r in rows],
        [r.name for r in rows],
        [r.value for r in rows],
        [r.string_value for r in rows],
        [r.data_type for r in rows],
        [r.comment for r in rows],
        [r.source for r in rows],
        [r.rule_id for r in rows],
        [r.rule_name for r in rows],
        [r.rule_version for r in rows],
        [r.scorer for r in rows],
        [r.model for r in rows],
        [r.passed for r in rows],
        [r.error for r in rows],
        [r.latency_ms for r in rows],
        [r.input_tokens for r in rows],
        [r.output_tokens for r in rows],
        [r.cost_usd for r in rows],
        _metadata_column([r.metadata for r in rows]),
        [r.trace_start_ns for r in rows],
        [r.timestamp_ns // 1000 for r in rows],
    ]
    arrays = []
    for field_, values in zip(SCORE_SCHEMA, cols, strict=True):
        if isinstance(values, pa.Array):
            arrays.append(values)
        elif pa.types.is_timestamp(field_.type):
            arrays.append(pa.array(values, pa.int64()).view(field_.type))
        else:
            arrays.append(pa.array(values, field_.type))
    return pa.Table.from_arrays(arrays, schema=SCORE_SCHEMA)
