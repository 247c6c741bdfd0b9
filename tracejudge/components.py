"""The service's pieces that own a thread or a port, each a `lifecycle.Component` (name, start, stop).

`Listeners` claims the HTTP ports (first, so a taken port fails start-up before anything is touched);
`FlowThread` runs the Bytewax flow; `StatusWriter` writes the rule status rows every few seconds;
`GrpcReceiver` and `HttpServers` are the receivers and the API (last, so they stop first).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
import uvicorn
from bytewax._bytewax import cli_main
from bytewax.recovery import RecoveryConfig

from connectors.auth.ring import KeyRing
from connectors.clickhouse.rules_store import StatusRow
from connectors.http_guard import guarded_protocol
from connectors.otlp.grpc_server import start_grpc_server
from connectors.otlp.ingest import Ingestor
from dataflow import metrics
from dataflow.config import FlowConfig
from dataflow.errors import TracejudgeError
from dataflow.limits_config import LimitsConfig
from dataflow.polling import Poller
from dataflow.rules.status import RuleStats

logger = logging.getLogger("tracejudge")


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to `host:port` (0: a free port); `reuse_port`: shared with this user's other
    `SO_REUSEPORT` sockets (the ingest workers' gRPC servers) and not listening itself."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that names it, and without it
    # a keep-alive client waits ~40 ms per answer (Nagle's algorithm against the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT if reuse_port else socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        msg = f"cannot listen on {host}:{port}: {exc.strerror}"
        raise OSError(msg) from exc
    if not reuse_port:
        sock.listen(1024)
        sock.setblocking(False)
    return sock


class Listeners:
    """The listening sockets of the HTTP servers, by name; `stop` closes them (the servers may have already)."""

    name = "http-ports"

    def __init__(self, host: str, ports: dict[str, int]) -> None:
        self._host = host
        self._ports = ports
        self.sockets: dict[str, socket.socket] = {}

    def start(self) -> None:
        try:
            for key, port in self._ports.items():
                self.sockets[key] = bind(self._host, port)
        except OSError:
            self.stop()
            raise

    def port(self, key: str) -> int:
        return int(self.sockets[key].getsockname()[1])

    def stop(self) -> None:
        for sock in self.sockets.values():
            sock.close()


class FlowThread:
    """The Bytewax flow on a thread of its own. It ends, once `stop` is set, when it has read all of its input
    (`close_input` ends that); ending on an error, or without being stopped, calls `on_end` (stop the service)."""

    name = "bytewax-flow"

    def __init__(
        self,
        flow: Any,
        config: FlowConfig,
        recovery_dir: Path | None,
        stop: threading.Event,
        close_input: Callable[[], None],
        on_end: Callable[[], None],
    ) -> None:
        self._flow = flow
        self._config = config
        self._recovery_dir = recovery_dir
        self._stop = stop
        self._close_input = close_input
        self._on_end = on_end
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the flow drain its input and end; wait for it."""
        self._close_input()
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        recovery = None
        if self._recovery_dir is not None:
            recovery = RecoveryConfig(str(self._recovery_dir))  # type: ignore[no-untyped-call]
        metrics.FLOW_RUNNING.set(1)
        try:
            cli_main(  # type: ignore[no-untyped-call]
                self._flow,
                workers_per_process=self._config.workers,
                epoch_interval=timedelta(seconds=self._config.epoch_interval_s),
                recovery_config=recovery,
            )
        except BaseException as exc:  # the flow ending on an error stops the service, loudly
            self.error = exc
            logger.error("the dataflow stopped with an error: %s", exc)
            self._on_end()
        finally:
            metrics.FLOW_RUNNING.set(0)
            if not self._stop.is_set():
                self._on_end()


class StatusStore(Protocol):
    def write_status(self, rows: Iterable[StatusRow]) -> None: ...


