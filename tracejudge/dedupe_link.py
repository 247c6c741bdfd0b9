"""One memory of acknowledged requests for every ingest worker: the main process's `RecentRequests`.

A client's retry may reach another worker than its first copy did (each connection goes to whichever worker
accepts it), so the workers do not remember requests themselves. A worker asks the main process about a
request's digest (`claim`); the main process answers `go` (store it: nobody has, or the first copy was
refused) or `dup` with the first copy's answer (waiting, as `RecentRequests.once` does, while a first copy is
still being stored by any worker), and the worker reports `done` with its answer or `fail`. One round trip
over the worker's pipes per request (tens of microseconds; the main process's thread pool waits, its GIL is
not held). A worker that dies fails its claims, so a copy waiting on them is tried again.

`Broker` is the main process's side, `Link` a worker's; messages are JSON lists on the worker's stdin/stdout.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from connectors.otlp.dedupe import RecentRequests
from connectors.otlp.ingest import ExportResult
from dataflow.errors import WalError

Send = Callable[[list[Any]], None]
_STORE_TIMEOUT_S = 300.0  # a worker answers within its append timeout, or dies (and its claims fail)


class Broker:
    """The main process's side: `recent` is also the main process's own ingestor's memory."""

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.recent: RecentRequests[ExportResult] = RecentRequests(window_s, max_entries)
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="dedupe")
        self._lock = threading.Lock()
        self._stored: dict[tuple[int, int], Future[ExportResult]] = {}

    def claim(self, worker: int, rid: int, key: str, send: Send) -> None:
        self._pool.submit(self._decide, worker, rid, bytes.fromhex(key), send)

    def _decide(self, worker: int, rid: int, key: bytes, send: Send) -> None:
        def store() -> ExportResult:
            stored: Future[ExportResult] = Future()
            with self._lock:
                self._stored[(worker, rid)] = stored
            send(["go", rid])
            return stored.result(timeout=_STORE_TIMEOUT_S)

        try:
            result, duplicate = self.recent.once(key, store)
        except Exception:  # the worker's copy was refused; the worker answered its client itself
            return
        if duplicate:
            send(["dup", rid, asdict(result)])

    def done(self, worker: int, rid: int, result: dict[str, Any] | None) -> None:
        with self._lock:
            stored = self._stored.pop((worker, rid), None)
        if stored is None:
            return
        if result is None:
            stored.set_exception(WalError("refused"))
        else:
            stored.set_result(ExportResult(**result))

    def worker_gone(self, worker: int) -> None:
        with self._lock:
            gone = [k for k in self._stored if k[0] == worker]
        for key in gone:
            self.done(key[0], key[1], None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Link:
    """A worker's side: `once` as `RecentRequests.once`, decided by the main process."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._waiting: dict[int, Future[tuple[str, Any]]] = {}
        self._closed = False

    def once(self, key: bytes, run: Callable[[], ExportResult]) -> tuple[ExportResult, bool]:
        rid = next(self._ids)
        verdict: Future[tuple[str, Any]] = Future()
        with self._lock:
            if self._closed:
                msg = "the ingest worker is stopping"
                raise WalError(msg)
            self._waiting[rid] = verdict
        self._send(["claim", rid, key.hex()])
        kind, body = verdict.result()
        if kind == "dup":
            return ExportResult(**body), True
        try:
            result = run()
        except BaseException:
            self._send(["fail", rid])
            raise
        self._send(["done", rid, asdict(result)])
        return result, False

    def answer(self, message: list[Any]) -> None:
        """A `go` or `dup` from the main process."""
        with self._lock:
            verdict = self._waiting.pop(int(message[1]), None)
        if verdict is not None:
            verdict.set_result((message[0], message[2] if len(message) > 2 else None))

    def close(self) -> None:
        """The main process is gone or stops us: refuse the requests still waiting (clients retry)."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting.values()), {}
        for verdict in waiting:
            verdict.set_exception(WalError("the ingest worker is stopping"))
