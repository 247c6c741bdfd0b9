"""The data directory's free space: refuse spans before its file system is full, and keep a reserve for the
rest of the service.

A full disk is worse than a full log: the Bytewax recovery store (SQLite, written every epoch) stops the flow
when it cannot write, and the embedded ClickHouse cannot merge. So the guard keeps a *reserve* file of
`wal.disk_reserve_bytes` in the data directory. When free space falls under `wal.disk_min_free_bytes` (checked
before every append and every `interval_s`), it deletes the reserve, giving that room to the recovery store and
ClickHouse, and the logs refuse appends (receivers answer 503 / UNAVAILABLE) until there is room for the reserve
and the minimum again; then it writes the reserve back and appends are accepted. The state is reported once to
`/readyz` and the log (dataflow.health), not once per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dataflow.errors import TracejudgeError, WalError
from dataflow.health import HEALTH
from dataflow.polling import Poller

logger = logging.getLogger(__name__)

RESERVE_NAME = "disk-reserve"
_HEALTH_KEY = "data-disk"
_CHECK_EVERY_S = 0.1  # appends re-read free space at most this often


class DiskGuard:
    """Watches the file system of `data_dir`; `check` raises WalError while it is (nearly) full."""

    name = "disk-guard"

    def __init__(
        self, data_dir: Path, reserve_bytes: int, min_free_bytes: int, interval_s: float = 0.2
    ) -> None:
        self._dir = data_dir
        self._reserve = data_dir / RESERVE_NAME
        self._reserve_bytes = reserve_bytes
        self._min_free = min_free_bytes
        self._lock = threading.Lock()
        self._full = False
        self._checked_at = 0.0
        self._poller = Poller(self.name, interval_s, self._poll, lambda _exc: None)

    def start(self) -> None:
        self._update()
        if not self._full:
            self._write_reserve()
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def free_bytes(self) -> int:
        st = os.statvfs(self._dir)
        return st.f_bavail * st.f_frsize

    def refresh(self, now: bool = False) -> None:
        """Re-read free space when the last look is over 0.1 s old, or `now` (an ingest worker saw it full)."""
        if now or time.monotonic() - self._checked_at >= _CHECK_EVERY_S:
            self._update()

    def check(self) -> None:
        """Raise WalError while the file system is full (re-reading free space at most every 0.1 s)."""
        self.refresh()
        if self._full:
            msg = f"the data directory's file system is full ({self._dir}): No space left on device"
            raise WalError(msg)

    def _poll(self) -> None:
        try:
            self._update()
        except OSError as exc:  # never let the poller die; the next tick tries again
            raise TracejudgeError(str(exc)) from exc

    def _update(self) -> None:
        with self._lock:
            self._checked_at = time.monotonic()
            free = self.free_bytes()
            if not self._full and free < self._min_free:
                self._full = True
                self._release_reserve()
                HEALTH.report(
                    _HEALTH_KEY,
                    f"the data directory's file system is full ({self._dir}: {free} bytes free, under "
                    f"wal.disk_min_free_bytes {self._min_free}): No space left on device; spans are refused "
                    "until space is freed",
                    blocking=True,
                )
            elif self._full and free >= self._min_free + self._reserve_bytes - self._reserve_size():
                self._full = False
                self._write_reserve()
                HEALTH.clear(_HEALTH_KEY)

    def _reserve_size(self) -> int:
        try:
            return self._reserve.stat().st_size
        except FileNotFoundError:
            return 0

    def _release_reserve(self) -> None:
        self._reserve.unlink(missing_ok=True)

    def _write_reserve(self) -> None:
        if self._reserve_bytes <= 0 or self._reserve_size() >= self._reserve_bytes:
            return
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self._reserve_bytes)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.warning("cannot write the disk reserve %s: %s", self._reserve, exc)
            with contextlib.suppress(OSError):
                self._reserve.unlink()


class FollowerGuard:
    """An ingest worker's view of the main process's guard: full while free space is under the minimum (read
    on every check: a `statvfs`, microseconds) or the main process's guard has given up its reserve (it
    writes it back once there is room again). `on_full` is told when this worker saw the disk full first, so
    the main process's guard releases its reserve now rather than at its next poll."""

    def __init__(
        self, data_dir: Path, reserve_bytes: int, min_free_bytes: int, on_full: Callable[[], None]
    ) -> None:
        self._dir = data_dir
        self._reserve = data_dir / RESERVE_NAME
        self._reserve_bytes = reserve_bytes
        self._min_free = min_free_bytes
        self._on_full = on_full

    def check(self) -> None:
        """Raise WalError while the file system is full."""
        st = os.statvfs(self._dir)
        low = st.f_bavail * st.f_frsize < self._min_free
        released = self._reserve_bytes > 0 and not self._reserve.exists()
        if low and not released:
            self._on_full()
        if low or released:
            msg = f"the data directory's file system is full ({self._dir}): No space left on device"
            raise WalError(msg)
