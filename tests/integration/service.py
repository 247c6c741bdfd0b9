"""Run `tracejudge run` as a real subprocess on free ports for integration tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
_LISTEN = re.compile(r"listening: (OTLP/gRPC|OTLP/HTTP|API) on [^\s]+:(\d+)")
_NAMES = {"OTLP/gRPC": "grpc", "OTLP/HTTP": "http", "API": "api"}


class ServiceProcess:
    """One `tracejudge run` process. Ports are chosen by the OS (0) and read from its log lines."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}
        self.log: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        env = dict(os.environ)
        env.update({"TRACEJUDGE_FLOW__EPOCH_INTERVAL_S": "0.5", "TRACEJUDGE_WAL__SEGMENT_MAX_AGE_S": "0.2"})
        env.update(self.env)
        cmd = [
            sys.executable, "-m", "tracejudge", "run", "--data-dir", str(self.data_dir),
            "--otlp-grpc-port", "0", "--otlp-http-port", "0", "--api-port", "0", *self.args,
        ]  # fmt: skip
        self.ports = {}
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            eventually(self._started, timeout=timeout, interval=0.05)
        except AssertionError:
            self.kill()
            raise RuntimeError("tracejudge did not become ready:\n" + self.output) from None
        return self

    def _started(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError("tracejudge exited during start-up:\n" + self.output)
        return len(self.ports) == 3 and self.ready()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))
            m = _LISTEN.search(line)
            if m:
                self.ports[_NAMES[m.group(1)]] = int(m.group(2))

    @property
    def output(self) -> str:
        return "\n".join(self.log[-200:])

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.api + "/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, KeyError):
            return False

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait; return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def sql(self, query: str) -> list[list[Any]]:
        doc = self.post_json("/api/v1/sql", {"query": query})
        return list(doc["data"])

    def scalar(self, query: str) -> Any:
        return self.sql(query)[0][0]

    def post_json(self, path: str, doc: Any) -> Any:
        req = urllib.request.Request(
            self.api + path, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.api + path, timeout=60) as resp:
            return json.load(resp)

    def wait_for(self, query: str, expected: Any, timeout: float = 30.0) -> Any:
        """Poll a scalar query until it equals `expected` (spans reach ClickHouse asynchronously)."""
        return eventually(
            lambda: self.scalar(query), until=lambda value: value == expected, timeout=timeout,
            message=lambda: f"{query!r}: expected {expected!r}\n{self.output}",
        )  # fmt: skip


def http(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP call that returns error statuses instead of raising."""
    req = urllib.request.Request(
        url, data=body if method != "GET" else None, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
