"""A background thread that calls a function every few seconds until stopped (registries reload with it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dataflow.errors import TracejudgeError

logger = logging.getLogger(__name__)


class Poller:
    """Calls `tick` every `interval_s`; a TracejudgeError goes to `on_error` and the next tick retries."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        tick: Callable[[], object],
        on_error: Callable[[TracejudgeError], None],
    ) -> None:
        self._interval = interval_s
        self._tick = tick
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._tick()
            except TracejudgeError as exc:  # e.g. the store is unreachable: keep what we have, retry
                self._on_error(exc)
