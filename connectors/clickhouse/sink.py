"""Sealed log segments into ClickHouse `otel_traces`, exactly once per segment, off the dataflow.

`SpanStore` is a thread per process that inserts every sealed segment, in order, as one block with a
deterministic dedup token, then records the segment in a small cursor file (`p<N>/stored_seq`). After a crash
it starts again at the cursor; the one segment that may have been inserted already is dropped by ClickHouse
(`insert_deduplication_token`). Keeping storage out of the Bytewax flow means scoring never delays storage
and storage never stalls the trace windows. A failed insert is retried with back-off until it succeeds: the
log fills and receivers push back (429 / UNAVAILABLE) rather than lose anything. When the service stops, the
store drains every sealed segment; an insert that keeps failing past the stop deadline gives up with
SinkError, and the segments stay in the log for the next start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc

from connectors.clickhouse.client import ClickHouse
from connectors.wal.log import Partition, Wal, read_segment
from dataflow import metrics
from dataflow.config import SinkConfig
from dataflow.errors import SinkError, WalCorrupt
from dataflow.health import HEALTH
from dataflow.model import SPAN_COLUMNS, SpanBlock

logger = logging.getLogger(__name__)

SPANS_TABLE = "otel_traces"


@dataclass
class Backoff:
    """The waits between attempts of an insert that must land: doubling from `retry_initial_s` up to
    `retry_max_s`; once `stop` is set, `failed` gives up (SinkError) after `grace_s` more of failures. A failure
    is reported to `/readyz` (dataflow.health) under `health_key` until `succeeded` is called."""

    config: SinkConfig
    stop: threading.Event
    grace_s: float
    health_key: str = "clickhouse"
    delay: float = field(init=False)
    _stop_seen_at: float | None = field(default=None, init=False)
    _reported: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.delay = self.config.retry_initial_s

    def failed(self, what: str, exc: Exception) -> None:
        """Log the failure of `what` and sleep before the next attempt; SinkError when stopping past the grace."""
        if self.stop.is_set():
            self._stop_seen_at = self._stop_seen_at or time.monotonic()
            if time.monotonic() - self._stop_seen_at > self.grace_s:
                msg = f"gave up {what} while stopping: {exc}"
                raise SinkError(msg) from exc
        HEALTH.report(self.health_key, f"ClickHouse unavailable: {what} failed (retrying): {exc}")
        self._reported = True
        logger.warning("%s failed (retrying in %.1fs): %s", what, self.delay, exc)
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, self.config.retry_max_s)

    def succeeded(self) -> None:
        """The attempt after failures landed: clear the problem reported."""
        if self._reported:
            HEALTH.clear(self.health_key)


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
        backoff = Backoff(self._config, self._stop, self._stop_grace_s, f"clickhouse:{SPANS_TABLE}")
        while True:
            started = time.perf_counter()
            try:
                self._ch.insert_arrow(SPANS_TABLE, block.table, block.token, SPAN_COLUMNS)
            except SinkError as exc:
                metrics.SINK_INSERTS.labels(SPANS_TABLE, "error").inc()
                backoff.failed(
                    f"inserting segment {block.segment} ({block.rows} spans) into {SPANS_TABLE}", exc
                )
                continue
            elapsed = time.perf_counter() - started
            backoff.succeeded()
            metrics.SINK_INSERTS.labels(SPANS_TABLE, "ok").inc()
            metrics.SINK_ROWS.labels(SPANS_TABLE).inc(block.rows)
            metrics.SINK_INSERT_DURATION.labels(SPANS_TABLE).observe(elapsed)
            oldest = pc.min(block.table.column("IngestedAt")).value
            if oldest is not None:
                metrics.SINK_LAG.labels(SPANS_TABLE).set(max(0.0, (time.time_ns() - oldest) / 1e9))
            return


class SpanStore:
    """Inserts sealed segments of every log partition, in order, and remembers how far it got."""

    def __init__(self, wal: Wal, writer: SpanWriter, stop: threading.Event, idle_s: float = 0.05) -> None:
        self._wal = wal
        self._writer = writer
        self._stop = stop
        self._idle = idle_s
        self.error: BaseException | None = None
        self._next = {p.index: self._start_at(p) for p in wal.partitions}
        self._thread = threading.Thread(target=self._run, name="span-store", daemon=True)

    def _cursor(self, part: Partition) -> Path:
        return part.dir / "stored_seq"

    def _start_at(self, part: Partition) -> int:
        sealed = part.sealed_segments()
        oldest = sealed[0][0] if sealed else part.last_sealed + 1
        path = self._cursor(part)
        if path.exists():
            stored = int(path.read_text().strip() or 0)
            return max(oldest, stored + 1)
        return oldest

    def _record(self, part: Partition, seq: int) -> None:
        path = self._cursor(part)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(seq))
        os.replace(tmp, path)  # no fsync: a lost cursor only repeats an insert ClickHouse deduplicates

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Wait until every sealed segment is stored (call after the log is closed and `stop` is set)."""
        self._thread.join()

    def pending(self) -> int:
        return sum(max(0, p.last_sealed - self._next[p.index] + 1) for p in self._wal.partitions)

    def _run(self) -> None:
        try:
            while True:
                progressed = self.store_ready()
                if not progressed:
                    if self._stop.is_set() and self._wal.closed and self.pending() == 0:
                        return
                    time.sleep(self._idle)
        except BaseException as exc:  # stops the service loudly; the segments stay for the next start
            self.error = exc
            logger.error("span store stopped: %s", exc)

    def store_ready(self) -> bool:
        """Insert every segment sealed so far; return whether anything was stored."""
        progressed = False
        for part in self._wal.partitions:
            while self._next[part.index] <= part.last_sealed:
                seq = self._next[part.index]
                path = part.seg_path(seq)
                if not path.exists():
                    msg = f"write-ahead log p{part.index}: segment {seq} is missing before it was stored"
                    raise WalCorrupt(msg)
                table, _ = read_segment(path)
                self._writer.write(
                    SpanBlock(part.index, seq, f"tj-{self._wal.id}-p{part.index}-{seq}", table)
                )
                metrics.SINK_SEGMENTS.inc()
                self._record(part, seq)
                self._next[part.index] = seq + 1
                progressed = True
        return progressed
