"""Client retries are not duplicates: export requests acknowledged lately, remembered by a digest of their body.

OTLP exporters send the same request again after a timeout, though the first one may have been stored. A
request whose body (with its encoding and forced project) is byte-identical to one acknowledged within
`window_s` is answered with the first one's answer and stores nothing. The digests (SHA-256 cut to 16 bytes:
with the CPU's SHA instructions 2.3x BLAKE2b's speed here, ~500 MB/s on a loaded core) sit in an LRU
bounded by count and age. Only an acknowledged request is remembered: one refused (throttled, a log
error, a body that does not decode) may be sent again and is stored then. A copy that arrives while the first
is still being stored waits for its outcome. The digest is taken in the receiving process, on the body as it
arrived (after decompression), before a decode worker sees it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


def request_key(
    body: bytes, encoding: str, project: str | None, allowed: frozenset[str] | None = None
) -> bytes:
    """The digest that identifies a request: its encoding, the project it is stored under, the projects its API
    key may write (a copy sent with another key is judged by that key's projects), its body."""
    scope = "*" if allowed is None else "\x01".join(sorted(allowed))
    digest = hashlib.sha256(
        f"tj-export\x00{encoding}\x00{project if project is not None else ''}\x00{scope}\x00".encode()
    )
    digest.update(body)  # hashlib releases the GIL for large bodies
    return digest.digest()[:16]


class RecentRequests(Generic[T]):
    """The answers of requests acknowledged in the last `window_s` seconds, at most `max_entries`. Thread-safe."""

    def __init__(
        self, window_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._done: OrderedDict[bytes, tuple[float, T]] = OrderedDict()
        self._running: dict[bytes, Future[T]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def once(self, key: bytes, run: Callable[[], T]) -> tuple[T, bool]:
        """`run()`'s answer and False; or, when `key` was acknowledged within the window (or is being stored
        and then is), that answer and True. `run`'s exception propagates and nothing is remembered."""
        with self._lock:
            self._expire()
            hit = self._done.get(key)
            if hit is not None:
                return hit[1], True
            earlier = self._running.get(key)
            mine: Future[T] | None = None
            if earlier is None:
                mine = self._running[key] = Future()
        if earlier is not None:
            try:
                return earlier.result(), True
            except Exception:  # the first copy was refused: this one is tried again, as if it came first
                return self.once(key, run)
        assert mine is not None
        try:
            result = run()
        except BaseException as exc:
            with self._lock:
                del self._running[key]
            mine.set_exception(exc)
            raise
        with self._lock:
            del self._running[key]
            self._done[key] = (self._clock(), result)
            while len(self._done) > self._max:
                self._done.popitem(last=False)
        mine.set_result(result)
        return result, False

    def _expire(self) -> None:
        """Drop the entries older than the window (the oldest come first: entries are never moved)."""
        cutoff = self._clock() - self._window_s
        while self._done:
            key, (at, _) = next(iter(self._done.items()))
            if at >= cutoff:
                break
            del self._done[key]
