"""OTLP receivers in worker processes (issue 15, item 1): a worker killed under load loses no acknowledged span,
is started again, and its clients see only errors an exporter retries."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import grpc

from tests.integration.service import ServiceProcess, http
from tests.integration.test_durability import EXPORT, PB, Sender, _missing, count_offline, make_request
from tests.waiting import eventually

RETRYABLE_HTTP = {429, 502, 503, 504}
RETRYABLE_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def worker_pids(parent: int) -> list[int]:
    """The ingest workers among `parent`'s children (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"tracejudge.ingest_worker" in cmdline:
            out.append(int(stat.parent.name))
    return sorted(out)


class Clients(Sender):
    """`Sender`'s threads (unique spans over HTTP and gRPC), also remembering every refusal an exporter would
    not retry."""

    def __init__(self, svc: ServiceProcess, threads: int = 4) -> None:
        super().__init__(svc, threads)
        self.refusals: list[str] = []

    def _send(self, index: int, channel: grpc.Channel, body: bytes) -> str | None:
        """None when acknowledged, else the refusal."""
        if index % 2:
            try:
                channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)(
                    body, timeout=30
                )
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                return f"grpc {code.name}" if code not in RETRYABLE_GRPC else "retryable"
            return None
        try:
            status, _, _ = http("POST", self.svc.otlp_http + "/v1/traces", body, PB, timeout=30)
        except OSError:  # the connection was reset by the killed worker
            return "retryable"
        if status == 200:
            return None
        return "retryable" if status in RETRYABLE_HTTP else f"http {status}"

    def _run(self, index: int) -> None:
        channel = grpc.insecure_channel(self.svc.otlp_grpc)
        while not self._stop.is_set():
            body, ids = make_request(20)
            refusal = self._send(index, channel, body)
            with self._lock:
                if refusal is None:
                    self.acked.update(ids)
                elif refusal != "retryable":
                    self.refusals.append(refusal)
            if refusal is not None:
                time.sleep(0.05)
        channel.close()


def _restarts(svc: ServiceProcess) -> float:
    _, _, raw = http("GET", svc.api + "/metrics")
    found = re.search(r"^tracejudge_ingest_worker_restarts_total ([0-9.e+]+)", raw.decode(), re.M)
    return float(found.group(1)) if found else 0.0


def test_a_killed_receiver_worker_loses_nothing_and_is_restarted(data_dir: Path) -> None:
    svc = ServiceProcess(data_dir, env={"TRACEJUDGE_INGEST__WORKERS": "2"}).start()
    assert svc.proc is not None
    before = eventually(lambda: worker_pids(svc.proc.pid), until=lambda p: len(p) == 2)  # type: ignore[union-attr]
    with Clients(svc) as clients:
        eventually(lambda: len(clients.acked), until=lambda n: n >= 2000, timeout=60)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)  # mid-stream: requests in flight, a segment open
        eventually(lambda: _restarts(svc), until=lambda n: n >= 1, timeout=60, message=lambda: svc.output)
        after = eventually(
            lambda: worker_pids(svc.proc.pid),  # type: ignore[union-attr]
            until=lambda p: len(p) == 2 and victim not in p,
            timeout=60,
        )
        acked_at_restart = len(clients.acked)
        eventually(lambda: len(clients.acked), until=lambda n: n >= acked_at_restart + 2000, timeout=60)
    assert clients.refusals == []
    assert set(after) - set(before), "a new worker process"
    assert svc.stop() == 0, svc.output
    total, distinct = count_offline(data_dir)
    assert total == distinct, f"{total - distinct} duplicated spans"
    assert _missing(data_dir, clients.acked) == 0
