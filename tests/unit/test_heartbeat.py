"""The process heartbeat: beats, counts the live processes, keeps the last count when the store fails."""

from __future__ import annotations

import pytest

from dataflow import metrics
from dataflow.errors import QueryError
from tracejudge.heartbeat import LIVE_INTERVALS, Heartbeat


class _Store:
    def __init__(self) -> None:
        self.beats: list[str] = []
        self.asked: list[float] = []
        self.count = 3
        self.fail = False

    def beat(self, process: str) -> None:
        if self.fail:
            msg = "unreachable"
            raise QueryError(msg)
        self.beats.append(process)

    def live(self, within_s: float) -> int:
        self.asked.append(within_s)
        return self.count


def test_counts_live_processes_and_keeps_the_last_count_on_failure() -> None:
    store = _Store()
    hb = Heartbeat(store, "p1", 60.0)
    assert hb.live() == 1  # before the first beat: this process alone
    hb.start()  # beats at once, before the flow starts (the next beat is a minute away)
    try:
        assert (store.beats, store.asked, hb.live()) == (["p1"], [LIVE_INTERVALS * 60.0], 3)
        assert metrics.REGISTRY.get_sample_value("tracejudge_live_processes") == 3
        store.fail, store.count = True, 1
        with pytest.raises(QueryError):  # the poller logs it and tries again next interval
            hb.tick()
        assert hb.live() == 3
        store.fail, store.count = False, 0
        hb.tick()
        assert hb.live() == 1  # never fewer than this process
    finally:
        hb.stop()


def test_a_store_unreachable_at_start_does_not_stop_the_start() -> None:
    store = _Store()
    store.fail = True
    hb = Heartbeat(store, "p1", 60.0)
    hb.start()
    hb.stop()
    assert hb.live() == 1
