"""The job runner as a service component (issue 11): its thread, and what it needs from the running service.

One thread per process runs jobs (`dataflow/jobs/runner.py`); it looks for jobs every `jobs.poll_s`, and at once
when this process's API queued one (`wake`). A failing look-up (ClickHouse away) is logged and retried at the
next poll; a stop gives the running job back (queued, its cursor kept), and the next start resumes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dataflow.errors import TracejudgeError
from dataflow.jobs.runner import JobRunner

logger = logging.getLogger(__name__)


class JobRunnerThread:
    name = "job-runner"

    def __init__(self, runner: JobRunner, stop: threading.Event, poll_s: float) -> None:
        self._runner = runner
        self._stop = stop
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._runner.tick()
            except TracejudgeError as exc:
                logger.warning("looking for jobs failed (retried in %g s): %s", self._poll_s, exc)
            except Exception:  # the runner must never die silently
                logger.exception("the job runner failed (retried in %g s)", self._poll_s)
            self._wake.wait(self._poll_s)
            self._wake.clear()


def live_busy(
    unstored_segments: Callable[[], int], max_segments: int, pending: Callable[[], int], max_pending: float
) -> Callable[[], str]:
    """Why a job should wait now ('' when it need not): ingest storage or live judge calls falling behind."""

    def busy() -> str:
        if (n := unstored_segments()) >= max_segments:
            return f"live ingest lags: {n} log segments wait to be stored"
        if (p := pending()) > max_pending:
            return f"live judge calls pending: {p}"
        return ""

    return busy
