"""The write-ahead log: an acknowledgement means the spans are on disk.

Layout under `<data_dir>/wal/`:

    id                      random id of this log, written once; part of every dedup token
    p<N>/last_seq           the last segment number handed out (segments are numbered without gaps)
    p<N>/<seq>.open         the segment being written
    p<N>/<seq>.seg          a sealed segment: complete, read by the flow, deleted once committed

A segment is a sequence of framed records: a 24-byte header (magic, type, payload length, CRC-32, rows)
then the payload. The first record is the Arrow schema; then one record per accepted request (an Arrow IPC
record-batch message); the last record of a sealed segment is a seal. Appends are group-committed: one
writer thread per partition writes every queued batch, fsyncs once (mode `always`), then resolves the
callers' futures. Segments are sealed by rows, bytes or age, so a sealed segment is the unit ClickHouse
receives as one deduplicated block.

At start-up an `.open` segment left by a crash is checked record by record, its torn tail (never
acknowledged) cut, and sealed.

The spans' log is `Wal(root, config)`; another log passes its own Arrow schema, metrics and name (the scores
API's, `connectors/scores_log/`). `seal_soon` seals the open segment without waiting for its age, for a reader
that must see everything acknowledged so far.

With ingest workers (`tracejudge/ingest_workers.py`) each worker opens `Wal(root, config, own=[n])` and writes
only partition `p<n>`, holding its lock (`lock.py`) and publishing its progress on disk (`progress.py`); the
main process opens `Wal(root, config, workers=N)`, writes its own partitions and follows the workers' ones
(`follow.py`), sealing their crash-left `.open` segments at start-up before any worker runs.
"""

from __future__ import annotations

import logging
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from connectors.wal.follow import DiskUsage, FollowedPartition, SegmentFiles
from connectors.wal.lock import PartitionLock
from connectors.wal.progress import ProgressWriter
from dataflow import metrics
from dataflow.config import WalConfig
from dataflow.errors import WalCorrupt, WalError, WalFull
from dataflow.health import HEALTH
from dataflow.model import SPAN_SCHEMA

logger = logging.getLogger(__name__)

# 24 bytes, and Arrow IPC payloads are multiples of 8: every payload starts 8-byte aligned in the file,
# so record batches read from a memory map are zero-copy and aligned.
_HEADER = struct.Struct("<4sB3xIII4x")
_SEAL_RETRY_S = 0.5  # the wait before sealing again after a failed seal (a full disk)
_MAGIC = b"TJW2"
REC_SCHEMA = 1
REC_BATCH = 2
REC_SEAL = 3
LOCK_WAIT_S = 90.0  # a partition's previous writer (an orphaned ingest worker) drains for up to ~25 s


def _frame(kind: int, payload: bytes | pa.Buffer, rows: int) -> list[bytes | pa.Buffer]:
    if len(payload) % 8:
        payload = bytes(payload) + b"\x00" * (8 - len(payload) % 8)
    return [_HEADER.pack(_MAGIC, kind, len(payload), zlib.crc32(payload), rows), payload]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Record:
    kind: int
    offset: int
    rows: int
    payload: pa.Buffer


def iter_records(buf: pa.Buffer, verify: bool) -> Iterator[Record]:
    """Records of a segment image, stopping at the first incomplete or damaged one."""
    view = memoryview(buf)
    size = len(view)
    pos = 0
    while pos + _HEADER.size <= size:
        magic, kind, length, crc, rows = _HEADER.unpack_from(view, pos)
        start = pos + _HEADER.size
        if magic != _MAGIC or start + length > size:
            return
        payload = buf.slice(start, length)
        if verify and zlib.crc32(view[start : start + length]) != crc:
            return
        yield Record(kind, pos, rows, payload)
        pos = start + length


