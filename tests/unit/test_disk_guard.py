"""The disk guard: refuse below the free-space floor, release the reserve, recover with room for it again;
and the health registry it reports to: a problem logged once when it starts and once when it ends."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connectors.wal.disk_guard import _HEALTH_KEY, RESERVE_NAME, DiskGuard
from dataflow.errors import WalError
from dataflow.health import HEALTH, Health

MIB = 1 << 20


class Disk:
    """A file system's free space as the guard sees it; the reserve file's size is taken from it when written."""

    def __init__(self, free: int) -> None:
        self.free = free


def guard(tmp_path: Path, disk: Disk) -> DiskGuard:
    g = DiskGuard(tmp_path, reserve_bytes=8 * MIB, min_free_bytes=4 * MIB)
    g.free_bytes = lambda: disk.free - _reserve(tmp_path)  # type: ignore[method-assign]
    return g


def _reserve(tmp_path: Path) -> int:
    path = tmp_path / RESERVE_NAME
    return path.stat().st_size if path.exists() else 0


def _disk_full() -> bool:
    """The guard's own problem is reported as blocking (other tests of this process may leave theirs)."""
    return any(p.key == _HEALTH_KEY and p.blocking for p in HEALTH.problems())


def test_full_disk_releases_the_reserve_refuses_and_recovers(tmp_path: Path) -> None:
    disk = Disk(100 * MIB)
    g = guard(tmp_path, disk)
    g._update()  # as start() does, without the poller thread
    g._write_reserve()
    assert _reserve(tmp_path) == 8 * MIB
    g.check()
    disk.free = 10 * MIB  # 2 MiB free outside the reserve: under the 4-MiB floor
    g._update()
    assert _reserve(tmp_path) == 0, "the reserve is released for the rest of the service"
    with pytest.raises(WalError, match="No space left on device"):
        g.check()
    assert _disk_full()
    disk.free = 11 * MIB  # the floor is free again, but not the floor and the reserve: still refused
    g._update()
    with pytest.raises(WalError):
        g.check()
    disk.free = 12 * MIB
    g._update()
    g.check()
    assert _reserve(tmp_path) == 8 * MIB and not _disk_full()


def test_a_problem_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tracejudge.health")
    health = Health()
    assert health.report("k", "it broke", blocking=True)
    for _ in range(100):
        assert not health.report("k", "it broke", blocking=True)
    assert health.blocking() and [p.message for p in health.problems()] == ["it broke"]
    health.clear("k")
    health.clear("k")
    assert not health.problems()
    assert [r.getMessage().split(" (")[0].split(":")[0] for r in caplog.records] == [
        "it broke",
        "recovered after 0 s",
    ]
