"""Scores from applications and people (`/api/v1/scores`) in ClickHouse `scores`, and the scores API's reads.

Idempotency by score id. `scores` is a ReplacingMergeTree(Timestamp) PARTITION BY toYYYYMM(TraceStart) ORDER
BY (Project, Name, ScoreId): two rows become one (FINAL, merges) only within one partition and with one sort
key, and then the greater Timestamp wins. A score posted again with the same `score_id` may change all three:
another name or project (the sort key), another TraceStart (its trace has landed since: the partition), or an
earlier `timestamp` (the version: the new row would lose). So a write first looks its given ids up (a
bloom-filter index on ScoreId, migration 0008) and, where an earlier row would not be replaced by the new one
(another TraceStart, project or name, or a later Timestamp), deletes it (a lightweight `DELETE FROM scores
WHERE ScoreId IN ...`) before the one insert of the request's rows; otherwise the insert alone replaces it
(with equal versions the last inserted row wins). Fresh ids (generated here) need no look-up. Repeats of an
id within one request: the last one counts. This process's writes are serialized by a lock, so two posts of
one id never interleave their look-up and insert; the requests that wait for the lock are written together
(group commit: one look-up and one insert for all, in arrival order, so a later request's repeat of an id
counts), which is what lets concurrent writes share the per-insert cost. The scores API does not write here
directly: its posts go to the scores log, whose writer thread writes one log segment (thousands of scores) at a
time (`connectors/scores_log/`); replaying a segment writes the same rows again, which this makes one. Two processes
sharing a ClickHouse server could still race on one id (each would see no earlier row): post a given id from
one place.

TraceStart of an API score: the first span time of its trace when the trace is stored at write time, else
the earlier row's (a re-post keeps the partition), else the score's own timestamp (no trace yet, or a
session or dataset run score). The project: the one given, else the stored trace's, else `default`. A score
posted before its trace is stored as is and found by its trace id once the trace lands.

DELETE is the same lightweight delete: the rows are masked for every read at once (FINAL or not), the mask is
part of the table's data, so it holds after a restart, and merges drop the rows later. A tombstone row would
need the engine's is_deleted column (ReplacingMergeTree(Timestamp, IsDeleted)), which no additive migration can
add to an existing table. A delete followed by a failed insert leaves the score absent until the client's retry.
"""

from __future__ import annotations

import base64
import binascii
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio.to_thread
import orjson

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.id_literals import id_queries
from connectors.clickhouse.migrate import SQL_DIR
from tracejudge_client.validation import ValidScore

SCORES_TABLE = "scores"
DEFAULT_PROJECT = "default"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The columns an API score sets, with their types (migrations 0003 and 0008): the insert needs no DESCRIBE.
_COLUMN_TYPES = {
    "ScoreId": "String", "Project": "LowCardinality(String)", "TraceId": "String", "SpanId": "String",
    "SessionId": "String", "DatasetRunId": "String", "Name": "LowCardinality(String)", "Value": "Nullable(Float64)",
    "StringValue": "String", "DataType": "LowCardinality(String)", "Comment": "String",
    "Source": "LowCardinality(String)", "ConfigId": "String", "Passed": "Nullable(Bool)",
    "Metadata": "Map(LowCardinality(String), String)", "TraceStart": "DateTime64(9)", "Timestamp": "DateTime64(6)",
}  # fmt: skip
_COLUMNS = list(_COLUMN_TYPES)
# The columns of scores_list.sql, as the API's snake_case names.
_FIELDS = (
    "score_id", "project", "trace_id", "observation_id", "session_id", "dataset_run_id", "name", "value",
    "string_value", "data_type", "comment", "source", "config_id", "rule_id", "rule_name", "rule_version",
    "scorer", "model", "passed", "error", "latency_ms", "input_tokens", "output_tokens", "cost_usd", "metadata",
    "trace_start_ns", "timestamp_us",
)  # fmt: skip


