"""The write-ahead log as a replayable Bytewax source.

`WalBlockSource` has one partition per log partition. Each emits sealed segments in order, as `SpanBlock`s,
and snapshots `(log id, next segment)`: after a crash the flow resumes at the last committed epoch and
re-reads the segments after it; their deterministic dedup tokens make the repeated inserts harmless.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.otlp.wal import Wal, _Partition, read_segment
from dataflow import metrics
from dataflow.errors import WalCorrupt
from dataflow.model import SpanBlock

logger = logging.getLogger(__name__)

WalOffset = tuple[str, int]
_IDLE = timedelta(milliseconds=20)


class _WalBlockPartition(StatefulSourcePartition[SpanBlock, WalOffset]):
    def __init__(self, wal: Wal, part: _Partition, resume: WalOffset | None, stop: threading.Event) -> None:
        self._wal = wal
        self._part = part
        self._stop = stop
        oldest = part.sealed_segments()
        if resume is None:
            self._next = oldest[0][0] if oldest else part.last_sealed + 1
        else:
            wal_id, nxt = resume
            if wal_id != wal.id:
                msg = (
                    f"the flow's recovery state belongs to write-ahead log {wal_id}, but {wal.root} holds log "
                    f"{wal.id}; remove {wal.root.parent / 'recovery'} to start the flow afresh"
                )
                raise WalCorrupt(msg)
            if nxt <= part.last_sealed and not part.seg_path(nxt).exists():
                msg = f"write-ahead log p{part.index}: segment {nxt} is needed to resume but is missing"
                raise WalCorrupt(msg)
            self._next = nxt
        logger.info("wal p%d: flow reads from segment %d", part.index, self._next)

    def next_batch(self) -> list[SpanBlock]:
        if self._wal.failed is not None:
            msg = f"write-ahead log failed: {self._wal.failed}"
            raise WalCorrupt(msg)
        if self._next > self._part.last_sealed:
            if self._stop.is_set() and self._wal.closed and self._next > self._part.last_sealed:
                raise StopIteration
            return []
        seq = self._next
        table, _rows = read_segment(self._part.seg_path(seq))
        self._next = seq + 1
        metrics.FLOW_SEGMENTS_READ.inc()
        token = f"tj-{self._wal.id}-p{self._part.index}-{seq}"
        return [SpanBlock(self._part.index, seq, token, table)]

    def next_awake(self) -> datetime | None:
        if self._next <= self._part.last_sealed:
            return None
        return datetime.now(UTC) + _IDLE

    def snapshot(self) -> WalOffset:
        return (self._wal.id, self._next)


class WalBlockSource(FixedPartitionedSource[SpanBlock, WalOffset]):
    """Sealed log segments, in order, one partition per log partition.

    The source ends (EOF) once `stop` is set, the log is closed and every sealed segment was emitted.
    """

    def __init__(self, wal: Wal, stop: threading.Event) -> None:
        self._wal = wal
        self._stop = stop

    def list_parts(self) -> list[str]:
        return [f"p{p.index}" for p in self._wal.partitions]

    def build_part(self, step_id: str, for_part: str, resume_state: WalOffset | None) -> _WalBlockPartition:
        part = self._wal.partitions[int(for_part[1:])]
        return _WalBlockPartition(self._wal, part, resume_state, self._stop)
