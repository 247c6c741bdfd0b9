"""Records that cross steps.

Spans travel as Arrow record batches whose columns are exactly the insert columns of ClickHouse's
`otel_traces` (the OpenTelemetry Collector ClickHouse exporter's shape, plus Project, SessionId, Input,
Output, IngestedAt). Only the few fields that windows and rules need ever become Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass

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
