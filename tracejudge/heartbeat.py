"""The process heartbeat: how many processes share the ClickHouse store, so per-rule judge budgets hold for the
rule as a whole (issue 14).

Every `judging.heartbeat_interval_s` the process records a heartbeat and counts the processes whose latest one is
younger than three intervals (itself included). Each process then admits `budget / live` of a rule's
`max_calls_per_minute` (rounded down, at least one call) and `max_usd_per_hour`. Why a split rather than shared
counters: a judge call never waits on ClickHouse, an unreachable ClickHouse keeps the last count, and routing by
trace id spreads a rule's traces evenly, so an even split loses little. See the README's "Deploy" for the slack.
"""

from __future__ import annotations

import logging
from typing import Protocol

from dataflow import metrics
from dataflow.errors import TracejudgeError
from dataflow.polling import Poller

logger = logging.getLogger(__name__)
LIVE_INTERVALS = 3  # a process counts as live while its latest heartbeat is younger than this many intervals


class HeartbeatStore(Protocol):
    def beat(self, process: str) -> None: ...
    def live(self, within_s: float) -> int: ...


class Heartbeat:
    """Beats and counts every `interval_s`; `live()` is the last count (1, this process, until one succeeds)."""

    name = "heartbeat"

    def __init__(self, store: HeartbeatStore, process_id: str, interval_s: float) -> None:
        self._store = store
        self._process_id = process_id
        self._interval = interval_s
        self._live = 1
        self._poller = Poller(self.name, interval_s, self.tick, self._failed)
        metrics.LIVE_PROCESSES.set(1)

    def live(self) -> int:
        return self._live

    def tick(self) -> None:
        self._store.beat(self._process_id)
        self._live = max(1, self._store.live(LIVE_INTERVALS * self._interval))
        metrics.LIVE_PROCESSES.set(self._live)

    def start(self) -> None:
        try:
            self.tick()
        except TracejudgeError as exc:
            self._failed(exc)
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    @staticmethod
    def _failed(exc: TracejudgeError) -> None:
        logger.warning("process heartbeat failed (the last live count is kept): %s", exc)
