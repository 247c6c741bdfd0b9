"""The trace-window step in the Bytewax flow: span batches in, closed traces out.

Spans are keyed by shard (`shard_of`), one `WindowShardLogic` per shard key; its timers come from the
shard's heap through `notify_at`. At the end of input the open traces are kept (and snapshotted) when
recovery is on, so a restart continues them; without recovery they are closed (`shutdown`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.operators import StatefulBatchLogic

from dataflow import metrics
from dataflow.config import WindowConfig
from dataflow.model import CloseReason, Span, Trace
from dataflow.windowing.trace_window import NS, ShardState, WindowShard

JUDGE_SCOPE = "tracejudge.judge"

_TEXT_COLUMNS = (
    "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "StatusCode", "StatusMessage", "ServiceName",
    "Project", "SessionId", "Duration", "Input", "Output",
)  # fmt: skip


_READ_COLUMNS = (*_TEXT_COLUMNS, "Timestamp", "SpanAttributes", "ResourceAttributes")


def _maps(column: Any, keys: frozenset[str] | None, n: int) -> list[dict[str, str]]:
    """Map column -> dicts: every key (None), none (empty set: shared empty dicts), or only `keys`.

    With `keys`, one vectorised lookup finds the wanted entries of the whole batch and only those become
    Python (the first of duplicate keys wins, as ClickHouse's map access); spans without any share one
    empty dict.
    """
    if keys is None:
        return [dict(m) for m in column.to_pylist()]
    out: list[dict[str, str]] = [_NO_ATTRS] * n
    if not keys or n == 0:
        return out
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    # `offsets` are the slice's, `keys`/`items` the whole unsliced child arrays: look only between the ends.
    offsets = column.offsets.to_numpy()
    lo, hi = int(offsets[0]), int(offsets[-1])
    entries = column.keys.slice(lo, hi - lo)
    hits = pc.indices_nonzero(pc.is_in(entries, value_set=pa.array(sorted(keys), pa.string())))
    if len(hits) == 0:
        return out
    rows = (np.searchsorted(offsets, hits.to_numpy() + lo, side="right") - 1).tolist()
    values = column.items.slice(lo, hi - lo).take(hits).to_pylist()
    for row, key, value in zip(rows, entries.take(hits).to_pylist(), values, strict=True):
        d = out[row]
        if d is _NO_ATTRS:
            d = out[row] = {}
        if key not in d and value is not None:
            d[key] = value
    return out


_NO_ATTRS: dict[str, str] = {}


_ID_COLUMNS = ("TraceId", "SpanId", "ParentSpanId", "Project", "Timestamp")


def _partial_spans(batch: pa.RecordBatch | pa.Table, tags: list[int] | None = None) -> list[Span]:
    """Spans of traces no rule sampled and matched: ids, project, start and rules tag (see `Span.partial`)."""
    if batch.num_rows == 0:
        return []
    col = batch.column
    ts_ns = col("Timestamp").cast(pa.int64()).to_pylist()
    return [
        Span(t, s, p, "", "", "", "", "", proj, "", ts, 0, "", "", _NO_ATTRS, _NO_ATTRS, True, tag)
        for t, s, p, proj, ts, tag in zip(
            col("TraceId").to_pylist(),
            col("SpanId").to_pylist(),
            col("ParentSpanId").to_pylist(),
            col("Project").to_pylist(),
            ts_ns,
            tags or [0] * batch.num_rows,
            strict=True,
        )
    ]


def _slim(span: Span) -> Span:
    """The partial form of a span (see `_partial_spans`)."""
    return Span(
        span.trace_id, span.span_id, span.parent_span_id, "", "", "", "", "", span.project, "", span.start_ns, 0,
        "", "", _NO_ATTRS, _NO_ATTRS, True, span.rules_tag,
    )  # fmt: skip


# Given a batch's trace ids and projects, per row: is its trace sampled by some rule (None: every row is).
Wanted = Callable[[list[str], list[str]], list[bool] | None]
# Given a batch of rows of projects with rules, per row: build the span in full?, its rules' tag, its match bits
# (see `Span.rules_tag`; the flow's spans step answers with `dataflow.rules.matching`).
Marks = tuple[list[bool], list[int], list[int]]
Match = Callable[[pa.RecordBatch | pa.Table], Marks]


def spans_from_batch(
    batch: pa.RecordBatch | pa.Table,
    projects: frozenset[str] | None = None,
    attribute_keys: frozenset[str] | None = None,
    resource_keys: frozenset[str] | None = None,
    wanted: Wanted | None = None,
    match: Match | None = None,
) -> list[Span]:
    """The Python view of a span batch; with `projects`, only spans of those projects are built.

    `attribute_keys` / `resource_keys` limit which attributes are turned into Python (None: all): the
    rules' filters name the keys they read, and building every attribute of every span was the largest
    cost of the scoring branch. With `wanted`, spans of traces that no rule samples become partial spans;
    with `match`, the spans it does not mark full become partial, and every span carries its match bits.
    """
    if projects is not None:
        if not projects:
            return []
        mask = pc.is_in(batch.column("Project"), value_set=pa.array(sorted(projects), pa.string()))
        # tracejudge's own judge spans never enter a window: they must not trigger rules or rescoring.
        mask = pc.and_(mask, pc.not_equal(batch.column("ScopeName"), JUDGE_SCOPE))
        kept = pc.sum(mask).as_py() or 0
        if kept == 0:
            return []
        if kept < batch.num_rows:
            # Only the columns read below are copied (events and links are not).
            batch = batch.select(_READ_COLUMNS).filter(mask)
    if match is not None:
        return _split(batch, match(batch), attribute_keys, resource_keys)
    if wanted is not None:
        keep = wanted(batch.column("TraceId").to_pylist(), batch.column("Project").to_pylist())
        if keep is not None:
            n = batch.num_rows
            return _split(batch, (keep, [0] * n, [0] * n), attribute_keys, resource_keys)
    return _full_spans(batch, attribute_keys, resource_keys)


def _split(
    batch: pa.RecordBatch | pa.Table,
    marks: Marks,
    attribute_keys: frozenset[str] | None,
    resource_keys: frozenset[str] | None,
) -> list[Span]:
    full, tags, bits = marks
    kept = sum(full)
    if kept * 2 > len(full):
        # Mostly full: copying the batch's kept rows would cost more than the few partial rows' text.
        spans = _full_spans(batch, attribute_keys, resource_keys, tags, bits)
        return (
            spans if kept == len(full) else [s if f else _slim(s) for s, f in zip(spans, full, strict=True)]
        )
    mask = pa.array(full, pa.bool_())
    rest = _partial_spans(
        batch.select(_ID_COLUMNS).filter(pc.invert(mask)),
        [t for t, f in zip(tags, full, strict=True) if not f],
    )
    if not kept:
        return rest
    fulls = [i for i, f in enumerate(full) if f]
    built = _full_spans(
        batch.filter(mask), attribute_keys, resource_keys, [tags[i] for i in fulls], [bits[i] for i in fulls]
    )
    return [*rest, *built]


def _full_spans(
    batch: pa.RecordBatch | pa.Table,
    attribute_keys: frozenset[str] | None,
    resource_keys: frozenset[str] | None,
    tags: list[int] | None = None,
    bits: list[int] | None = None,
) -> list[Span]:
    col = batch.column
    tid, sid, parent, name, kind, status, status_msg, service, project, session, dur, inp, out = (
        col(n).to_pylist() for n in _TEXT_COLUMNS
    )
    ts_ns = col("Timestamp").cast(pa.int64()).to_pylist()
    n = batch.num_rows
    attrs = _maps(col("SpanAttributes"), attribute_keys, n)
    res = _maps(col("ResourceAttributes"), resource_keys, n)
    tags = tags or [0] * n
    bits = bits or [0] * n
    return [
        Span(
            tid[i],
            sid[i],
            parent[i],
            name[i],
            kind[i],
            status[i],
            status_msg[i],
            service[i],
            project[i],
            session[i],
            ts_ns[i],
            dur[i],
            inp[i],
            out[i],
            attrs[i],
            res[i],
            False,
            tags[i],
            bits[i],
        )
        for i in range(n)
    ]


class WindowShardLogic(StatefulBatchLogic[list[Span], Trace, ShardState]):
    """Bytewax adapter around one `WindowShard`."""

    def __init__(self, config: WindowConfig, keep_open_at_eof: bool, state: ShardState | None) -> None:
        self._shard = WindowShard.create(config, state)
        self._keep_open_at_eof = keep_open_at_eof
        metrics.WINDOW_OPEN_TRACES.inc(self._shard.open_count)

    def _emit(self, traces: list[Trace]) -> tuple[Iterable[Trace], bool]:
        if traces:
            metrics.WINDOW_OPEN_TRACES.dec(len(traces))
            now = time.time_ns()
            for t in traces:
                metrics.WINDOW_CLOSED_TRACES.labels(t.close_reason.value).inc()
                metrics.WINDOW_CLOSE_DELAY.observe(max(0, now - t.last_seen_ns) / NS)
                if t.late:
                    metrics.WINDOW_LATE_SPANS.inc(len(t.spans))
                    metrics.WINDOW_SPAN_LATENESS.observe(t.lateness_ns / NS)
        return traces, StatefulBatchLogic.RETAIN

    def on_batch(self, values: list[list[Span]]) -> tuple[Iterable[Trace], bool]:
        """`values`: groups of spans of this shard (one group per upstream batch)."""
        now = time.time_ns()
        before = self._shard.open_count
        closed = self._shard.add((span for group in values for span in group), now)
        metrics.WINDOW_OPEN_TRACES.inc(self._shard.open_count - before + len(closed))
        return self._emit(closed + self._shard.due(now))

    def on_notify(self) -> tuple[Iterable[Trace], bool]:
        return self._emit(self._shard.due(time.time_ns()))

    def on_eof(self) -> tuple[Iterable[Trace], bool]:
        if self._keep_open_at_eof:
            return (), StatefulBatchLogic.RETAIN
        return self._emit(self._shard.close_all(CloseReason.SHUTDOWN, time.time_ns()))

    def notify_at(self) -> datetime | None:
        deadline = self._shard.next_deadline()
        if deadline is None:
            return None
        return datetime.fromtimestamp(deadline / NS, tz=UTC)

    def snapshot(self) -> ShardState:
        return self._shard.snapshot()
