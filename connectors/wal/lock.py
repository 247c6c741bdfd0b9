"""One writer per log partition, across processes: an advisory lock on `p<N>/lock`.

An ingest worker holds its partition's lock while it runs; the main process takes it to recover a partition
whose worker is gone. A worker restarted while its predecessor still winds down (an orphan sealing its
segment) waits for the lock instead of writing beside it. The kernel drops the lock when a process dies.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from dataflow.errors import WalError

_POLL_S = 0.05


class PartitionLock:
    """Held from construction until `release` (or the process's end)."""

    def __init__(self, directory: Path, timeout_s: float) -> None:
        self._fd: int | None = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.release()
                    msg = f"{directory}: another process still writes this log partition"
                    raise WalError(msg) from None
                time.sleep(_POLL_S)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