class StatusWriter:
    """Writes the rule counts that changed every `interval_s`, and once more when stopped. A write that fails
    (ClickHouse unreachable) keeps its counts changed, so the next tick writes them again."""

    name = "rule-status"

    def __init__(self, stats: RuleStats, store: StatusStore, process_id: str, interval_s: float) -> None:
        self._stats = stats
        self._store = store
        self._process_id = process_id
        self._poller = Poller(self.name, interval_s, self.write, self._failed)

    def write(self) -> None:
        """Write the counts changed since the last successful write; raises what the store raises."""
        changed = self._stats.take_dirty()
        if not changed:
            return
        try:
            self._store.write_status(StatusRow.of(rid, self._process_id, c) for rid, c in changed.items())
        except BaseException:
            self._stats.mark_dirty(changed)
            metrics.RULE_STATUS_WRITE_ERRORS.inc()
            raise

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()
        try:
            self.write()
        except TracejudgeError as exc:
            logger.warning("writing the final rule status failed: %s", exc)

    @staticmethod
    def _failed(exc: TracejudgeError) -> None:
        logger.warning("writing rule status failed (retried next time): %s", exc)


class GrpcReceiver:
    """The OTLP/gRPC receiver; `stop` lets the calls under way finish for up to 10 s."""

    name = "otlp-grpc"

    def __init__(
        self,
        ingestor: Ingestor,
        host: str,
        port: int,
        max_message_bytes: int,
        limits: LimitsConfig,
        ring: KeyRing | None = None,
        credentials: grpc.ServerCredentials | None = None,
        reuse_port: bool = False,
    ) -> None:
        self._args = (ingestor, host, port, max_message_bytes)
        self._reuse_port = reuse_port
        self._limits = limits
        self._ring = ring
        self._credentials = credentials
        self._server: grpc.Server | None = None
        self.port = 0

    def start(self) -> None:
        self._server, self.port = start_grpc_server(
            *self._args, ring=self._ring, credentials=self._credentials, limits=self._limits,
            reuse_port=self._reuse_port,
        )  # fmt: skip

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=10).wait()


class HttpServers:
    """The HTTP apps (OTLP/HTTP, the API) served by uvicorn on one thread, each on its claimed socket; with TLS
    when given an `ssl_context` (its certificate can be reloaded in place: `connectors/tls.py`)."""

    name = "http"

    def __init__(
        self,
        apps: list[tuple[Any, socket.socket]],
        on_failure: Callable[[], None],
        limits: LimitsConfig,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._apps = apps
        self._limits = limits
        self._ssl = ssl_context
        self._on_failure = on_failure
        self._servers: list[uvicorn.Server] = []
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(30):
            self.stop()
            msg = "HTTP listeners did not start within 30 s"
            raise RuntimeError(msg)

    def stop(self) -> None:
        for srv in self._servers:
            srv.should_exit = True
        self._thread.join(timeout=15)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve_all())
        except BaseException:
            logger.exception("HTTP listeners failed")
            self._on_failure()

    def _ssl_context(self, _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        """uvicorn's `ssl_context_factory`: the one shared context, whose certificate a reload replaces."""
        assert self._ssl is not None
        return self._ssl

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the servers' event loop, where every TLS handshake of theirs starts (OpenSSL does not
        let one thread change a context's certificate while another starts a connection from it); here when
        the loop is not running."""
        loop = self._loop
        if loop is None or loop.is_closed():
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    async def _serve_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        lim = self._limits
        protocol = guarded_protocol(lim.http_header_timeout_s, lim.http_body_timeout_s)
        for app, _sock in self._apps:
            config = uvicorn.Config(
                app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=10,
                http=protocol, timeout_keep_alive=lim.http_keep_alive_s, limit_concurrency=lim.http_max_connections,
                ssl_context_factory=None if self._ssl is None else self._ssl_context,
            )  # fmt: skip
            self._servers.append(uvicorn.Server(config))
        tasks = [
            asyncio.create_task(srv.serve(sockets=[sock]))
            for srv, (_, sock) in zip(self._servers, self._apps, strict=True)
        ]
        while not all(srv.started for srv in self._servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        self._started.set()
        await asyncio.gather(*tasks)