def _query(name: str) -> str:
    return (SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class TraceInfo:
    project: str
    start_ns: int


@dataclass(frozen=True)
class _Stored:
    project: str
    name: str
    trace_start_ns: int
    timestamp_us: int


@dataclass(frozen=True)
class ScoreFilter:
    """What `ScoreStore.page` selects; '' (0 for the times, Unix microseconds) means any."""

    project: str = ""
    trace_id: str = ""
    span_id: str = ""
    session_id: str = ""
    name: str = ""
    source: str = ""
    rule_id: str = ""
    score_id: str = ""
    since_us: int = 0
    until_us: int = 0


def encode_cursor(timestamp_us: int, score_id: str) -> str:
    """The opaque cursor after a row: base64url of `timestamp_us:score_id`."""
    return base64.urlsafe_b64encode(f"{timestamp_us}:{score_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(timestamp_us, score_id) of a cursor; ValueError when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, score_id = text.split(":", 1)
        return int(ts), score_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        msg = "not a cursor this API returned"
        raise ValueError(msg) from exc


def metadata_map(value: Any) -> dict[str, str]:
    """A score's metadata (any JSON) as the table's Map(String, String): an object's values as strings
    (JSON for what is not a string); any other value under the key `value`."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in value.items()}
    return {"value": value if isinstance(value, str) else orjson.dumps(value).decode()}


class ScoreAccess(Protocol):
    """What the scores API needs: `ScoreStore` (writes stored at once) or `LoggedScores` (connectors/scores_log:
    writes durable in a log first, reads that wait for them)."""

    def write(self, scores: Sequence[ValidScore], now: datetime | None = None) -> list[str]: ...

    async def write_async(self, scores: Sequence[ValidScore], now: datetime | None = None) -> list[str]:
        """`write` from the event loop, without blocking it."""
        ...

    def delete(self, score_id: str) -> bool: ...

    def page(
        self, where: ScoreFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    def get(self, score_id: str) -> dict[str, Any] | None: ...

    def caught_up(self) -> bool:
        """Wait (bounded) until every score written so far can be read; whether it can."""
        ...


@dataclass
class _Waiting:
    """One request's scores, waiting for a group write (`ScoreStore.write`); then `done`, or its `error`."""

    ids: list[str]
    scores: Sequence[ValidScore]
    now_us: int
    done: bool = False
    error: Exception | None = None


class ScoreStore:
    def __init__(self, ch: ClickHouse, delete_from: str = SCORES_TABLE) -> None:
        """`delete_from`: the table a lightweight DELETE names (on a cluster the local one, ON CLUSTER)."""
        self._ch = ch
        self._delete_from = delete_from
        self._lock = threading.Lock()  # one write (look-up, deletes, insert) or delete at a time
        self._waiting: list[_Waiting] = []  # the requests the next write takes
        self._waiting_lock = threading.Lock()

    def traces(self, trace_ids: Iterable[str]) -> dict[str, TraceInfo]:
        """The stored traces among `trace_ids`: project and start."""
        ids = sorted(set(trace_ids) - {""})
        if not ids:
            return {}
        rows = self._by_ids("score_traces", "trace_ids", ids)
        return {tid: TraceInfo(project, int(start)) for tid, project, start in rows}

    def write(self, scores: Sequence[ValidScore], now: datetime | None = None) -> list[str]:
        """Store validated scores; their ids in order (generated where none was given).

        Group commit: the requests that arrive while a write is under way wait for it, and whichever of them
        takes the lock next writes them all (in arrival order: a later request's repeat of an id counts), in
        one look-up and one insert; each caller returns when its scores are stored, or raises the group's
        error."""
        if not scores:
            return []
        ids = [s.score_id or str(uuid.uuid4()) for s in scores]
        request = _Waiting(ids, scores, _micros(now or datetime.now(UTC)))
        with self._waiting_lock:
            self._waiting.append(request)
        with self._lock:
            if not request.done:
                with self._waiting_lock:
                    group, self._waiting = self._waiting, []
                try:
                    self._write_group(group)
                except Exception as exc:
                    for waiting in group:
                        waiting.error = exc
                finally:
                    for waiting in group:
                        waiting.done = True
        if request.error is not None:
            raise request.error
        return ids

    async def write_async(self, scores: Sequence[ValidScore], now: datetime | None = None) -> list[str]:
        """`write` in a worker thread."""
        ids: list[str] = await anyio.to_thread.run_sync(self.write, scores, now)
        return ids

    def _write_group(self, group: list[_Waiting]) -> None:
        """One look-up, the deletes it calls for, and one insert of the rows of ``group`` (under the lock)."""
        latest = {i: (s, w.now_us) for w in group for i, s in zip(w.ids, w.scores, strict=True)}
        traces = self.traces(s.trace_id for s, _ in latest.values())
        earlier = self._stored([s.score_id for s, _ in latest.values() if s.score_id])
        rows, stale = [], []
        for score_id, (score, now_us) in latest.items():
            olds = earlier.get(score_id, [])
            row = _row(score_id, score, now_us, traces.get(score.trace_id) if traces else None, olds)
            rows.append(row)
            if olds and any(not _replaces(row, old) for old in olds):
                stale.append(score_id)
        if stale:
            self._ch.command(
                f"DELETE FROM {self._delete_from} WHERE ScoreId IN {{ids:Array(String)}}", {"ids": stale}
            )
        self._ch.insert_rows(
            SCORES_TABLE,
            list(zip(*rows, strict=True)),
            _COLUMNS,
            list(_COLUMN_TYPES.values()),
            by_column=True,
        )

    def _stored(self, score_ids: list[str]) -> dict[str, list[_Stored]]:
        if not score_ids:
            return {}
        found: dict[str, list[_Stored]] = {}
        for score_id, project, name, start_ns, ts_us in self._by_ids(
            "score_rows_by_id", "score_ids", score_ids
        ):
            found.setdefault(score_id, []).append(_Stored(project, name, int(start_ns), int(ts_us)))
        return found

    def _by_ids(self, query: str, name: str, ids: list[str]) -> list[tuple[Any, ...]]:
        """The rows of `query` for the distinct `ids` (its `{name:Array(String)}` parameter), in one query or a
        few (`id_queries`)."""
        return [
            row
            for sql, params in id_queries(_query(query), name, ids)
            for row in self._ch.query_rows(sql, params)
        ]

    def caught_up(self) -> bool:
        """Always: a write returns once stored."""
        return True

    def delete(self, score_id: str) -> bool:
        """Delete every row of `score_id`; False when there was none."""
        with self._lock:
            if not self._stored([score_id]):
                return False
            self._ch.command(
                f"DELETE FROM {self._delete_from} WHERE ScoreId = {{id:String}}", {"id": score_id}
            )
        return True

    def page(
        self, where: ScoreFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` scores, newest first, after `cursor`; and the cursor of the next page (None: no more).
        ValueError for a cursor this API did not return."""
        cursor_us, cursor_id = decode_cursor(cursor) if cursor else (0, "")
        params = vars(where) | {
            "has_cursor": int(cursor is not None and cursor != ""),
            "cursor_us": cursor_us,
            "cursor_id": cursor_id,
            "limit": limit + 1,
        }
        rows = [
            dict(zip(_FIELDS, r, strict=True)) for r in self._ch.query_rows(_query("scores_list"), params)
        ]
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last["timestamp_us"], last["score_id"])

    def get(self, score_id: str) -> dict[str, Any] | None:
        rows, _ = self.page(ScoreFilter(score_id=score_id), 1)
        return rows[0] if rows else None


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _row(
    score_id: str, s: ValidScore, now_us: int, trace: TraceInfo | None, earlier: list[_Stored]
) -> list[Any]:
    ts_us = _micros(s.timestamp) if s.timestamp is not None else now_us
    if trace is not None:
        trace_start_ns = trace.start_ns
    else:
        trace_start_ns = earlier[0].trace_start_ns if earlier else ts_us * 1000
    project = s.project or (trace.project if trace is not None else "") or DEFAULT_PROJECT
    return [
        score_id, project, s.trace_id, s.observation_id, s.session_id, s.dataset_run_id, s.name, s.value,
        s.string_value, s.data_type, s.comment, s.source, s.config_id, s.passed, metadata_map(s.metadata),
        trace_start_ns, ts_us,
    ]  # fmt: skip


def _replaces(row: list[Any], old: _Stored) -> bool:
    """Whether inserting `row` replaces the stored `old` (same partition and key, version not older)."""
    project, name, trace_start_ns, ts_us = row[1], row[6], row[15], row[16]
    same_place = (old.project, old.name, old.trace_start_ns) == (project, name, trace_start_ns)
    return same_place and ts_us >= old.timestamp_us
