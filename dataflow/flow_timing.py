"""CPU time per stage of the flow (`tracejudge_flow_stage_seconds_total{stage}`), measured as thread time
around each step's own call, so that where the flow's time goes stays visible in `/metrics` (issue 15).

A `time.thread_time()` pair costs well under a microsecond and is taken per batch, not per span.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, TypeVar

from bytewax.operators import StatefulBatchLogic

from dataflow import metrics

A = TypeVar("A")
R = TypeVar("R")
V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")

STAGES = ("spans", "windows", "scoring", "judges")


def timed(stage: str, fn: Callable[[A], R]) -> Callable[[A], R]:
    """`fn`, with its thread time added to `stage`."""
    counter = metrics.FLOW_STAGE_SECONDS.labels(stage)

    def call(arg: A) -> R:
        started = time.thread_time()
        try:
            return fn(arg)
        finally:
            counter.inc(time.thread_time() - started)

    return call


class TimedLogic(StatefulBatchLogic[V, W, S], Generic[V, W, S]):
    """A stateful step's logic whose calls count their thread time to `stage`; everything else is the inner
    logic's (attributes other than Bytewax's methods are looked up on it)."""

    def __init__(self, stage: str, inner: StatefulBatchLogic[V, W, S]) -> None:
        self.inner = inner
        self._counter = metrics.FLOW_STAGE_SECONDS.labels(stage)

    def _time(self, call: Callable[[], tuple[Iterable[W], bool]]) -> tuple[Iterable[W], bool]:
        started = time.thread_time()
        try:
            return call()
        finally:
            self._counter.inc(time.thread_time() - started)

    def on_batch(self, values: list[V]) -> tuple[Iterable[W], bool]:
        return self._time(lambda: self.inner.on_batch(values))

    def on_notify(self) -> tuple[Iterable[W], bool]:
        return self._time(self.inner.on_notify)

    def on_eof(self) -> tuple[Iterable[W], bool]:
        return self._time(self.inner.on_eof)

    def notify_at(self) -> datetime | None:
        return self.inner.notify_at()

    def snapshot(self) -> S:
        return self.inner.snapshot()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
