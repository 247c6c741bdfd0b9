"""Fault injection: slow and abusive clients (issue 13 item 5).

500 connections that send their request a byte a second (to OTLP/HTTP, the API and OTLP/gRPC) do not stop other
clients from being served, and each is closed once its header deadline passes (`limits.*`); a request that
stalls mid-body is closed at its body deadline.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.integration.service import ServiceProcess, http
from tests.integration.test_durability import EXPORT, PB, make_request
from tests.waiting import eventually

SLOW_CONNECTIONS = {"http": 300, "api": 100, "grpc": 100}
_REQUEST_HEAD = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # a valid start the gRPC server waits for the rest of
LIMITS = {
    "TRACEJUDGE_LIMITS__HTTP_HEADER_TIMEOUT_S": "3",
    "TRACEJUDGE_LIMITS__HTTP_BODY_TIMEOUT_S": "3",
    "TRACEJUDGE_LIMITS__GRPC_HANDSHAKE_TIMEOUT_S": "3",
    "TRACEJUDGE_INGEST__DECODE_WORKERS": "0",  # decoding in-process: a faster start, the same receivers
}


class Dribbler:
    """Sockets that each send one byte of a request head per second until the server closes them."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.sockets: dict[socket.socket, str] = {}
        for name, count in SLOW_CONNECTIONS.items():
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", ports[name]), timeout=10)
                sock.setblocking(False)
                self.sockets[sock] = name
        self.answers: dict[str, list[bytes]] = {name: [] for name in SLOW_CONNECTIONS}
        self.closed: dict[str, int] = dict.fromkeys(SLOW_CONNECTIONS, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Dribbler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()

    @property
    def open_count(self) -> int:
        return sum(SLOW_CONNECTIONS.values()) - sum(self.closed.values())

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for sock in self.sockets:
            sel.register(sock, selectors.EVENT_READ)
        sent = 0
        next_send = time.monotonic()
        while not self._stop.is_set() and sel.get_map():
            for key, _ in sel.select(timeout=max(0.0, next_send - time.monotonic())):
                self._read(sel, key.fileobj)  # type: ignore[arg-type]
            if time.monotonic() < next_send:
                continue
            for key in list(sel.get_map().values()):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                head = _HTTP2_PREFACE if self.sockets[sock] == "grpc" else _REQUEST_HEAD
                try:
                    sock.send(head[sent : min(sent + 1, len(head) - 1)])  # never the whole head
                except OSError:
                    self._read(sel, sock)
            sent += 1
            next_send += 1.0
        sel.close()

    def _read(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        name = self.sockets[sock]
        if not data:
            sel.unregister(sock)
            self.closed[name] += 1
        elif name != "grpc":  # gRPC answers the bad preface with a GOAWAY frame, then closes
            self.answers[name].append(data)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = ServiceProcess(tmp_path_factory.mktemp("slow-clients") / "data", env=LIMITS).start()
    yield service
    assert service.stop() == 0, service.output


def test_byte_a_second_clients_do_not_stop_others_and_are_closed(svc: ServiceProcess) -> None:
    channel = grpc.insecure_channel(svc.otlp_grpc)
    export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    ids: list[tuple[str, str]] = []
    with Dribbler(svc.ports) as slow:
        for _ in range(5):
            body, sent = make_request(4)
            status, _, answer = http("POST", svc.otlp_http + "/v1/traces", body, PB, timeout=10)
            assert status == 200, answer
            body, sent_grpc = make_request(4)
            export(body, timeout=10)
            ids += sent + sent_grpc
        assert svc.ready()
        assert slow.open_count > 0, "the slow clients were closed before the others were served"
        eventually(lambda: slow.open_count == 0, timeout=60, message=lambda: f"{slow.closed}\n{svc.output}")
    channel.close()
    answers = slow.answers["http"] + slow.answers["api"]
    assert answers, "no slow HTTP client got an answer"
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[:3]
    svc.wait_for("SELECT count() FROM otel_traces", len(ids))
    metrics = http("GET", svc.api + "/metrics")[2].decode()
    assert 'tracejudge_http_read_timeouts_total{phase="headers"}' in metrics


def test_a_request_that_stalls_mid_body_is_closed(svc: ServiceProcess) -> None:
    body, _ = make_request(2)
    sock = socket.create_connection(("127.0.0.1", svc.ports["http"]), timeout=120)
    head = _REQUEST_HEAD + b"Content-Length: %d\r\n\r\n" % len(body)
    sock.sendall(head + body[:10])
    assert sock.recv(4096) == b"", "the stalled request was answered instead of closed"
    sock.close()
    metrics = http("GET", svc.api + "/metrics")[2].decode()
    assert 'tracejudge_http_read_timeouts_total{phase="body"} 1.0' in metrics
    status, _, _ = http("POST", svc.otlp_http + "/v1/traces", body, PB)
    assert status == 200
    assert "Traceback" not in svc.output, svc.output  # a client gone mid-body is no server error
