"""Decoding in worker processes, so the receiving process keeps its one GIL for everything else.

Turning protobuf or OTLP/JSON into Arrow costs ~25 us a span of pure Python; in the receiving process it
took half of the one core the GIL allows. A worker decodes a request body and returns the batch already
serialised as the Arrow IPC message the write-ahead log stores, plus the counts, so the receiving process
only moves bytes. A worker that dies is replaced; the requests it held are answered 503 and retried by the
exporters.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import pyarrow as pa

from connectors.otlp.builder import Normalizer, restricted, with_project
from connectors.otlp.decode import DecodedRequest, decode_json, decode_protobuf
from dataflow.errors import WalError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodedPayload:
    """A decoded request as the log stores it: an Arrow IPC record-batch message, and the counts."""

    payload: bytes | pa.Buffer | None
    accepted: int
    rejected: int
    traces: int
    reject_reasons: dict[str, int]
    errors: tuple[str, ...]
    message: str


_NORMALIZER: Normalizer | None = None


def _init(normalizer: Normalizer, parent_pid: int | None = None) -> None:
    global _NORMALIZER
    _NORMALIZER = normalizer
    if parent_pid is not None:
        threading.Thread(
            target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True
        ).start()


def _exit_with_parent(parent_pid: int) -> None:
    """A worker must not outlive a service killed with SIGKILL (its pool cannot tell it to stop)."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def to_payload(decoded: DecodedRequest, as_bytes: bool = False) -> DecodedPayload:
    """The batch as the log stores it; `as_bytes` to cross a process boundary."""
    payload: bytes | pa.Buffer | None = None
    if decoded.batch is not None:
        buf = decoded.batch.serialize()
        payload = buf.to_pybytes() if as_bytes else buf
    return DecodedPayload(
        payload,
        decoded.accepted,
        decoded.rejected,
        decoded.traces,
        decoded.reject_reasons,
        decoded.errors,
        decoded.error_message(),
    )


def _decode(
    body: bytes, encoding: str, ingested_at_ns: int, project: str | None, allowed: frozenset[str] | None
) -> DecodedPayload:
    assert _NORMALIZER is not None
    norm = restricted(_NORMALIZER if project is None else with_project(_NORMALIZER, project), allowed)
    if encoding == "protobuf":
        return to_payload(decode_protobuf(body, norm, ingested_at_ns), as_bytes=True)
    return to_payload(decode_json(body, norm, ingested_at_ns), as_bytes=True)


class DecodePool:
    """A pool of decoding processes shared by every receiver of this process."""

    def __init__(self, workers: int, normalizer: Normalizer) -> None:
        self._workers = workers
        self._normalizer = normalizer
        self._lock = threading.Lock()
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: this process runs threads and an embedded database engine.
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(self._normalizer, os.getpid()),
        )

    def warm_up(self) -> None:
        """Start every worker now (imports take a second), not on the first request. On failure the pool is
        shut down before the error is raised (a lifecycle component that fails to start cleans up itself)."""
        futures = [self._pool.submit(_init, self._normalizer) for _ in range(self._workers)]
        try:
            for f in futures:
                f.result(timeout=120)
        except BaseException:  # start-up fails: tell the workers to exit, without waiting on a hung one
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise

    def decode(
        self,
        body: bytes,
        encoding: str,
        ingested_at_ns: int,
        project: str | None = None,
        allowed: frozenset[str] | None = None,
    ) -> DecodedPayload:
        """One request body, decoded in a worker; `project`, when given, is every span's project; spans of
        projects outside `allowed` (when given) are rejected."""
        pool = self._pool
        try:
            future: Future[DecodedPayload] = pool.submit(
                _decode, body, encoding, ingested_at_ns, project, allowed
            )
            return future.result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    logger.error("a decode worker died; starting a new pool")
                    self._pool = self._start()
            msg = "decode worker failed; retry"
            raise WalError(msg) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