def read_segment(path: Path, default_schema: pa.Schema = SPAN_SCHEMA) -> tuple[pa.Table, int]:
    """A sealed segment's rows as one table (zero-copy over a memory map), and its row count."""
    with pa.memory_map(str(path), "r") as source:
        buf = source.read_buffer()
    schema: pa.Schema | None = None
    batches: list[pa.RecordBatch] = []
    sealed = False
    for rec in iter_records(buf, verify=False):
        if rec.kind == REC_SCHEMA:
            schema = pa.ipc.read_schema(rec.payload)
        elif rec.kind == REC_BATCH:
            if schema is None:
                msg = f"{path}: batch record before the schema record"
                raise WalCorrupt(msg)
            batches.append(pa.ipc.read_record_batch(rec.payload, schema))
        elif rec.kind == REC_SEAL:
            sealed = True
            break
    if not sealed:
        msg = f"{path}: sealed segment has no seal record (damaged file)"
        raise WalCorrupt(msg)
    table = pa.Table.from_batches(batches, schema=schema or default_schema)
    return table, table.num_rows


def read_records_from(
    path: Path, offset: int, end: int | None
) -> tuple[pa.Schema, list[tuple[int, pa.RecordBatch]], int, bool]:
    """Batches of a segment from byte `offset` up to `end` (None: the whole file).

    Returns the schema, (offset after the record, batch) pairs, the offset reached, and whether the seal was
    read. Reads stop at the first incomplete record, so a reader never sees a torn write.
    """
    with open(path, "rb") as fh:
        head = fh.read(_HEADER.size)
        magic, kind, length, _, _ = _HEADER.unpack(head)
        if magic != _MAGIC or kind != REC_SCHEMA:
            msg = f"{path}: does not start with a schema record"
            raise WalCorrupt(msg)
        schema = pa.ipc.read_schema(pa.py_buffer(fh.read(length)))
        start = max(offset, _HEADER.size + length)
        fh.seek(start)
        data = fh.read() if end is None else fh.read(max(0, end - start))
    buf = pa.py_buffer(data)
    out: list[tuple[int, pa.RecordBatch]] = []
    reached = start
    sealed = False
    for rec in iter_records(buf, verify=False):
        after = start + rec.offset + _HEADER.size + rec.payload.size
        if rec.kind == REC_SEAL:
            sealed = True
            reached = after
            break
        if rec.kind == REC_BATCH:
            out.append((after, pa.ipc.read_record_batch(rec.payload, schema)))
        reached = after
    return schema, out, reached, sealed


def read_last_seq(directory: Path) -> int:
    """The number of the newest segment of a partition directory (open or sealed; 0: none yet)."""
    path = directory / "last_seq"
    on_disk = [int(p.stem) for p in directory.glob("*.seg")] + [int(p.stem) for p in directory.glob("*.open")]
    last = int(path.read_text().strip()) if path.exists() else 0
    return max([last, *on_disk])


def recover_open_segments(wal: Wal, directory: Path, index: int) -> None:
    """Seal every `.open` segment a crash left, after cutting its torn (never acknowledged) tail."""
    for path in sorted(directory.glob("*.open")):
        with pa.memory_map(str(path), "r") as source:
            buf = source.read_buffer()
        good = 0
        rows = 0
        for rec in iter_records(buf, verify=True):
            if rec.kind == REC_SEAL:
                break
            good = rec.offset + _HEADER.size + rec.payload.size
            rows += rec.rows
        size = path.stat().st_size
        if size > good:
            wal.metrics.torn_bytes.inc(size - good)
            logger.warning("%s p%d: cut %d torn bytes from %s", wal.name, index, size - good, path.name)
        with open(path, "rb+") as fh:
            fh.truncate(good)
            fh.seek(good)
            if good == 0:
                for part in _frame(REC_SCHEMA, wal.schema.serialize(), 0):
                    fh.write(part)
            for part in _frame(REC_SEAL, b"", rows):
                fh.write(part)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(path, path.with_suffix(".seg"))
        _fsync_dir(directory)
        logger.info("%s p%d: recovered and sealed %s (%d rows)", wal.name, index, path.stem, rows)


