"""Span blocks into ClickHouse `otel_traces`, exactly once per block.

The sink inserts each block synchronously, so when Bytewax commits an epoch every block of that epoch is
in ClickHouse. A failed insert is retried with back-off until it succeeds: the flow stalls, the log fills
and receivers push back (429 / UNAVAILABLE) rather than lose anything. Once a stop is requested, an insert
that keeps failing past the stop deadline ends the flow with SinkError; the blocks stay in the log and
are inserted at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pyarrow.compute as pc
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.clickhouse.client import ClickHouse
from dataflow import metrics
from dataflow.config import SinkConfig
from dataflow.errors import SinkError
from dataflow.model import SPAN_COLUMNS, SpanBlock

logger = logging.getLogger(__name__)

SPANS_TABLE = "otel_traces"


class SpanWriter:
    """Inserts span blocks with retries; reports each written (partition, segment) to `on_written`."""

    def __init__(
        self,
        ch: ClickHouse,
        config: SinkConfig,
        stop: threading.Event,
        on_written: Callable[[int, int], None] | None = None,
        stop_grace_s: float = 30.0,
    ) -> None:
        self._ch = ch
        self._config = config
        self._stop = stop
        self._on_written = on_written
        self._stop_grace_s = stop_grace_s

    def write(self, block: SpanBlock) -> None:
        if block.rows:
            self._insert_with_retry(block)
        if self._on_written is not None:
            self._on_written(block.partition, block.segment)

    def _insert_with_retry(self, block: SpanBlock) -> None:
        delay = self._config.retry_initial_s
        stop_seen_at: float | None = None
        while True:
            started = time.perf_counter()
            try:
                self._ch.insert_arrow(SPANS_TABLE, block.table, block.token, SPAN_COLUMNS)
            except SinkError as exc:
                metrics.SINK_INSERTS.labels(SPANS_TABLE, "error").inc()
                if self._stop.is_set():
                    stop_seen_at = stop_seen_at or time.monotonic()
                    if time.monotonic() - stop_seen_at > self._stop_grace_s:
                        msg = f"gave up inserting segment {block.segment} while stopping: {exc}"
                        raise SinkError(msg) from exc
                logger.warning(
                    "insert of %d spans into %s failed (retrying in %.1fs): %s",
                    block.rows,
                    SPANS_TABLE,
                    delay,
                    exc,
                )
                time.sleep(delay)
                delay = min(delay * 2, self._config.retry_max_s)
                continue
            elapsed = time.perf_counter() - started
            metrics.SINK_INSERTS.labels(SPANS_TABLE, "ok").inc()
            metrics.SINK_ROWS.labels(SPANS_TABLE).inc(block.rows)
            metrics.SINK_INSERT_DURATION.labels(SPANS_TABLE).observe(elapsed)
            oldest = pc.min(block.table.column("IngestedAt")).value
            if oldest is not None:
                metrics.SINK_LAG.labels(SPANS_TABLE).set(max(0.0, (time.time_ns() - oldest) / 1e9))
            return


class _SpanSinkPartition(StatelessSinkPartition[SpanBlock]):
    def __init__(self, writer: SpanWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[SpanBlock]) -> None:
        for block in items:
            self._writer.write(block)


class SpanSink(DynamicSink[SpanBlock]):
    """Bytewax sink writing `SpanBlock`s to `otel_traces` through one shared `SpanWriter`."""

    def __init__(self, writer: SpanWriter) -> None:
        self._writer = writer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SpanSinkPartition:
        return _SpanSinkPartition(self._writer)
