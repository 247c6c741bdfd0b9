"""Real Prometheus and Alertmanager (Debian's `prometheus`, `prometheus-alertmanager`) for integration tests, a
webhook receiver for Alertmanager's notifications, and a little OTLP load for the service they watch.

A missing binary fails the test (never skips): `make test` installs both (Makefile SYSTEM_PACKAGES).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.builders import otlp_request, otlp_span
from tests.integration.service import ServiceProcess, http
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "docker" / "prometheus"
DEBIAN_PACKAGES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager"}


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: apt-get install -y {DEBIAN_PACKAGES[name]} (make system-deps)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def daemon(args: list[str], port: int, log: Path) -> Iterator[str]:
    """Run a Prometheus-style server until the block ends; yield its base URL once /-/ready answers 200."""
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, f"{args[0]} exited:\n{log.read_text()}"
        try:
            return http("GET", url + "/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        eventually(
            ready,
            timeout=60, interval=0.1, message=lambda: f"{args[0]} did not get ready:\n{log.read_text()}",
        )  # fmt: skip
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def prometheus_config(
    svc: ServiceProcess, port: int, rules: Path, alertmanager: str | None
) -> dict[str, Any]:
    """docker/prometheus/prometheus.yml with the targets rewritten to this test's ports, 1 s intervals."""
    config: dict[str, Any] = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules)]
    targets = {"tracejudge": f"127.0.0.1:{svc.ports['api']}", "prometheus": f"127.0.0.1:{port}"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(targets) < set(jobs), jobs  # and otel-collector: no Collector runs here, so it is left out
    config["scrape_configs"] = []
    for name, target in targets.items():
        job = jobs[name]
        job["static_configs"] = [{"targets": [target]}]
        config["scrape_configs"].append(job)
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


@contextmanager
def prometheus(
    tmp: Path, svc: ServiceProcess, rules: dict[str, Any], alertmanager: str | None = None
) -> Iterator[str]:
    port = free_port()
    (tmp / "alerts.yml").write_text(yaml.safe_dump(rules))
    config = prometheus_config(svc, port, tmp / "alerts.yml", alertmanager)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    args = [
        binary("prometheus"), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s",
    ]  # fmt: skip
    with daemon(args, port, tmp / "prometheus.log") as url:
        yield url


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus's HTTP API; its result vector."""
    status, _, body = http("GET", f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "success", f"{expr}: {status} {doc}"
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


class Webhook:
    """An HTTP endpoint that keeps every notification Alertmanager posts to it."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def alertmanager(tmp: Path, webhook: Webhook) -> Iterator[str]:
    port = free_port()
    config = {
        "global": {"resolve_timeout": "5s"},
        "route": {
            "receiver": "test",
            "group_by": ["alertname", "rule", "scorer"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}],
    }
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    args = [
        binary("prometheus-alertmanager"), f"--config.file={tmp / 'alertmanager.yml'}",
        f"--storage.path={tmp / 'am'}", f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
    ]  # fmt: skip
    with daemon(args, port, tmp / "alertmanager.log") as url:
        yield url


class Load:
    """`per_s` traces a second over OTLP/HTTP, in requests of `batch`, on a fixed schedule (a slow request is
    caught up): each a root span whose output `answer()` gives, with an llm.call child."""

    def __init__(
        self,
        svc: ServiceProcess,
        project: str,
        answer: Callable[[], str],
        per_s: float = 10.0,
        batch: int = 2,
    ) -> None:
        self.svc, self.project, self.answer, self.per_s, self.batch = svc, project, answer, per_s, batch
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(max(0.0, started + self.sent / self.per_s - time.monotonic())):
            spans = [span for _ in range(self.batch) for span in self.trace(self.answer())]
            post_spans(self.svc, otlp_request(*spans, resource={"tracejudge.project": self.project}))
            self.sent += self.batch

    @staticmethod
    def trace(answer: str) -> list[dict[str, Any]]:
        trace, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        io = {"input.value": "Capital of France?", "output.value": answer}
        return [
            otlp_span(trace_id=trace, span_id=root, name="agent", attributes=io),
            otlp_span(trace_id=trace, span_id=uuid.uuid4().hex[:16], parent_span_id=root, name="llm.call", attributes=io),
        ]  # fmt: skip


def post_spans(svc: ServiceProcess, request: dict[str, Any]) -> int:
    body = json.dumps(request).encode()
    status = http("POST", svc.otlp_http + "/v1/traces", body, {"Content-Type": "application/json"})[0]
    return status


def wait_until(check: Callable[[], Any], what: Callable[[], str], timeout: float = 60.0) -> Any:
    return eventually(check, timeout=timeout, interval=0.5, message=what)


def get_json(url: str) -> Any:
    status, _, body = http("GET", url)
    assert status == 200, f"GET {url}: {status} {body[:500]!r}"
    return json.loads(body)
