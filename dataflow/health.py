"""What is wrong with the running service right now, for `/readyz` and the log.

Components `report` a problem under a key when something they depend on fails (ClickHouse unreachable, the
write-ahead log full, its disk full) and `clear` it when it works again. A problem is logged once when it starts
and once when it ends, however many requests or retries meet it in between. A *blocking* problem means spans are
not being accepted (`/readyz` answers 503); the others mean the service is degraded but still acknowledging
spans into its log (`/readyz` answers 200 and names them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("tracejudge.health")


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    blocking: bool
    since: float  # wall-clock seconds


class Health:
    """The current problems, by key. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, Problem] = {}
        # Called before the problems are read: states kept elsewhere (the ingest workers' log partitions on disk)
        # are looked at now, not at their next poll.
        self.before_read: list[Callable[[], None]] = []

    def report(self, key: str, message: str, *, blocking: bool = False) -> bool:
        """Record (or update) the problem `key`; log it if it is new. Return whether it is new."""
        with self._lock:
            old = self._problems.get(key)
            since = old.since if old is not None else time.time()
            self._problems[key] = Problem(key, message, blocking, since)
        if old is None:
            logger.error("%s (logged once until it recovers)", message)
        return old is None

    def clear(self, key: str) -> None:
        """Forget the problem `key`; log its recovery if there was one."""
        with self._lock:
            old = self._problems.pop(key, None)
        if old is not None:
            logger.warning("recovered after %.0f s: %s", time.time() - old.since, old.message)

    def problems(self) -> list[Problem]:
        for refresh in list(self.before_read):
            refresh()
        with self._lock:
            return sorted(self._problems.values(), key=lambda p: p.since)

    def blocking(self) -> bool:
        return any(p.blocking for p in self.problems())


HEALTH = Health()
