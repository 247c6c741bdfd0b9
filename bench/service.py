"""The processes a benchmark starts and talks to, on 127.0.0.1.

* ``ManagedServer``: ``tracejudge run`` (or a stand-in with its CLI) as a subprocess on free loopback ports,
  waited for until ``/readyz`` answers, stopped with SIGTERM and its whole process group killed after;
* ``FakeLLM``: the fake LLM server (``python -m tests.fakes.llm_server``) in a process of its own;
* the pieces they share with ``bench/peers/phoenix.py``: ``free_port``, ``wait_ready``, ``stop_group``,
  ``log_tail``; and the service's HTTP API: ``sql``, ``sql_row``, ``http_json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
REPO_DIR = Path(__file__).resolve().parent.parent


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, n: int) -> str:
    """The last ``n`` lines of a log file ('' if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def http_ok(url: str) -> bool:
    """True when ``GET url`` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    since: float,
    timeout: float,
    interval: float,
    what: str,
    log_path: Path,
) -> float:
    """Poll ``ready()`` until it holds; seconds from ``since``. Raises if the process exits or time runs out."""
    while time.time() < since + timeout:
        if proc.poll() is not None:
            msg = f"{what} exited with {proc.returncode} during start-up; log:\n{log_tail(log_path, 40)}"
            raise RuntimeError(msg)
        if ready():
            return time.time() - since
        time.sleep(interval)
    msg = f"{what} not ready after {timeout:.0f} s; log:\n{log_tail(log_path, 40)}"
    raise RuntimeError(msg)


def stop_group(
    p: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 90.0, then_term: bool = False
) -> float:
    """Send ``sig``, wait up to ``timeout`` s (then SIGTERM and 15 s more if ``then_term``), and kill what is
    left of the process group (every process here starts its own session). Returns the seconds the process
    took to exit after ``sig``: inf if it did not within ``timeout``, nan if it had exited already."""
    took = math.nan
    if p.poll() is None:
        t0 = time.time()
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
            took = time.time() - t0
        except subprocess.TimeoutExpired:
            took = math.inf
            if then_term:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=10)
    return took


# ---------------------------------------------------------------------------
# The service under test
# ---------------------------------------------------------------------------


def default_tracejudge_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "tracejudge"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("tracejudge")
    if found:
        return [found]
    return [str(REPO_DIR / ".venv" / "bin" / "tracejudge")]


def tracejudge_cmd(args: argparse.Namespace) -> list[str]:
    """``--tracejudge-cmd`` split into words, or the venv's ``tracejudge``."""
    return str(args.tracejudge_cmd).split() if args.tracejudge_cmd else default_tracejudge_cmd()


class LoggedServer:
    """A server subprocess in a session of its own, its output in ``log_path``: started and waited for until
    ``ready()``, stopped with ``stop_signal`` and its process group killed after (``stop_group``)."""

    stop_signal = signal.SIGTERM
    stop_timeout = 90.0
    term_after_timeout = False  # SIGTERM when the stop signal was not enough

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = math.nan
        self.shutdown_s = math.nan
        self.exit_code: int | None = None
        self._log: IO[bytes] | None = None

    def spawn(self, cmd: list[str], env: dict[str, str] | None, cwd: Path | None, ready: Callable[[], bool],
              *, what: str, timeout: float, interval: float) -> None:  # fmt: skip
        t0 = time.time()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.startup_s = wait_ready(self.proc, ready, since=t0, timeout=timeout, interval=interval, what=what,
                                    log_path=self.log_path)  # fmt: skip

    def tail(self, n: int = 40) -> str:
        return log_tail(self.log_path, n)

    def stop(self, timeout: float | None = None) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        wait = self.stop_timeout if timeout is None else timeout
        self.shutdown_s = stop_group(p, self.stop_signal, wait, then_term=self.term_after_timeout)
        self.exit_code = p.returncode
        if self._log is not None:
            self._log.close()


class ManagedServer(LoggedServer):
    """``tracejudge run`` (or a compatible command) as a subprocess on free loopback ports."""

    def __init__(
        self,
        base_cmd: list[str],
        data_dir: Path,
        log_dir: Path,
        extra_args: list[str],
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(log_dir / "server.log")
        self.env = dict(env or {})  # extra environment (e.g. TRACEJUDGE_WINDOWS__SETTLE_S) on top of ours
        self.ports = {"grpc": free_port(), "http": free_port(), "api": free_port()}
        self.cmd = [*base_cmd, "run", "--data-dir", str(data_dir), "--host", HOST,
                    "--otlp-grpc-port", str(self.ports["grpc"]), "--otlp-http-port", str(self.ports["http"]),
                    "--api-port", str(self.ports["api"]), *extra_args]  # fmt: skip

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.ports['api']}"

    def start(self, ready_timeout: float = 180.0) -> None:
        env = {**os.environ, **self.env} if self.env else None
        self.spawn(self.cmd, env, None, lambda: http_ok(self.api + "/readyz"), what="server",
                   timeout=ready_timeout, interval=0.25)  # fmt: skip


def sql(api: str, query: str, timeout: float = 30.0) -> dict[str, Any]:
    req = urllib.request.Request(
        api + "/api/v1/sql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return dict(json.loads(r.read()))


def sql_row(api: str, query: str, timeout: float = 30.0) -> list[int]:
    res = sql(api, query, timeout)
    return [int(x) for x in res["data"][0]]


def http_json(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


# ---------------------------------------------------------------------------
# The fake LLM server, in a process of its own
# ---------------------------------------------------------------------------


class FakeLLM:
    """``python -m tests.fakes.llm_server`` as a subprocess (its CPU is not the service's); its stderr goes to
    ``log_path`` (or ours when None)."""

    def __init__(self, latency: float, log_path: Path | None = None) -> None:
        self.latency = latency
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "tests.fakes.llm_server", "--host", HOST, "--port", "0",
               "--latency", f"{self.latency:g}", "--no-record-bodies", "--max-log", "1000"]  # fmt: skip
        with open(self.log_path, "ab") if self.log_path else contextlib.nullcontext() as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, timeout)
        if not line.startswith(b"READY "):
            self.stop()
            msg = f"fake LLM server did not start ({line!r}); log: {self.log_path or 'stderr'}"
            raise RuntimeError(msg)
        self.port = int(line.split()[1])

    def call(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base_url + path, data=b"{}" if method == "POST" else None, method=method
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return dict(json.loads(r.read()))

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/_control/stats")

    def reset_stats(self) -> dict[str, Any]:
        return self.call("POST", "/_control/stats/reset")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        stop_group(p, signal.SIGTERM, 10)
        if p.stdout is not None:
            p.stdout.close()


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe, waiting at most ``timeout`` s (b'' on timeout or EOF)."""
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                break
            buf += chunk
    return buf.strip()
