"""A log partition's progress, published by the process that writes it for the processes that read it.

An ingest worker (`tracejudge/ingest_worker.py`) writes its own partition; the main process reads it (the
flow's source, the span store, the reclaimer) without shared memory. After every group commit and every seal
the writer overwrites `p<N>/progress` in place: the segment being written, the end of its durable
(fsynced) records, and the newest sealed segment. A reader never reads past that end, so it sees exactly
what an in-process reader sees in memory: nothing that was not acknowledged-durable, nothing a failed write
later cuts off. The 32-byte record carries a CRC, so a read racing a write is retried, never trusted.
The file needs no fsync: after a crash the writer (or the main process) publishes afresh from the files.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_FMT = struct.Struct("<qqqI4x")
_BODY = struct.Struct("<qqq")
FILE = "progress"


@dataclass(frozen=True)
class Progress:
    """`durable`: (segment being written, end of its durable records); `last_sealed`: newest sealed segment."""

    durable: tuple[int, int]
    last_sealed: int


class ProgressWriter:
    """The writing side: one `pwrite` of 32 bytes per publication."""

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / FILE, os.O_RDWR | os.O_CREAT, 0o644)

    def publish(self, durable: tuple[int, int], last_sealed: int) -> None:
        body = _BODY.pack(durable[0], durable[1], last_sealed)
        os.pwrite(self._fd, _FMT.pack(durable[0], durable[1], last_sealed, zlib.crc32(body)), 0)

    def close(self) -> None:
        os.close(self._fd)


def read_progress(directory: Path, attempts: int = 100) -> Progress | None:
    """The partition's published progress; None when nothing was ever published."""
    try:
        fd = os.open(directory / FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        for _ in range(attempts):
            raw = os.pread(fd, _FMT.size, 0)
            if len(raw) < _FMT.size:
                return None
            seq, end, sealed, crc = _FMT.unpack(raw)
            if zlib.crc32(raw[: _BODY.size]) == crc:
                return Progress((seq, end), sealed)
    finally:
        os.close(fd)
    return None
