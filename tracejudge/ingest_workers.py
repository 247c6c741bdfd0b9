"""The main process's side of the ingest workers (`tracejudge/ingest_worker.py`): start them, restart a dead
one, add their metrics to `/metrics`, drain them on stop.

Worker `i` writes log partition `wal.partitions + i`; the main process's own partitions keep what it appends
itself (judge spans, `POST /api/v1/traces`). The ports: the OTLP/HTTP listening socket is claimed by the main
process (`Listeners`) and handed to every worker, which accept from it in turn (the least busy accepts first);
the gRPC port is claimed here with `SO_REUSEPORT` and a socket that never listens, so the port is known and
held before a worker binds it (grpc cannot serve a socket it did not open) and only this user's processes can
share it. A worker that exits while the service runs is started again after `RESTART_DELAY_S`; the requests it
held were never acknowledged and are retried by the exporters, and its partition's torn tail is cut by the
new worker before it appends (`connectors/wal/log.py`).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dataflow import metrics
from dataflow.config import Settings
from tracejudge.components import bind
from tracejudge.dedupe_link import Broker
from tracejudge.worker_metrics import apply

logger = logging.getLogger("tracejudge")
RESTART_DELAY_S = 1.0
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
FLUSH_TIMEOUT_S = 2.0
MAX_SEAL_STRETCH = 2  # a worker partition seals at most this many times later than wal.segment_max_age_s


class _Worker:
    """One worker process and the thread reading what it says."""

    def __init__(
        self,
        spec: dict[str, Any],
        http_fd: int,
        on_exit: Any,
        broker: Broker | None,
        on_disk_full: Callable[[], None],
    ) -> None:
        self.spec = spec
        self._on_disk_full = on_disk_full
        self.index = int(spec["index"])
        self.ready = threading.Event()
        self.stopped = False
        self._on_exit = on_exit
        self._broker = broker
        self._in = threading.Lock()
        self.flushed = -1  # the newest scrape whose metrics this worker sent
        self.flush_done = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracejudge.ingest_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=[http_fd],
            text=True,
            bufsize=1,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        self._thread = threading.Thread(
            target=self._read, args=(self.proc.stdout,), name=f"ingest-worker-{self.index}", daemon=True
        )
        self._thread.start()

    def send(self, message: list[Any]) -> None:
        line = json.dumps(message) + "\n"
        try:
            with self._in:
                assert self.proc.stdin is not None
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # gone: its claims fail when its exit is seen

    def _read(self, out: IO[str]) -> None:
        for line in out:
            message = json.loads(line)
            kind = message[0]
            if kind == "claim" and self._broker is not None:
                self._broker.claim(self.index, message[1], message[2], self.send)
            elif kind in ("done", "fail") and self._broker is not None:
                self._broker.done(self.index, message[1], message[2] if kind == "done" else None)
            elif kind == "metrics":
                apply(message[1])
                if message[2] is not None:
                    self.flushed = max(self.flushed, int(message[2]))
                    with self.flush_done:
                        self.flush_done.notify_all()
            elif kind == "ready":
                self.ready.set()
            elif kind == "disk-full":
                self._on_disk_full()
        self.proc.wait()
        self.ready.set()  # wakes a start-up waiting for it (which then sees it ended)
        if self._broker is not None:
            self._broker.worker_gone(self.index)
        self._on_exit(self)

    def ask_stop(self) -> None:
        self.stopped = True
        self.send(["stop"])

    def join(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.error(
                "ingest worker %d did not stop within %.0f s; killing it", self.spec["index"], timeout
            )
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=5)


class IngestWorkers:
    """`count` worker processes receiving OTLP; a lifecycle component."""

    name = "ingest-workers"

    def __init__(
        self,
        settings: Settings,
        count: int,
        http_sock: socket.socket,
        keys_file: Path,
        broker: Broker | None,
        on_disk_full: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._on_disk_full = on_disk_full  # a worker saw the disk full: the guard looks now
        self._broker = broker
        self._count = count
        self._http_sock = http_sock
        self._keys_file = keys_file
        self._grpc_claim: socket.socket | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._workers: dict[int, _Worker] = {}
        self._scrapes = 0
        self._running = False  # started: a worker that exits from now on is started again
        self.port = 0

    def _spec(self, index: int) -> dict[str, Any]:
        s = self._settings
        settings = s.model_dump(mode="json")
        # Each worker's partition takes 1/count of the spans: sealing it count times later keeps the segments,
        # hence ClickHouse's inserted parts and its merges, as large as one partition's would be; at most
        # MAX_SEAL_STRETCH times, so that spans reach ClickHouse (the UI, completions) within seconds on many cores.
        stretch = min(self._count, MAX_SEAL_STRETCH)
        settings["wal"]["segment_max_age_s"] = s.wal.segment_max_age_s * stretch
        return {
            "settings": settings,
            "index": index,
            "partition": s.wal.partitions + index,
            "grpc_port": self.port,
            "http_fd": self._http_sock.fileno(),
            "keys_file": str(self._keys_file),
        }

    def _spawn(self, index: int) -> _Worker:
        worker = _Worker(
            self._spec(index), self._http_sock.fileno(), self._exited, self._broker, self._on_disk_full
        )
        with self._lock:
            self._workers[index] = worker
        return worker

    def start(self) -> None:
        s = self._settings
        try:
            self._grpc_claim = bind(s.host, s.otlp_grpc_port, reuse_port=True)
        except OSError as exc:
            msg = f"cannot bind OTLP/gRPC on {s.host}:{s.otlp_grpc_port}: {exc.__cause__ or exc}"
            raise OSError(msg) from exc
        self.port = int(self._grpc_claim.getsockname()[1])
        try:
            workers = [self._spawn(i) for i in range(self._count)]
            for w in workers:
                if not w.ready.wait(START_TIMEOUT_S) or w.proc.poll() is not None:
                    msg = f"ingest worker {w.spec['index']} did not start"
                    raise OSError(msg)
        except BaseException:
            self.stop()
            raise
        self._running = True
        metrics.BEFORE_SCRAPE.append(self.flush_metrics)
        logger.info("%d ingest workers receiving OTLP (log partitions p%d-p%d)", self._count,
                    s.wal.partitions, s.wal.partitions + self._count - 1)  # fmt: skip

    def _exited(self, worker: _Worker) -> None:
        if worker.stopped or self._stopping.is_set() or not self._running:
            return  # stopped, or start-up failed (`start` raises)
        index = worker.spec["index"]
        logger.error("ingest worker %d exited (code %s); starting it again", index, worker.proc.returncode)
        metrics.INGEST_WORKER_RESTARTS.inc()
        if self._stopping.wait(RESTART_DELAY_S):
            return
        self._spawn(index)

    def flush_metrics(self) -> None:
        """Before `/metrics` is rendered: every live worker's counts so far, waiting up to FLUSH_TIMEOUT_S."""
        with self._lock:
            self._scrapes += 1
            request = self._scrapes
            workers = [w for w in self._workers.values() if w.ready.is_set() and w.proc.poll() is None]
        for w in workers:
            w.send(["flush", request])
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        for w in workers:
            with w.flush_done:
                w.flush_done.wait_for(
                    lambda w=w: w.flushed >= request or w.proc.poll() is not None,  # type: ignore[misc]
                    timeout=max(0.0, deadline - time.monotonic()),
                )

    def reload(self) -> None:
        """Tell every worker to read the TLS files again (the main process got SIGHUP)."""
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.send(["reload"])

    def stop(self) -> None:
        """Drain every worker (its receivers finish their calls, its partition is sealed), then let the port go."""
        self._stopping.set()
        if self.flush_metrics in metrics.BEFORE_SCRAPE:
            metrics.BEFORE_SCRAPE.remove(self.flush_metrics)
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.ask_stop()
        for w in workers:
            w.join(STOP_TIMEOUT_S)
        if self._grpc_claim is not None:
            self._grpc_claim.close()
