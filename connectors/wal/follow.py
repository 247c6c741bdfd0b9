"""Log partitions written by another process (an ingest worker), as the main process's readers see them.

The readers of the log (the flow's source, the span store, the reclaimer) ask a partition for its sealed
segments, its newest sealed segment and the end of its durable records. For a partition this process
writes those live in memory (`log._Partition`); for one an ingest worker writes they are read from the
worker's published progress (`progress.py`), so no state is shared in memory and a segment is never taken
for sealed before its writer sealed it. `DiskUsage` counts the bytes of partitions whose segments another
process appends or deletes, for the log's size bound.
"""

from __future__ import annotations

import os
from pathlib import Path

from connectors.wal.progress import Progress, read_progress
from dataflow import metrics


class SegmentFiles:
    """A partition directory's segment files: `<seq>.open` being written, `<seq>.seg` sealed."""

    def __init__(self, root: Path, index: int) -> None:
        self.index = index
        self.dir = root / f"p{index}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def seg_path(self, seq: int, sealed: bool = True) -> Path:
        return self.dir / f"{seq:016d}.{'seg' if sealed else 'open'}"

    def sealed_segments(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.dir.glob("*.seg"):
            try:
                out.append((int(p.stem), p))
            except ValueError:
                continue
        return sorted(out)


class FollowedPartition(SegmentFiles):
    """A partition another process writes: read-only here, its progress read from disk on each question."""

    def __init__(self, root: Path, index: int, last_sealed: int, log_metrics: metrics.LogMetrics) -> None:
        super().__init__(root, index)
        self._metrics = log_metrics
        self._last = Progress((0, 0), last_sealed)
        self.sizes: dict[int, int] = {}  # the writer's; this process keeps no sizes of it
        self.queued_bytes = 0

    def _progress(self) -> Progress:
        published = read_progress(self.dir)
        if published is not None:
            self._last = published
        return self._last

    @property
    def last_sealed(self) -> int:
        return self._progress().last_sealed

    @property
    def durable(self) -> tuple[int, int]:
        return self._progress().durable

    @property
    def last_seq(self) -> int:
        progress = self._progress()
        return max(progress.durable[0], progress.last_sealed)

    def seal_soon(self) -> int:
        """Only the writer can seal: the newest segment that may hold an acknowledged append."""
        return self.last_seq

    def start(self) -> None:
        """Nothing to start: another process writes this partition."""

    def close(self) -> None:
        """Nothing to close: another process writes this partition."""

    def reclaim_below(self, seq: int) -> int:
        """Delete sealed segments numbered below `seq`; return how many."""
        removed = 0
        for s, path in self.sealed_segments():
            if s >= seq:
                break
            path.unlink(missing_ok=True)
            removed += 1
        if removed:
            self._metrics.reclaimed_segments.inc(removed)
        return removed


class DiskUsage:
    """The bytes of the segment files under `root`'s partitions `indexes` (None: all), counted on each call
    (a directory listing and a stat per segment: tens of microseconds against a request's milliseconds; a
    cached count let a burst overshoot the bound)."""

    def __init__(self, root: Path, indexes: range | None) -> None:
        self._root = root
        self._indexes = indexes

    def _dirs(self) -> list[Path]:
        if self._indexes is not None:
            return [self._root / f"p{i}" for i in self._indexes]
        return [p for p in self._root.glob("p*") if p.name[1:].isdigit()]

    def bytes(self) -> int:
        return sum(_dir_bytes(d) for d in self._dirs())


def _dir_bytes(directory: Path) -> int:
    total = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.endswith((".seg", ".open")):
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                continue
    return total
