"""The client's bounded queue of scores and the background thread that posts it in batches.

The application's threads only ever :meth:`Sender.put` (a lock and a ``deque`` append: no I/O, no waiting).
One daemon thread, started with the first score, wakes every ``flush_interval_s`` (or at once when a full
batch is waiting, on :meth:`Sender.flush` and on :meth:`Sender.shutdown`), takes up to ``MAX_BATCH`` scores off
the front of the queue and posts them (``_wire.post_batch``), retrying the same batch, in the same order, until
it is delivered or refused. While a batch is retried the queue keeps filling; when it is full the oldest score
is dropped and counted.

Every score has a sequence number, so :meth:`Sender.flush` waits for exactly the scores put before it: it
returns once none of them is still queued or being posted. A process forked from one with a sender (a web
server's workers) gets a fresh, empty sender of its own, whose thread starts with its first score.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

from tracejudge_client._wire import Outcome, backoff, encode, post_batch
from tracejudge_client.validation import MAX_BATCH

logger = logging.getLogger("tracejudge_client")


class Sender:
    """A bounded FIFO of score objects and the thread that delivers them to ``url``."""

    def __init__(
        self,
        url: str,
        make_http: Callable[[], httpx.Client],
        *,
        flush_interval_s: float,
        max_queue: int,
        timeout_s: float,
    ) -> None:
        if max_queue < 1 or not flush_interval_s > 0 or not timeout_s > 0:
            msg = "max_queue must be at least 1, flush_interval_s and timeout_s above 0"
            raise ValueError(msg)
        self.url = url
        self._make_http = make_http
        self._flush_interval_s = flush_interval_s
        self._timeout_s = timeout_s
        self._queue: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max_queue)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a batch done, scores dropped, the thread gone
        self._flushing = 0  # the flush() calls waiting on _changed (a drop notifies only them)
        self._seq = 0  # the sequence number of the last score put
        self._in_flight: int | None = None  # the sequence number of the first score being posted
        self._wake = threading.Event()
        self._abort = threading.Event()  # shutdown's time is up: stop retrying
        self._closing = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        _reset_in_forked_children(self)

    # -- the application's side -------------------------------------------------------------------------------

    def put(self, body: dict[str, Any]) -> bool:
        """Queue one score object; False (nothing queued, counted as dropped) once shut down. Never blocks on
        I/O."""
        with self._lock:
            if self._closing:
                self.dropped += 1
                return False
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                if self._flushing:
                    self._changed.notify_all()
            self._seq += 1
            self._queue.append((self._seq, body))
            full = len(self._queue) >= MAX_BATCH
            if self._thread is None:
                self._start()
        if full and not self._wake.is_set():  # set once: Event.set takes a lock and notifies, per call
            self._wake.set()
        return True

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every score put before this call is delivered, refused or dropped; False when
        ``timeout_s`` passes first (None: no limit)."""
        with self._changed:
            target = self._seq
            if not self._pending(target):
                return True
            self._wake.set()
            self._flushing += 1
            try:
                return self._changed.wait_for(lambda: not self._pending(target), timeout_s)
            finally:
                self._flushing -= 1

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Refuse new scores, deliver the queued ones for up to ``timeout_s`` (default: the client's
        ``timeout_s``), give up on the rest (counted in ``failed``) and stop the thread. Idempotent."""
        limit = self._timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._closing:
                return
            self._closing = True
            thread = self._thread
        atexit.unregister(self.shutdown)
        if thread is None:
            return
        self._wake.set()
        thread.join(limit)
        if thread.is_alive():
            self._abort.set()
            thread.join(self._timeout_s)  # a request under way ends within its timeout

    def _pending(self, target: int) -> bool:
        """Whether a score numbered up to ``target`` is still queued or being posted (lock held)."""
        if self._in_flight is not None and self._in_flight <= target:
            return True
        return bool(self._queue) and self._queue[0][0] <= target

    def _after_fork(self) -> None:
        """In a forked child (a web server's worker): the parent's thread is not here, its locks may be held
        for good, and the scores it queued are the parent's to send. Start afresh, counters at zero."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._flushing = 0
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._queue.clear()
        self._in_flight = None
        self._thread = None
        self.sent = self.dropped = self.failed = 0

    def _start(self) -> None:
        """Start the thread (lock held) and flush at interpreter exit."""
        thread = threading.Thread(target=self._run, name="tracejudge-client", daemon=True)
        thread.start()  # a RuntimeError (no more threads) leaves _thread unset: the next put tries again
        self._thread = thread
        atexit.register(self.shutdown)

    # -- the thread's side ------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with self._make_http() as http:
                while not self._abort.is_set():
                    self._wake.wait(self._flush_interval_s)
                    self._wake.clear()
                    closing = self._closing
                    self._drain(http)
                    if closing:
                        break
        except Exception:
            logger.exception("tracejudge: the client's sender thread failed")
        finally:
            with self._changed:
                given_up = len(self._queue)
                self._queue.clear()
                self.failed += given_up
                self._closing = True
                self._changed.notify_all()
            if given_up:
                logger.warning("tracejudge: %d scores not delivered at shutdown", given_up)

    def _drain(self, http: httpx.Client) -> None:
        """Post batches until the queue is empty (or shutdown gives up)."""
        while not self._abort.is_set():
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                if not batch:
                    return
                self._in_flight = batch[0][0]
            try:
                self._deliver(http, [body for _, body in batch])
            except Exception:  # a bug, never the thread's end: the batch is counted and the next one goes
                logger.exception("tracejudge: %d scores not delivered", len(batch))
                with self._lock:
                    self.failed += len(batch)
            finally:
                with self._changed:
                    self._in_flight = None
                    self._changed.notify_all()

    def _deliver(self, http: httpx.Client, bodies: list[dict[str, Any]]) -> None:
        """Post one batch until the server takes or refuses it; retries wait the server's ``Retry-After`` or an
        exponential backoff, and end when shutdown's time is up."""
        content, unencodable = encode(bodies)
        if unencodable:
            with self._lock:
                self.failed += unencodable
        n = len(bodies) - unencodable
        attempt = 0
        while n:
            try:
                outcome = post_batch(http, self.url, content, n)
            except Exception:
                logger.exception("tracejudge: posting %d scores failed", n)
                outcome = Outcome(sent=0, failed=n)
            if not outcome.retry:
                with self._lock:
                    self.sent += outcome.sent
                    self.failed += outcome.failed
                return
            delay = outcome.delay_s if outcome.delay_s is not None else backoff(attempt)
            attempt += 1
            if self._wait_to_retry(n, attempt, delay):
                return

    def _wait_to_retry(self, n: int, attempt: int, delay: float) -> bool:
        """Wait ``delay`` s before trying a batch of ``n`` scores again (logged on the first try and every
        tenth); True when shutdown's time is up instead (the batch is then counted as failed)."""
        if attempt == 1 or attempt % 10 == 0:
            logger.warning(
                "tracejudge: %d scores not delivered to %s yet (try %d), retrying in %.1f s",
                n,
                self.url,
                attempt,
                delay,
            )
        if not self._abort.wait(delay):
            return False
        with self._lock:
            self.failed += n
        logger.warning("tracejudge: gave up on %d scores at shutdown", n)
        return True


def _reset_in_forked_children(sender: Sender) -> None:
    """Have ``sender`` start afresh in a process forked from this one (without keeping it alive)."""
    ref = weakref.ref(sender)

    def after_fork_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive._after_fork()

    os.register_at_fork(after_in_child=after_fork_in_child)
