"""Deleting log segments once nothing can need them again.

A segment may go when every consumer is past it: the ClickHouse sink has written it, and (with recovery on)
the flow's committed snapshot no longer points at or before it, so a crash cannot ask for it again. Bytewax
has no hook that says an epoch was committed, so the committed offsets are read from its recovery store
(SQLite, read-only): the resume epoch is the smallest worker frontier of the latest execution, and each
source partition's committed offset is its newest snapshot below that epoch.

The store is read from a separate helper process, never from this one: Bytewax links its own SQLite, and two
SQLite libraries on one database in one process break each other's POSIX locks (closing our connection drops
Bytewax's locks; its WAL index was then re-initialised under a live mapping and the flow died with SIGBUS).
"""

from __future__ import annotations

import json
import logging
import pickle
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from connectors.wal.log import Wal
from dataflow.errors import TracejudgeError
from dataflow.polling import Poller

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


class RecoveryReader:
    """A long-lived helper process that reads committed offsets from the recovery store on request."""

    def __init__(self, recovery_dir: Path, timeout_s: float = 30.0) -> None:
        self._dir = recovery_dir
        self._timeout = timeout_s
        self._proc: subprocess.Popen[str] | None = None

    def _ensure(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "connectors.wal.reclaim", str(self._dir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        return self._proc

    def offsets(self, step_ids: list[str]) -> dict[str, dict[str, Any]]:
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(step_ids) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            self.close()
            raise
        if not line:
            self.close()
            msg = "recovery reader exited"
            raise RuntimeError(msg)
        answer: dict[str, dict[str, Any]] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.kill()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                logger.debug("recovery reader did not stop", exc_info=True)
            self._proc = None


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
        self._recovery_dir = recovery_dir
        self._steps = source_step_ids
        self._written: dict[int, int] = {}
        self._lock = threading.Lock()
        self._reader = RecoveryReader(recovery_dir) if recovery_dir is not None else None
        self._poller = Poller("wal-reclaimer", interval_s, self._tick, on_error=self._failed)

    def on_written(self, partition: int, segment: int) -> None:
        """The sink wrote `segment` of `partition` (segments arrive in order per partition)."""
        with self._lock:
            self._written[partition] = max(self._written.get(partition, 0), segment + 1)

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def reclaim_once(self) -> int:
        with self._lock:
            limits = dict(self._written)
        if self._reader is not None:
            by_step = self._reader.offsets(self._steps)
            for step in self._steps:
                offsets = by_step.get(step, {})
                for part in self._wal.partitions:
                    # A snapshot is (log id, next segment, ...): segments below `next` are committed.
                    snap = offsets.get(f"p{part.index}")
                    next_seq = int(snap[1]) if snap and snap[0] == self._wal.id else 0
                    limits[part.index] = min(limits.get(part.index, 0), next_seq)
        removed = 0
        for part in self._wal.partitions:
            below = limits.get(part.index, 0)
            if below > 0:
                removed += part.reclaim_below(below)
        self._wal.refresh_state()
        return removed

    def _tick(self) -> None:
        try:
            self.reclaim_once()
        except TracejudgeError:
            raise
        except (
            Exception
        ) as exc:  # the recovery reader or SQLite: never take the service down; retry next tick
            self._failed(exc)

    @staticmethod
    def _failed(exc: Exception) -> None:
        logger.error("reclaiming write-ahead log segments failed: %s", exc, exc_info=exc)


def _serve(recovery_dir: Path) -> None:
    """Helper process: for each line (a JSON list of step ids) answer one line of committed offsets."""
    for line in sys.stdin:
        steps = json.loads(line)
        answer = {step: committed_offsets(recovery_dir, step) for step in steps}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
