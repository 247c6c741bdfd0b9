"""The scores API log's records: validated scores, each with its id and timestamp, as an Arrow batch and back.

The schema is explicit (`SCORES_LOG_SCHEMA`), one column per `ValidScore` field; `metadata` (any JSON) is kept as
JSON text and the timestamp as Unix microseconds. Ids and timestamps are assigned before a score is logged
(`to_batch`), so storing a logged score again writes exactly the same row. The batch is built column by column,
with no per-score copy (this runs on the request's path).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa

from tracejudge_client.validation import ValidScore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCORES_LOG_SCHEMA = pa.schema(
    [
        pa.field("score_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("data_type", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("string_value", pa.string(), nullable=False),
        pa.field("passed", pa.bool_()),
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("observation_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("dataset_run_id", pa.string(), nullable=False),
        pa.field("comment", pa.string(), nullable=False),
        pa.field("config_id", pa.string(), nullable=False),
        pa.field("metadata", pa.string()),  # JSON text; null: no metadata
        pa.field("timestamp", pa.int64(), nullable=False),  # Unix microseconds
        pa.field("project", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
_PLAIN = [f.name for f in SCORES_LOG_SCHEMA if f.name not in ("score_id", "metadata", "timestamp")]
_FIELDS = [f.name for f in dataclasses.fields(ValidScore)]  # ValidScore's positional order


def to_batch(scores: Sequence[ValidScore], now: datetime) -> pa.RecordBatch:
    """The scores as one record batch of SCORES_LOG_SCHEMA, each with an id (a fresh uuid where none was given)
    and a timestamp (`now` where none)."""
    now_us = _micros(now)
    columns: dict[str, list[object]] = {name: [getattr(s, name) for s in scores] for name in _PLAIN}
    columns["score_id"] = [s.score_id or str(uuid.uuid4()) for s in scores]
    columns["metadata"] = [None if s.metadata is None else orjson.dumps(s.metadata).decode() for s in scores]
    columns["timestamp"] = [now_us if s.timestamp is None else _micros(s.timestamp) for s in scores]
    return pa.RecordBatch.from_pydict(columns, schema=SCORES_LOG_SCHEMA)


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def from_table(table: pa.Table) -> list[ValidScore]:
    """The scores of a log segment, in the order they were logged."""
    columns = table.to_pydict()
    columns["metadata"] = [None if m is None else orjson.loads(m) for m in columns["metadata"]]
    columns["timestamp"] = [_EPOCH + timedelta(microseconds=us) for us in columns["timestamp"]]
    return [ValidScore(*values) for values in zip(*(columns[name] for name in _FIELDS), strict=True)]
