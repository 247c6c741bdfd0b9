"""The write-ahead log as replayable Bytewax sources.

`WalRecordSource` emits every durable batch as soon as it is committed, without waiting for its segment to
be sealed, and snapshots `(log id, segment, byte offset)`. It feeds the trace windows, which want spans
promptly.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.wal.log import Partition, Wal, read_records_from
from dataflow.errors import WalCorrupt
from dataflow.model import SpanRecords

logger = logging.getLogger(__name__)

RecordOffset = tuple[str, int, int]


class _WalRecordPartition(StatefulSourcePartition[SpanRecords, RecordOffset]):
    def __init__(self, wal: Wal, part: Partition, resume: RecordOffset | None, stop: threading.Event) -> None:
        self._wal = wal
        self._part = part
        self._stop = stop
        if resume is None:
            oldest = part.sealed_segments()
            self._seq = oldest[0][0] if oldest else part.last_sealed + 1
            self._off = 0
        else:
            wal_id, self._seq, self._off = resume
            if wal_id != wal.id:
                msg = (
                    f"the flow's recovery state belongs to write-ahead log {wal_id}, but {wal.root} holds log "
                    f"{wal.id}; remove {wal.root.parent / 'recovery'} to start the flow afresh"
                )
                raise WalCorrupt(msg)
            if self._seq <= part.last_sealed and not part.seg_path(self._seq).exists():
                msg = f"write-ahead log p{part.index}: segment {self._seq} is needed to resume but is missing"
                raise WalCorrupt(msg)

    def _ready(self) -> bool:
        if self._seq <= self._part.last_sealed:
            return True
        seq, end = self._part.durable
        return seq == self._seq and end > self._off

    def next_batch(self) -> list[SpanRecords]:
        if self._wal.failed is not None:
            msg = f"write-ahead log failed: {self._wal.failed}"
            raise WalCorrupt(msg)
        part = self._part
        if self._seq <= part.last_sealed:
            _, recs, reached, sealed = read_records_from(part.seg_path(self._seq), self._off, None)
            if not sealed:
                msg = f"write-ahead log p{part.index}: sealed segment {self._seq} has no seal record"
                raise WalCorrupt(msg)
            out = [SpanRecords(part.index, self._seq, off, batch) for off, batch in recs]
            self._seq, self._off = self._seq + 1, 0
            return out
        seq, end = part.durable
        if seq == self._seq and end > self._off:
            try:
                _, recs, reached, _ = read_records_from(part.seg_path(seq, sealed=False), self._off, end)
            except FileNotFoundError:
                return []  # sealed a moment ago: the next call reads the sealed file
            self._off = reached
            return [SpanRecords(part.index, seq, off, batch) for off, batch in recs]
        if self._stop.is_set() and self._wal.closed and self._seq > part.last_sealed:
            raise StopIteration
        return []

    def next_awake(self) -> datetime | None:
        return None if self._ready() else datetime.now(UTC) + _RECORD_IDLE

    def snapshot(self) -> RecordOffset:
        return (self._wal.id, self._seq, self._off)


_RECORD_IDLE = timedelta(milliseconds=5)


class WalRecordSource(FixedPartitionedSource[SpanRecords, RecordOffset]):
    """Every durable batch of the log, in order, as soon as it is committed; one partition per log partition.

    Ends (EOF) once `stop` is set, the log is closed and every sealed segment was read to its seal.
    """

    def __init__(self, wal: Wal, stop: threading.Event) -> None:
        self._wal = wal
        self._stop = stop

    def list_parts(self) -> list[str]:
        return [f"p{p.index}" for p in self._wal.partitions]

    def build_part(
        self, step_id: str, for_part: str, resume_state: RecordOffset | None
    ) -> _WalRecordPartition:
        part = self._wal.partitions[int(for_part[1:])]
        return _WalRecordPartition(self._wal, part, resume_state, self._stop)
