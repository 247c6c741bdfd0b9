"""The scores log's writer: a thread that stores each sealed segment in ClickHouse, in order, then forgets it.

Per segment: read its scores, write them through `ScoreStore.write` (the trace look-up, the id look-up, the
deletes of rows the new ones would not replace, and ONE insert for the whole segment, so the thousands of scores
acknowledged in ~0.2 s share the insert's fixed cost), record the segment in a cursor file (`p0/stored_seq`,
fsynced), then delete it. A failed insert is retried with back-off until it lands (a metric and a log line per
failure, not per score); meanwhile the log fills and posts answer 503 with Retry-After. When the service stops
the writer stores every sealed segment; an insert that keeps failing past the stop grace gives up, and its
segments stay for the next start.

Replaying a segment is idempotent, so a crash between the insert and the cursor (or a lost cursor) is harmless:
the log holds each score's id and timestamp, so the replay writes the same rows again, and the id look-up finds
the first copy. In the same partition, sort key and version a re-inserted row replaces itself (ReplacingMergeTree:
with equal versions the last insert wins); where the place changed since (its trace has landed in between: another
TraceStart) the look-up deletes the first copy before the insert. Either way one row per id after FINAL
(tests/unit/test_scores_log.py replays a segment twice). A delete of a score never runs before its logged insert:
it waits until the writer has recorded the segment (`wait_stored`), so no replay can bring a deleted score back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from connectors.clickhouse.scores_store import ScoreStore
from connectors.clickhouse.sink import Backoff
from connectors.scores_log.batch import SCORES_LOG_SCHEMA, from_table
from connectors.wal.log import Wal, read_segment
from dataflow import metrics
from dataflow.config import SinkConfig
from dataflow.errors import QueryError, SinkError, WalCorrupt
from tracejudge_client.validation import ValidScore

logger = logging.getLogger(__name__)


class ScoreLogWriter:
    """Stores the scores log's sealed segments in order; `stored_seq` is the last one stored."""

    name = "scores-log-writer"

    def __init__(
        self,
        log: Wal,
        store: ScoreStore,
        config: SinkConfig,
        stop: threading.Event,
        stop_grace_s: float = 30.0,
        idle_s: float = 0.01,
    ) -> None:
        self._log = log
        self._part = log.partitions[0]
        self._store = store
        self._config = config
        self._stop = stop
        self._stop_grace_s = stop_grace_s
        self._idle_s = idle_s
        self._stored = threading.Condition()
        self.error: BaseException | None = None
        self.stored_seq = self._start_at() - 1
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _cursor(self) -> Path:
        return self._part.dir / "stored_seq"

    def _start_at(self) -> int:
        sealed = self._part.sealed_segments()
        oldest = sealed[0][0] if sealed else self._part.last_sealed + 1
        path = self._cursor()
        if path.exists():
            return max(oldest, int(path.read_text().strip() or 0) + 1)
        return oldest

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Wait until every sealed segment is stored (call after the log is closed and `stop` is set)."""
        self._thread.join()

    def wait_stored(self, seq: int, timeout_s: float) -> bool:
        """Wait until segment `seq` is stored, up to `timeout_s`; whether it is."""
        with self._stored:
            self._stored.wait_for(lambda: self.stored_seq >= seq or self.error is not None, timeout_s)
            return self.stored_seq >= seq

    def _run(self) -> None:
        try:
            while True:
                if not self.store_ready():
                    if self._stop.is_set() and self._log.closed and self.stored_seq >= self._part.last_sealed:
                        return
                    time.sleep(self._idle_s)
        except BaseException as exc:  # stops the service loudly; the segments stay for the next start
            logger.error("scores log writer stopped: %s", exc)
            with self._stored:
                self.error = exc
                self._stored.notify_all()

    def store_ready(self) -> bool:
        """Store every segment sealed so far; whether anything was stored."""
        progressed = False
        while self.stored_seq < self._part.last_sealed:
            seq = self.stored_seq + 1
            path = self._part.seg_path(seq)
            if not path.exists():
                msg = f"scores log: segment {seq} is missing before it was stored"
                raise WalCorrupt(msg)
            table, _ = read_segment(path, SCORES_LOG_SCHEMA)
            self._write(from_table(table), seq)
            self._record(seq)
            with self._stored:
                self.stored_seq = seq
                self._stored.notify_all()
            self._part.reclaim_below(seq + 1)
            metrics.SCORES_LOG_STORED_SEGMENTS.inc()
            progressed = True
        return progressed

    def _record(self, seq: int) -> None:
        # fsynced before any delete that waited for this segment runs: a replay must never follow such a delete
        path = self._cursor()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(str(seq))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fd = os.open(self._part.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, scores: list[ValidScore], seq: int) -> None:
        backoff = Backoff(self._config, self._stop, self._stop_grace_s, "clickhouse:scores-api")
        while True:
            try:
                self._store.write(scores)
                backoff.succeeded()
                return
            except (SinkError, QueryError) as exc:
                metrics.SCORES_LOG_INSERT_ERRORS.inc()
                backoff.failed(f"storing scores log segment {seq} ({len(scores)} scores)", exc)
