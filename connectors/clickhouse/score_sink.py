"""Score rows into ClickHouse `scores`, flushed at every epoch.

A Bytewax sink partition whose `snapshot()` (called when an epoch ends) inserts what it buffered, as
Bytewax's own FileSink fsyncs there: when an epoch is committed its scores are in ClickHouse. After a crash
the epoch is replayed, the same traces close again and the same deterministic score ids replace their rows
(`scores` is a ReplacingMergeTree). A failed insert is retried until it succeeds; the flow waits.

Once a block is in, `on_written` sees its rows (the per-rule quality metrics and status counts). That is at the
successful insert, not at receipt: a flush retried after an error counts its rows once, and a row that never
reached ClickHouse is never counted. A Bytewax replay after a crash re-emits the uncommitted epoch's rows; those
inserted before the crash are counted again. Prometheus counters restart at zero with the process anyway; the
status counts, which continue across restarts, may over-count by at most that one epoch (`scores FINAL` is
exact).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.sink import Backoff
from dataflow import metrics
from dataflow.config import SinkConfig
from dataflow.errors import SinkError
from dataflow.model import SCORE_COLUMNS, ScoreRow, scores_to_arrow

logger = logging.getLogger(__name__)

SCORES_TABLE = "scores"
_FLUSH_ROWS = 20_000


class ScoreWriter:
    def __init__(
        self,
        ch: ClickHouse,
        config: SinkConfig,
        stop: threading.Event,
        stop_grace_s: float = 30.0,
        on_written: Callable[[list[ScoreRow]], None] | None = None,
    ) -> None:
        self._ch = ch
        self._config = config
        self._stop = stop
        self._grace = stop_grace_s
        self._on_written = on_written
        self._seq = 0

    def write(self, rows: list[ScoreRow]) -> None:
        if not rows:
            return
        table = scores_to_arrow(rows)
        backoff = Backoff(self._config, self._stop, self._grace, f"clickhouse:{SCORES_TABLE}")
        while True:
            started = time.perf_counter()
            self._seq += 1
            try:
                # Idempotent by ScoreId (ReplacingMergeTree): a fresh token never drops a retried block.
                self._ch.insert_arrow(
                    SCORES_TABLE, table, f"scores-{time.time_ns()}-{self._seq}", SCORE_COLUMNS
                )
            except SinkError as exc:
                metrics.SINK_INSERTS.labels(SCORES_TABLE, "error").inc()
                backoff.failed(f"inserting {len(rows)} scores into {SCORES_TABLE}", exc)
                continue
            backoff.succeeded()
            metrics.SINK_INSERTS.labels(SCORES_TABLE, "ok").inc()
            metrics.SINK_ROWS.labels(SCORES_TABLE).inc(len(rows))
            metrics.SINK_INSERT_DURATION.labels(SCORES_TABLE).observe(time.perf_counter() - started)
            self._written(rows)
            return

    def _written(self, rows: list[ScoreRow]) -> None:
        if self._on_written is None:
            return
        try:
            self._on_written(rows)
        except Exception:  # counting must never stop the flow; the rows are stored
            logger.exception("recording %d written scores failed", len(rows))


class _ScorePartition(StatefulSinkPartition[ScoreRow | list[ScoreRow], None]):
    def __init__(self, writer: ScoreWriter) -> None:
        self._writer = writer
        self._buffer: list[ScoreRow] = []

    def write_batch(self, values: list[ScoreRow | list[ScoreRow]]) -> None:
        # The scoring step sends one list per batch of traces; the judge step single rows.
        for value in values:
            if isinstance(value, ScoreRow):
                self._buffer.append(value)
            else:
                self._buffer.extend(value)
        if len(self._buffer) >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        rows, self._buffer = self._buffer, []
        self._writer.write(rows)

    def snapshot(self) -> None:
        self._flush()
        return None

    def close(self) -> None:
        self._flush()


class ScoreSink(FixedPartitionedSink[ScoreRow | list[ScoreRow], None]):
    """Takes (key, ScoreRow) items; one partition."""

    def __init__(self, writer: ScoreWriter) -> None:
        self._writer = writer

    def list_parts(self) -> list[str]:
        return ["scores"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ScorePartition:
        return _ScorePartition(self._writer)
