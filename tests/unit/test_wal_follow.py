"""A log partition written by another process (an ingest worker), as the main process reads it: its published
progress, its lock, the log's bound over every partition; and the workers' metrics and keys handed over."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import pytest

from connectors.auth.key_file import ExportingSource, FileKeyRing, FileKeySource
from connectors.auth.keys import ApiKey, new_key
from connectors.wal.lock import PartitionLock
from connectors.wal.log import Wal
from connectors.wal.progress import ProgressWriter, read_progress
from connectors.wal.source import WalRecordSource
from dataflow import metrics
from dataflow.config import WalConfig
from dataflow.errors import WalError, WalFull
from tests.unit.test_wal import batch
from tracejudge.worker_metrics import Deltas, apply


def test_the_main_process_reads_a_worker_partition_up_to_what_is_durable(tmp_path: Path) -> None:
    cfg = WalConfig(segment_max_age_s=60)
    main = Wal(tmp_path / "wal", cfg, workers=1)
    worker = Wal(tmp_path / "wal", cfg, own=[1])
    worker.start()
    followed = main.partitions[1]
    assert followed.durable == (0, 0) and followed.last_sealed == 0
    worker.append(batch(3)).result(timeout=5)
    assert followed.durable == worker.partitions[0].durable
    assert followed.last_sealed == 0  # open: never taken for sealed
    part = WalRecordSource(main, threading.Event()).build_part("s", "p1", None)
    assert sum(r.batch.num_rows for r in part.next_batch()) == 3
    worker.close()
    assert followed.last_sealed == 1
    assert [seq for seq, _ in followed.sealed_segments()] == [1]
    assert followed.reclaim_below(2) == 1
    assert followed.sealed_segments() == []
    main.close()


def test_a_partition_has_one_writer(tmp_path: Path) -> None:
    worker = Wal(tmp_path / "wal", WalConfig(), own=[1])
    with pytest.raises(WalError, match="another process"):
        PartitionLock(tmp_path / "wal" / "p1", timeout_s=0.1)
    worker.close()
    PartitionLock(tmp_path / "wal" / "p1", timeout_s=0.1).release()


def test_the_bound_counts_every_partition_on_disk(tmp_path: Path) -> None:
    cfg = WalConfig(max_bytes=1, segment_max_age_s=60)
    first = Wal(tmp_path / "wal", cfg, own=[1])
    second = Wal(tmp_path / "wal", cfg, own=[2])
    first.start()
    first.append(batch()).result(timeout=5)
    with pytest.raises(WalFull):
        second.check_capacity()  # the other worker's segment counts
    first.close()
    second.close()


def test_a_torn_progress_record_is_not_trusted(tmp_path: Path) -> None:
    writer = ProgressWriter(tmp_path)
    writer.publish((3, 4096), 2)
    progress = read_progress(tmp_path)
    assert progress is not None and progress.durable == (3, 4096) and progress.last_sealed == 2
    fd = os.open(tmp_path / "progress", os.O_WRONLY)
    os.pwrite(fd, b"\xff", 3)  # half of a write: the CRC no longer matches
    os.close(fd)
    assert read_progress(tmp_path, attempts=3) is None
    writer.close()


def test_worker_metrics_add_up_in_the_main_process() -> None:
    counter = metrics.RECEIVER_SPANS.labels("grpc", "accepted")
    histogram = metrics.RECEIVER_REQUEST_DURATION.labels("grpc")
    deltas = Deltas()
    deltas.take()
    count_before = counter._value.get()
    sum_before = histogram._sum.get()
    counter.inc(5)
    histogram.observe(0.3)
    apply(deltas.take())  # as if another process had counted the same: everything twice
    assert counter._value.get() == count_before + 10
    assert histogram._sum.get() == pytest.approx(sum_before + 0.6)


def test_workers_see_the_keys_the_main_process_loads(tmp_path: Path) -> None:
    key_id, token, hashed = new_key()
    key = ApiKey(key_id, "k", hashed, frozenset({"ingest"}), frozenset(), dt.datetime.now(dt.UTC))

    class Store:
        keys: list[ApiKey] = []

        def fingerprint(self) -> str:
            return str(len(self.keys))

        def load(self) -> list[ApiKey]:
            return list(self.keys)

    store = Store()
    exporting = ExportingSource(store, tmp_path / "keys.json")
    exporting.load()
    ring = FileKeyRing(FileKeySource(tmp_path / "keys.json"))
    assert not ring.enabled
    store.keys = [key]
    exporting.load()
    assert ring.enabled  # looked at the file again: no poll interval to wait for
    verified = ring.verify(token)
    assert verified is not None and verified.key_id == key_id
