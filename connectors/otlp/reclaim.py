"""Deleting log segments once nothing can need them again.

A segment may go when every consumer is past it: the ClickHouse sink has written it, and (with recovery on)
the flow's committed snapshot no longer points at or before it, so a crash cannot ask for it again. Bytewax
has no hook that says an epoch was committed, so the committed offsets are read from its recovery store
(SQLite, read-only): the resume epoch is the smallest worker frontier of the latest execution, and each
source partition's committed offset is its newest snapshot below that epoch.
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
import threading
from pathlib import Path
from typing import Any

from connectors.otlp.wal import Wal

logger = logging.getLogger(__name__)


def committed_offsets(recovery_dir: Path, step_id: str) -> dict[str, Any]:
    """The committed snapshot of each partition of source step `step_id`, by partition name."""
    files = sorted(recovery_dir.glob("*.sqlite3"))
    resume_epoch: int | None = None
    snaps: dict[str, tuple[int, Any]] = {}
    for path in files:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT max(ex_num) FROM exs").fetchone()
            if row and row[0] is not None:
                fr = con.execute(
                    "SELECT min(worker_frontier) FROM fronts WHERE ex_num = ?", (row[0],)
                ).fetchone()
                if fr and fr[0] is not None:
                    resume_epoch = fr[0] if resume_epoch is None else min(resume_epoch, fr[0])
        except sqlite3.Error:
            pass
        finally:
            con.close()
    if resume_epoch is None:
        return {}
    for path in files:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = con.execute(
                "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ? AND snap_epoch < ?",
                (step_id, resume_epoch),
            ).fetchall()
        except sqlite3.Error:
            rows = []
        finally:
            con.close()
        for key, epoch, blob in rows:
            if blob is None:
                continue
            if key not in snaps or epoch > snaps[key][0]:
                snaps[key] = (epoch, pickle.loads(blob))
    return {k: v for k, (_, v) in snaps.items()}


class Reclaimer:
    """Background thread deleting segments below what every consumer has committed."""

    def __init__(
        self,
        wal: Wal,
        interval_s: float,
        recovery_dir: Path | None,
        source_step_ids: list[str],
    ) -> None:
        self._wal = wal
        self._interval = interval_s
        self._recovery_dir = recovery_dir
        self._steps = source_step_ids
        self._written: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-reclaimer", daemon=True)

    def on_written(self, partition: int, segment: int) -> None:
        """The sink wrote `segment` of `partition` (segments arrive in order per partition)."""
        with self._lock:
            self._written[partition] = max(self._written.get(partition, 0), segment + 1)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def reclaim_once(self) -> int:
        with self._lock:
            limits = dict(self._written)
        if self._recovery_dir is not None:
            for step in self._steps:
                offsets = committed_offsets(self._recovery_dir, step)
                for part in self._wal.partitions:
                    snap = offsets.get(f"p{part.index}")
                    committed = snap[1] if snap and snap[0] == self._wal.id else 0
                    limits[part.index] = min(limits.get(part.index, 0), committed)
        removed = 0
        for part in self._wal.partitions:
            below = limits.get(part.index, 0)
            if below > 0:
                removed += part.reclaim_below(below)
        return removed

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.reclaim_once()
            except Exception:  # never let reclaiming take the service down; it retries next tick
                logger.exception("reclaiming write-ahead log segments failed")
