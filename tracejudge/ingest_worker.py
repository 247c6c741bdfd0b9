"""An ingest worker process: OTLP receivers that decode where the bytes arrive and append to their own log
partition (`python -m tracejudge.ingest_worker`, started by `tracejudge.ingest_workers`).

The main process writes one JSON line to the worker's stdin: the settings, the worker's log partition, the
gRPC port and the descriptor of the OTLP/HTTP listening socket it passed down. The worker serves OTLP/gRPC on
that port with `SO_REUSEPORT` (the kernel spreads connections over the workers) and OTLP/HTTP by accepting
on the shared socket (whichever worker is free accepts), decodes each request in this process, appends it to
its partition with its own group commit and answers after the append is durable: request bodies and decoded
batches never cross a process boundary. It reads API keys from the file the main process rewrites, and writes
"ready" and then, every second, its metrics' growth to stdout (one JSON list a line); duplicate requests are
judged by the main process over the same pipes (`tracejudge/dedupe_link.py`).

It stops cleanly (receivers drain, the partition is sealed) on a "stop" line, or when its stdin ends: the
main process is gone (the orphan rule: a worker never outlives its service, even one killed with SIGKILL).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from connectors.auth.key_file import FileKeyRing, FileKeySource
from connectors.otlp.http import build_otlp_http_app
from connectors.otlp.ingest import Ingestor
from connectors.tls import ServerTls
from connectors.wal.disk_guard import FollowerGuard
from connectors.wal.log import Wal
from dataflow.config import Settings
from tracejudge.components import GrpcReceiver, HttpServers
from tracejudge.dedupe_link import Link
from tracejudge.worker_metrics import Deltas

logger = logging.getLogger("tracejudge.ingest_worker")
METRICS_EVERY_S = 1.0


_OUT = threading.Lock()


def _send(message: list[Any]) -> None:
    line = json.dumps(message) + "\n"
    with _OUT:
        sys.stdout.write(line)
        sys.stdout.flush()


def _watch_stdin(worker: Worker) -> None:
    """`stop` drains the worker (its requests still get their dedupe answers meanwhile); the end of stdin (the
    main process is gone) refuses what waits for an answer and stops it too; `reload` reads the TLS files again
    (the main process got SIGHUP); `flush` sends the metrics now; the rest are dedupe answers."""
    for line in sys.stdin:
        message = json.loads(line)
        if message[0] == "stop":
            worker.stop.set()
        elif message[0] == "reload":
            worker.reload()
        elif message[0] == "flush":
            worker.send_metrics(message[1])
        else:
            worker.link.answer(message)
    worker.link.close()
    worker.stop.set()


class Worker:
    """The receivers, the partition and the key ring of one worker process."""

    def __init__(self, spec: dict[str, Any]) -> None:
        s = Settings.model_validate(spec["settings"])
        self.settings = s
        self.stop = threading.Event()
        data_dir = s.data_dir.resolve()
        self.wal = Wal(data_dir / "wal", s.wal, own=[int(spec["partition"])])
        self.wal.guard = FollowerGuard(
            data_dir, s.wal.disk_reserve_bytes, s.wal.disk_min_free_bytes, lambda: _send(["disk-full"])
        )
        self.ring = FileKeyRing(
            FileKeySource(Path(spec["keys_file"])), s.auth.enabled, s.auth.reload_interval_s
        )
        self.ring.refresh(force=True)
        self.link = Link(_send)
        self._deltas = Deltas()
        self._metrics_lock = threading.Lock()
        self.ingestor = Ingestor(
            self.wal, s.ingest, recent=self.link if s.ingest.duplicate_window_s > 0 else None
        )
        self.tls = tls = ServerTls(s.tls) if s.tls.enabled else None
        http_sock = socket.socket(fileno=int(spec["http_fd"]))
        self.http = HttpServers(
            [(build_otlp_http_app(self.ingestor, self.ring), http_sock)],
            self.stop.set,
            s.limits,
            tls.context if tls else None,
        )
        self.grpc = GrpcReceiver(
            self.ingestor, s.host, int(spec["grpc_port"]), s.ingest.grpc_max_message_bytes, s.limits,
            self.ring, tls.grpc_credentials() if tls else None, reuse_port=True,
        )  # fmt: skip

    def send_metrics(self, request: int | None = None) -> None:
        """What the metrics grew by since the last time; `request`: the main process's scrape that asked."""
        with self._metrics_lock:
            _send(["metrics", self._deltas.take(), request])

    def reload(self) -> None:
        if self.tls is not None:
            self.http.call_soon(self.tls.reload)

    def run(self) -> None:
        self.wal.start()
        self.ring.start()
        self.http.start()
        self.grpc.start()
        _send(["ready", self.grpc.port])
        while not self.stop.wait(METRICS_EVERY_S):
            self.send_metrics()
        self.grpc.stop()
        self.http.stop()
        self.ring.stop()
        self.wal.close()
        self.send_metrics()
        _send(["stopped"])


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    logging.basicConfig(
        level=spec["settings"]["log_level"],
        format="%(asctime)s %(levelname)s %(name)s[w%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    # A terminal's Ctrl-C, or a `kill` of the process group, reaches the main process too, which drains us in
    # order (receivers first, the log sealed after them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = Worker(spec)
    threading.Thread(target=_watch_stdin, args=(worker,), name="stdin-watch", daemon=True).start()
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
