"""The write-ahead log as an object: durability, sealing, crash recovery, bounds, reclaiming."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.clickhouse.sink import SpanStore
from connectors.otlp.decode import decode_json
from connectors.otlp.ingest import normalizer_from
from connectors.wal.log import Wal, read_segment
from connectors.wal.source import WalRecordSource
from dataflow.config import IngestConfig, WalConfig
from dataflow.errors import WalCorrupt, WalError, WalFull
from dataflow.model import SpanBlock
from tests.waiting import eventually

FIXTURE = Path(__file__).resolve().parents[1] / "testdata" / "otlp" / "json_int64_as_strings.json"


def batch(n: int = 1) -> pa.RecordBatch:
    result = decode_json(FIXTURE.read_bytes(), normalizer_from(IngestConfig()), time.time_ns())
    assert result.batch is not None
    return pa.concat_batches([result.batch] * n) if n > 1 else result.batch


def one_row_segments(tmp_path: Path, *rows: int) -> Wal:
    """A started log that seals a segment per append, after one append of each of `rows` (all sealed)."""
    wal = Wal(tmp_path / "wal", WalConfig(segment_max_rows=1, segment_max_age_s=60))
    wal.start()
    for n in rows:
        wal.append(batch(n)).result(timeout=5)
    wait_sealed(wal, len(rows))
    return wal


def wait_sealed(wal: Wal, seq: int, timeout: float = 10.0) -> None:
    eventually(
        lambda: wal.partitions[0].last_sealed >= seq, timeout=timeout, interval=0.01, message="not sealed"
    )


def test_append_is_durable_and_sealed_segments_read_back(tmp_path: Path) -> None:
    wal = Wal(tmp_path / "wal", WalConfig(segment_max_age_s=0.05))
    wal.start()
    futures = [wal.append(batch(3)) for _ in range(4)]
    for f in futures:
        f.result(timeout=5)
    wait_sealed(wal, 1)
    table, rows = read_segment(wal.partitions[0].seg_path(1))
    assert rows == 12
    assert table.column("TraceId")[0].as_py() == "0af7651916cd43dd8448eb211c80319c"
    wal.close()


def test_segments_seal_by_rows(tmp_path: Path) -> None:
    wal = Wal(tmp_path / "wal", WalConfig(segment_max_rows=2, segment_max_age_s=60))
    wal.start()
    for _ in range(3):
        wal.append(batch(2)).result(timeout=5)
    wait_sealed(wal, 3)
    assert [s for s, _ in wal.partitions[0].sealed_segments()] == [1, 2, 3]
    wal.close()


def test_close_seals_the_open_segment(tmp_path: Path) -> None:
    wal = Wal(tmp_path / "wal", WalConfig(segment_max_age_s=60))
    wal.start()
    wal.append(batch()).result(timeout=5)
    wal.close()
    assert wal.partitions[0].last_sealed == 1
    assert read_segment(wal.partitions[0].seg_path(1))[1] == 1
    with pytest.raises(WalFull):
        wal.append(batch())


def test_torn_tail_is_cut_and_the_segment_sealed_at_restart(tmp_path: Path) -> None:
    cfg = WalConfig(segment_max_age_s=60)
    wal = Wal(tmp_path / "wal", cfg)
    wal.start()
    wal.append(batch(2)).result(timeout=5)
    wal.append(batch(3)).result(timeout=5)
    # Simulate a crash mid-write: stop the writer thread without sealing, then append half a record.
    part = wal.partitions[0]
    open_path = part.seg_path(1, sealed=False)
    assert open_path.exists()
    with open(open_path, "ab") as fh:
        fh.write(b"TJW2\x02\x00\x00\x00" + b"\xff" * 40)
    restarted = Wal(tmp_path / "wal", cfg)
    assert restarted.partitions[0].last_sealed == 1
    _table, rows = read_segment(restarted.partitions[0].seg_path(1))
    assert rows == 5
    # Numbering continues after the recovered segment.
    restarted.start()
    restarted.append(batch()).result(timeout=5)
    restarted.close()
    assert restarted.partitions[0].last_sealed == 2


def test_full_log_pushes_back(tmp_path: Path) -> None:
    wal = Wal(tmp_path / "wal", WalConfig(max_bytes=10_000, retry_after_s=3, segment_max_age_s=60))
    wal.start()
    wal.append(batch(20)).result(timeout=5)
    with pytest.raises(WalFull) as info:
        wal.append(batch())
    assert info.value.retry_after_s == 3
    wal.close()


def test_reclaim_frees_space(tmp_path: Path) -> None:
    wal = one_row_segments(tmp_path, 1, 1, 1)
    before = wal.backlog_bytes
    assert wal.partitions[0].reclaim_below(3) == 2
    assert [s for s, _ in wal.partitions[0].sealed_segments()] == [3]
    assert wal.backlog_bytes < before
    wal.close()


def test_segment_numbers_never_repeat_after_everything_is_reclaimed(tmp_path: Path) -> None:
    cfg = WalConfig(segment_max_age_s=60)
    wal = Wal(tmp_path / "wal", cfg)
    wal.start()
    wal.append(batch()).result(timeout=5)
    wal.close()
    wal.partitions[0].reclaim_below(10)
    again = Wal(tmp_path / "wal", cfg)
    again.start()
    again.append(batch()).result(timeout=5)
    again.close()
    assert [s for s, _ in again.partitions[0].sealed_segments()] == [2]


def test_partitions_cannot_be_removed(tmp_path: Path) -> None:
    Wal(tmp_path / "wal", WalConfig(partitions=2))
    with pytest.raises(WalError, match="partitions"):
        Wal(tmp_path / "wal", WalConfig(partitions=1))


def test_source_refuses_state_of_another_log(tmp_path: Path) -> None:
    wal = Wal(tmp_path / "wal", WalConfig())
    source = WalRecordSource(wal, threading.Event())
    with pytest.raises(WalCorrupt, match="recovery"):
        source.build_part("s", "p0", ("someotherlog", 1, 0))


def test_source_fails_loudly_when_a_needed_segment_is_missing(tmp_path: Path) -> None:
    wal = one_row_segments(tmp_path, 1, 1)
    wal.partitions[0].seg_path(1).unlink()
    with pytest.raises(WalCorrupt, match="missing"):
        WalRecordSource(wal, threading.Event()).build_part("s", "p0", (wal.id, 1, 0))
    wal.close()


class _Capture:
    def __init__(self) -> None:
        self.blocks: list[SpanBlock] = []

    def write(self, block: SpanBlock) -> None:
        self.blocks.append(block)


def test_span_store_stores_sealed_segments_in_order_once_and_resumes_at_its_cursor(tmp_path: Path) -> None:
    wal = one_row_segments(tmp_path, 1, 2)
    stop = threading.Event()
    capture = _Capture()
    store = SpanStore(wal, capture, stop)  # type: ignore[arg-type]
    assert store.store_ready() is True
    assert [(b.segment, b.rows, b.token) for b in capture.blocks] == [
        (1, 1, f"tj-{wal.id}-p0-1"),
        (2, 2, f"tj-{wal.id}-p0-2"),
    ]
    assert store.store_ready() is False  # nothing new
    wal.append(batch(3)).result(timeout=5)
    wal.close()  # seals segment 3
    again = _Capture()
    restarted = SpanStore(wal, again, stop)  # type: ignore[arg-type]
    stop.set()
    restarted.start()
    restarted.join()  # drains what is sealed, then ends because the log is closed and stop is set
    assert [b.segment for b in again.blocks] == [3]
    assert restarted.error is None


def test_a_failed_write_answers_the_callers_and_the_log_keeps_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.wal.log as walmod

    wal = Wal(tmp_path / "wal", WalConfig(segment_max_age_s=60))
    wal.start()
    wal.append(batch(2)).result(timeout=5)
    real_fsync = walmod.os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(walmod.os, "fsync", failing_fsync)
    with pytest.raises(WalError, match="No space left"):
        wal.append(batch(3)).result(timeout=5)
    wal.append(batch(4)).result(timeout=5)
    wal.close()
    _, rows = read_segment(wal.partitions[0].seg_path(1))
    assert rows == 6  # the failed group was cut out; the others are intact


def test_record_source_reads_committed_batches_before_the_seal_and_resumes(tmp_path: Path) -> None:
    wal = Wal(tmp_path / "wal", WalConfig(segment_max_rows=5, segment_max_age_s=60))
    wal.start()
    stop = threading.Event()
    part = WalRecordSource(wal, stop).build_part("s", "p0", None)
    assert part.next_batch() == []
    wal.append(batch(2)).result(timeout=5)
    (first,) = part.next_batch()  # segment 1 is still open
    assert (first.segment, first.batch.num_rows) == (1, 2)
    assert not wal.partitions[0].seg_path(1).exists()
    wal.append(batch(3)).result(timeout=5)  # reaches 5 rows: sealed
    wait_sealed(wal, 1)
    wal.append(batch(1)).result(timeout=5)
    got = part.next_batch() + part.next_batch()
    assert [(r.segment, r.batch.num_rows) for r in got] == [(1, 3), (2, 1)]
    snap = part.snapshot()
    # Resuming from an earlier snapshot re-reads exactly what came after it.
    again = WalRecordSource(wal, threading.Event()).build_part("s", "p0", (wal.id, 1, first.offset))
    replay = again.next_batch() + again.next_batch()
    assert [(r.segment, r.batch.num_rows) for r in replay] == [(1, 3), (2, 1)]
    wal.close()
    stop.set()
    resumed = WalRecordSource(wal, stop).build_part("s", "p0", snap)
    assert resumed.next_batch() == []  # segment 2 sealed at close, nothing after the snapshot
    with pytest.raises(StopIteration):
        resumed.next_batch()