class _Partition(SegmentFiles):
    """One partition: its segment files and the writer thread that group-commits appends."""

    def __init__(self, wal: Wal, index: int) -> None:
        super().__init__(wal.root, index)
        self.wal = wal
        self._cond = threading.Condition()
        self._queue: list[tuple[pa.Buffer, int, Future[None]]] = []
        self._queued_bytes = 0
        self._closing = False
        self._seal_asked = False  # seal the open segment now, not at its age (`seal_soon`)
        self._failing = False  # a write or seal failed and none has succeeded since (reported to health)
        self._fd: int | None = None
        self._lock: PartitionLock | None = None
        self._progress: ProgressWriter | None = None
        if wal.publish:  # written here, read by another process: exclusive, with its progress on disk
            self._lock = PartitionLock(self.dir, LOCK_WAIT_S)
        self._seq = read_last_seq(self.dir)
        self._seg_rows = 0
        self._seg_bytes = 0
        self._seg_opened_at = 0.0
        recover_open_segments(wal, self.dir, index)
        self.last_sealed = self._seq
        # (segment being written, end of its durable records): what incremental readers may read.
        self.durable: tuple[int, int] = (0, 0)
        if wal.publish:
            self._progress = ProgressWriter(self.dir)
            self._publish()
        self.sizes: dict[int, int] = {seq: p.stat().st_size for seq, p in self.sealed_segments()}
        self._thread = threading.Thread(target=self._run, name=f"{wal.name}-writer-p{index}", daemon=True)

    def _write_last_seq(self, seq: int) -> None:
        tmp = self.dir / "last_seq.tmp"
        tmp.write_text(str(seq))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "last_seq")

    def _publish(self) -> None:
        if self._progress is not None:
            self._progress.publish(self.durable, self.last_sealed)

    # --- appending -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def enqueue(self, payload: pa.Buffer, rows: int) -> Future[None]:
        fut: Future[None] = Future()
        with self._cond:
            if self._closing:
                msg = "the write-ahead log is closed"
                raise WalError(msg)
            self._queue.append((payload, rows, fut))
            self._queued_bytes += payload.size
            self._cond.notify()
        return fut

    def seal_soon(self) -> int:
        """Ask the writer to seal the open segment once its queued appends are written, rather than at its age;
        return the number of the last segment that holds an acknowledged append (sealed, or sealed soon)."""
        with self._cond:
            self._seal_asked = True
            self._cond.notify()
            return self._seq

    @property
    def last_seq(self) -> int:
        """The number of the newest segment (open or sealed)."""
        return self._seq

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        if self._progress is not None:
            self._progress.close()
        if self._lock is not None:
            self._lock.release()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the writer must never die silently
            logger.exception("%s p%d: writer failed", self.wal.name, self.index)
            self.wal.failed = exc
            with self._cond:
                for _, _, fut in self._queue:
                    fut.set_exception(WalError(f"write-ahead log writer failed: {exc}"))
                self._queue.clear()

    def _loop(self) -> None:
        cfg = self.wal.config
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self._seal_asked:
                    timeout = None
                    if self._fd is not None:
                        timeout = max(0.0, self._seg_opened_at + cfg.segment_max_age_s - time.monotonic())
                        if timeout == 0.0:
                            break
                    self._cond.wait(timeout)
                items, self._queue = self._queue, []
                closing, seal_asked, self._seal_asked = self._closing, self._seal_asked, False
            if items:
                self._write(items)
            if self._fd is not None and (
                closing
                or seal_asked
                or self._seg_rows >= cfg.segment_max_rows
                or self._seg_bytes >= cfg.segment_max_bytes
                or time.monotonic() >= self._seg_opened_at + cfg.segment_max_age_s
            ):
                self._seal()
            if closing:
                with self._cond:
                    if not self._queue:
                        return

    def _open_segment(self) -> None:
        # Create the file before recording its number, so a failure never leaves a gap in the numbering.
        seq = self._seq + 1
        path = self.seg_path(seq, sealed=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        header = _frame(REC_SCHEMA, self.wal.schema.serialize(), 0)
        try:
            os.writev(fd, [bytes(p) if isinstance(p, pa.Buffer) else p for p in header])
            self._write_last_seq(seq)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._seq = seq
        self._fd = fd
        self._seg_rows = 0
        self._seg_bytes = sum(len(p) for p in header)
        self._seg_opened_at = time.monotonic()
        self.sizes[seq] = self._seg_bytes
        self.wal.add_backlog(self._seg_bytes)
        self.durable = (seq, self._seg_bytes)
        self._publish()

    def _write(self, items: list[tuple[pa.Buffer, int, Future[None]]]) -> None:
        started = time.perf_counter()
        queued = sum(p.size for p, _, _ in items)
        start_offset = self._seg_bytes
        try:
            if self._fd is None:
                self._open_segment()
                start_offset = self._seg_bytes
            assert self._fd is not None
            written = 0
            rows = 0
            for payload, n, _ in items:
                for part in _frame(REC_BATCH, payload, n):
                    view = memoryview(part)
                    while view:
                        view = view[os.write(self._fd, view) :]
                written += _HEADER.size + payload.size
                rows += n
            if self.wal.config.fsync == "always":
                os.fsync(self._fd)
        except OSError as exc:
            # Nothing of this group is acknowledged: answer every caller with the error (503, retried by
            # exporters), cut what was partly written, and keep serving (e.g. after a full disk frees up).
            # Logged once until a write succeeds again (dataflow.health), not once per request.
            self._report(f"write failed: {exc}")
            self.wal.metrics.write_errors.inc()
            err = WalError(f"write-ahead log write failed: {exc.strerror}")
            for _, _, fut in items:
                fut.set_exception(err)
            with self._cond:
                self._queued_bytes -= queued
            if self._fd is not None:
                os.ftruncate(self._fd, start_offset)  # if this fails too, the writer stops, loudly
                os.lseek(self._fd, start_offset, os.SEEK_SET)
            return
        with self._cond:
            self._queued_bytes -= queued
        self._recovered()
        self._seg_rows += rows
        self._seg_bytes += written
        self.sizes[self._seq] = self._seg_bytes
        self.durable = (self._seq, self._seg_bytes)
        self._publish()
        self.wal.add_backlog(written)
        self.wal.metrics.appended_bytes.inc(written)
        self.wal.metrics.appended_rows.inc(rows)
        self.wal.metrics.sync_duration.observe(time.perf_counter() - started)
        for _, _, fut in items:
            fut.set_result(None)

    def _report(self, problem: str) -> None:
        self._failing = True
        HEALTH.report(
            f"{self.wal.name}/p{self.index}", f"{self.wal.name} p{self.index}: {problem}", blocking=True
        )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            HEALTH.clear(f"{self.wal.name}/p{self.index}")

    def _seal(self) -> None:
        """Seal the open segment; when its seal record cannot be written (a full disk), cut it off again and
        leave the segment open, to be sealed on a later pass."""
        assert self._fd is not None
        seal = _frame(REC_SEAL, b"", self._seg_rows)
        try:
            os.writev(self._fd, [bytes(p) if isinstance(p, pa.Buffer) else p for p in seal])
            if self.wal.config.fsync == "always":
                os.fsync(self._fd)
        except OSError as exc:
            self._report(f"sealing segment {self._seq} failed: {exc}")
            self.wal.metrics.write_errors.inc()
            os.ftruncate(self._fd, self._seg_bytes)  # if this fails too, the writer stops, loudly
            os.lseek(self._fd, self._seg_bytes, os.SEEK_SET)
            time.sleep(_SEAL_RETRY_S)
            return
        os.close(self._fd)
        self._fd = None
        os.replace(self.seg_path(self._seq, sealed=False), self.seg_path(self._seq))
        if self.wal.config.fsync == "always":
            _fsync_dir(self.dir)
        self.sizes[self._seq] = self._seg_bytes + _HEADER.size
        self.wal.add_backlog(_HEADER.size)
        self.last_sealed = self._seq
        self._publish()

    # --- reclaiming ---------------------------------------------------------------------------------------------
    def reclaim_below(self, seq: int) -> int:
        """Delete sealed segments numbered below `seq`; return how many."""
        removed = 0
        for s, path in self.sealed_segments():
            if s >= seq:
                break
            size = self.sizes.pop(s, 0)
            path.unlink(missing_ok=True)
            self.wal.add_backlog(-size)
            removed += 1
        if removed:
            self.wal.metrics.reclaimed_segments.inc(removed)
        return removed


Partition = _Partition | FollowedPartition  # one this process writes, or one an ingest worker writes


class DiskGuardLike(Protocol):
    def check(self) -> None: ...


class Wal:
    """The write-ahead log of one process: partitions, the size bound, reclaiming."""

    def __init__(
        self,
        root: Path,
        config: WalConfig,
        schema: pa.Schema = SPAN_SCHEMA,
        log_metrics: metrics.LogMetrics = metrics.WAL,
        name: str = "wal",
        own: Sequence[int] | None = None,
        workers: int | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.schema = schema
        self.metrics = log_metrics
        self.name = name
        self.failed: BaseException | None = None
        self.guard: DiskGuardLike | None = None  # refuses appends while the disk is full (disk_guard.py)
        root.mkdir(parents=True, exist_ok=True)
        id_path = root / "id"
        if not id_path.exists():
            tmp = root / "id.tmp"
            tmp.write_text(secrets.token_hex(8))
            os.replace(tmp, id_path)
        self.id = id_path.read_text().strip()
        self._backlog_lock = threading.Lock()
        self._backlog = 0
        self._rr = 0
        self._full = False  # over max_bytes at the last check (reported to health)
        self.closed = False
        self.publish = own is not None  # this process writes only `own`, for readers in another process
        self._usage: DiskUsage | None = None  # partitions whose bytes other processes write or reclaim
        existing = sorted(int(p.name[1:]) for p in root.glob("p*") if p.name[1:].isdigit())
        if own is not None:
            self.partitions: list[Partition] = [_Partition(self, i) for i in own]
            self._usage = DiskUsage(root, None)
        elif workers is not None:
            count = max([config.partitions + workers, *(i + 1 for i in existing)])
            self.partitions = [_Partition(self, i) for i in range(config.partitions)]
            self.partitions += [self._follow(i) for i in range(config.partitions, count)]
            self._usage = DiskUsage(root, range(config.partitions, count))
        else:
            if existing and existing[-1] >= config.partitions:
                msg = (
                    f"wal.partitions is {config.partitions} but {root} has partition p{existing[-1]}: "
                    "partitions can be added, never removed, while they hold data"
                )
                raise WalError(msg)
            self.partitions = [_Partition(self, i) for i in range(config.partitions)]
        self._writers = [p for p in self.partitions if isinstance(p, _Partition)]
        self.metrics.limit_bytes.set(config.max_bytes)

    def _follow(self, index: int) -> FollowedPartition:
        """A partition an ingest worker writes: its `.open` segments (a crash's) sealed now, under its lock,
        before any worker of this process starts; the published progress restarted from the files."""
        directory = self.root / f"p{index}"
        directory.mkdir(parents=True, exist_ok=True)
        lock = PartitionLock(directory, LOCK_WAIT_S)
        try:
            recover_open_segments(self, directory, index)
            last = read_last_seq(directory)
            progress = ProgressWriter(directory)
            progress.publish((0, 0), last)
            progress.close()
        finally:
            lock.release()
        return FollowedPartition(self.root, index, last, self.metrics)

    def start(self) -> None:
        for part in self.partitions:
            part.start()

    def add_backlog(self, delta: int) -> None:
        with self._backlog_lock:
            self._backlog += delta
            if self._usage is None:  # else `refresh_state` sets it, over every process's partitions
                self.metrics.backlog_bytes.set(self._backlog)
        self.metrics.segments.set(sum(len(p.sizes) for p in self.partitions))
        if delta < 0 and self._full and self.backlog_bytes < self.config.max_bytes:
            self._set_full(None)  # reclaimed under the bound: ready again without waiting for a request

    @property
    def backlog_bytes(self) -> int:
        queued = sum(p.queued_bytes for p in self._writers)
        if self._usage is None:
            return self._backlog + queued
        if self.publish:  # a worker: its own segments are reclaimed by the main process, so count the files
            return self._usage.bytes() + queued
        return self._backlog + self._usage.bytes() + queued

    def refresh_state(self) -> None:
        """With ingest workers: the backlog gauge and the log-full report over every partition, here in the
        main process (whose `/metrics` and `/readyz` answer), called by the reclaimer every tick."""
        if self._usage is None or self.publish:
            return
        backlog = self.backlog_bytes
        self.metrics.backlog_bytes.set(backlog)
        if backlog >= self.config.max_bytes:
            self._set_full(f"write-ahead log is full ({backlog} of {self.config.max_bytes} bytes)")
        else:
            self._set_full(None)

    def check_capacity(self, bounded: bool = True) -> None:
        """Raise WalFull when over the bound (or WalError when unusable), before any work is spent. Not
        `bounded`: only an unusable log (or a full disk) refuses."""
        if self.failed is not None:
            msg = f"write-ahead log unavailable: {self.failed}"
            raise WalError(msg)
        if self.guard is not None:
            self.guard.check()
        if self.closed:
            msg = "write-ahead log is closed: the service is stopping"
            raise WalFull(msg, self.config.retry_after_s)
        if not bounded:
            return
        if self.backlog_bytes >= self.config.max_bytes:
            self.metrics.throttled.inc()
            msg = f"write-ahead log is full ({self.backlog_bytes} of {self.config.max_bytes} bytes)"
            self._set_full(msg)
            raise WalFull(msg, self.config.retry_after_s)
        self._set_full(None)

    def _set_full(self, problem: str | None) -> None:
        """Report the log full (once) or clear that, for /readyz and the log (dataflow.health)."""
        if problem is not None and not self._full:
            self._full = True
            HEALTH.report(
                f"{self.name}/full", f"{self.name}: {problem}, until ClickHouse takes it", blocking=True
            )
        elif problem is None and self._full:
            self._full = False
            HEALTH.clear(f"{self.name}/full")

    def append(self, batch: pa.RecordBatch, bounded: bool = True) -> Future[None]:
        """Queue a batch; the future resolves once it is durable. Raises WalFull over the bound, unless not
        `bounded` (the service's own spans, such as judge spans, which have no client to retry them)."""
        return self.append_payload(batch.serialize(), batch.num_rows, bounded)

    def append_payload(self, payload: bytes | pa.Buffer, rows: int, bounded: bool = True) -> Future[None]:
        """Queue a batch already serialised as an Arrow IPC record-batch message of the log's schema."""
        self.check_capacity(bounded)
        buf = payload if isinstance(payload, pa.Buffer) else pa.py_buffer(payload)
        part = self._writers[self._rr % len(self._writers)]
        self._rr += 1
        return part.enqueue(buf, rows)

    def close(self) -> None:
        """Stop accepting appends, write and seal everything queued."""
        self.closed = True
        for part in self.partitions:
            part.close()
