"""Arize Phoenix as the ingest peer: same generator, same metrics as ``bench/ingest.py``.

* Creates ``bench/peers/.venv-phoenix`` (gitignored) with ``pip install arize-phoenix``
  if it is missing (``PHOENIX_PIP_SPEC`` overrides the requirement, e.g.
  ``arize-phoenix==20.26.1``).
* Starts ``phoenix serve`` with ``PHOENIX_WORKING_DIR`` in a temp dir (default SQLite
  backend ``phoenix.db`` there), ``PHOENIX_HOST=127.0.0.1``, free loopback ports for
  HTTP (``PHOENIX_PORT``) and gRPC (``PHOENIX_GRPC_PORT``), telemetry off.
  Note: Phoenix's gRPC server binds ``[::]:PORT`` whatever ``PHOENIX_HOST`` says; the
  benchmark only ever connects to 127.0.0.1.
* Runs ``loadgen`` against OTLP/HTTP ``/v1/traces`` (protobuf; Phoenix has no OTLP/JSON)
  and OTLP/gRPC, polls ``SELECT count(*) FROM spans`` in the SQLite file (read-only)
  every second, waits up to ``--phoenix-drain-timeout`` s for persistence, checks
  count == distinct span ids == acknowledged, samples peak RSS, stops Phoenix.

Run alone:   .venv/bin/python -m bench.peers.phoenix [ingest.py options, e.g. --phoenix-duration 30]
From ingest: .venv/bin/python -m bench.ingest --with-phoenix
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import ingest, loadgen

PEERS_DIR = Path(__file__).resolve().parent

VENV = PEERS_DIR / ".venv-phoenix"
HOST = "127.0.0.1"


def _base_python() -> str:
    """The interpreter to build the Phoenix venv from (the base of the current venv)."""
    for cand in (
        getattr(sys, "_base_executable", None),
        str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"),
        shutil.which("python3.11"),
        shutil.which("python3"),
    ):
        if cand and Path(cand).exists():
            return cand
    return sys.executable


def ensure_venv(log: Path | None = None) -> Path:
    """Create the Phoenix venv with ``pip install arize-phoenix`` unless it already works."""
    phoenix_bin = VENV / "bin" / "phoenix"
    if phoenix_bin.exists():
        return phoenix_bin
    spec = os.environ.get("PHOENIX_PIP_SPEC", "arize-phoenix")
    print(f"[phoenix] creating {VENV} and installing {spec} (takes a few minutes)", flush=True)
    subprocess.run([_base_python(), "-m", "venv", str(VENV)], check=True, timeout=600)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", spec],
            check=True,
            timeout=1800,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if not phoenix_bin.exists():
        raise RuntimeError(f"pip install {spec} did not provide {phoenix_bin}")
    return phoenix_bin


def phoenix_version() -> str:
    try:
        out = subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('arize-phoenix'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or "?"
    except Exception:
        return "?"


class PhoenixServer:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.ports = {"http": loadgen.free_port(), "grpc": loadgen.free_port()}
        self.db = work / "phoenix.db"
        self.log_path = work / "phoenix.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = float("nan")
        self.shutdown_s = float("nan")
        self.exit_code: int | None = None

    def start(self, phoenix_bin: Path, ready_timeout: float = 180.0) -> None:
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": str(self.work),
            "PHOENIX_HOST": HOST,
            "PHOENIX_PORT": str(self.ports["http"]),
            "PHOENIX_GRPC_PORT": str(self.ports["grpc"]),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        for k in ("PHOENIX_SQL_DATABASE_URL", "PHOENIX_POSTGRES_HOST", "PHOENIX_COLLECTOR_ENDPOINT"):
            env.pop(k, None)
        t0 = time.time()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [str(phoenix_bin), "serve"],
            env=env,
            cwd=str(self.work),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = t0 + ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"phoenix exited with {self.proc.returncode}; log:\n{self.tail()}")
            if self._http_ready() and self._grpc_ready():
                self.startup_s = time.time() - t0
                return
            time.sleep(0.5)
        raise RuntimeError(f"phoenix not ready after {ready_timeout:.0f} s; log:\n{self.tail()}")

    def _http_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.ports['http']}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _grpc_ready(self) -> bool:
        import socket

        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((HOST, self.ports["grpc"])) == 0

    def count(self) -> int:
        return self.query("SELECT count(*) FROM spans")[0]

    def query(self, q: str) -> list[int]:
        if not self.db.exists():
            return [0]
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            row = con.execute(q).fetchone()
            return [int(x) for x in row]
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return [0]
            raise
        finally:
            con.close()

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            t0 = time.time()
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)  # uvicorn's graceful stop
            try:
                p.wait(timeout=timeout)
                self.shutdown_s = time.time() - t0
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)  # our own process group (start_new_session)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)
        self.exit_code = p.returncode
        self.proc = None
        with contextlib.suppress(Exception):
            self._log.close()


def bench_phoenix(args: argparse.Namespace) -> dict[str, Any]:
    """One Phoenix run with the ingest.py options (``--phoenix-*`` for duration, rate, drain)."""
    spec = loadgen.PayloadSpec(
        traces_per_request=args.traces_per_request, spans_per_trace=args.spans_per_trace
    )
    mix = {"grpc": args.grpc, "http": args.http + args.http_json}  # Phoenix takes protobuf only
    mix = {k: v for k, v in mix.items() if v > 0}
    duration = args.phoenix_duration
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-"))
    server = PhoenixServer(work)
    margs = argparse.Namespace(**{**vars(args), "rate": args.phoenix_rate})
    result: dict[str, Any] = {
        "target": "phoenix",
        "mix": ingest.mix_label(mix, margs),
        "duration_s": duration,
        "spans_per_request": spec.spans_per_request,
    }
    sampler = poller = None
    try:
        phoenix_bin = ensure_venv(work / "pip.log")
        version = phoenix_version()
        result["target"] = f"phoenix {version}"
        result["command"] = (
            f"PHOENIX_WORKING_DIR={work} PHOENIX_HOST={HOST} PHOENIX_PORT={server.ports['http']} "
            f"PHOENIX_GRPC_PORT={server.ports['grpc']} PHOENIX_TELEMETRY_ENABLED=false {phoenix_bin} serve"
        )
        print(f"[phoenix] starting: {result['command']}", flush=True)
        server.start(phoenix_bin)
        assert server.proc is not None
        print(f"[phoenix] ready in {server.startup_s:.1f} s (ports {server.ports})", flush=True)
        result["startup_s"] = server.startup_s
        sampler = ingest.TreeSampler(server.proc.pid)
        sampler.start()
        cpu0 = sampler.cpu_s
        threads0 = ingest.thread_cpu_by_name(server.proc.pid)
        poller = ingest.CountPoller(server.count)
        poller.poll_once()
        base = poller.last()

        def on_start(t0: float) -> None:
            poller.start()

        stats, t0, t_clients_end = loadgen.run_clients(
            mix,
            HOST,
            server.ports,
            spec,
            duration,
            rate=args.phoenix_rate,
            concurrency=args.concurrency,
            templates=args.templates,
            use_gzip=args.gzip,
            timeout=args.request_timeout,
            on_start=on_start,
        )
        acked = stats["spans_acked"]
        print(
            f"[phoenix] clients done: acked {acked} spans in {duration:.0f} s, throttled {stats['throttled']}, "
            f"errors {stats['errors']}; waiting up to {args.phoenix_drain_timeout:.0f} s for persistence",
            flush=True,
        )
        t_wait = time.time()
        ingest.wait_drained(poller, base + acked, args.phoenix_drain_timeout, max(args.stall_timeout, 60.0))
        poller.stop()
        poller.poll_once()
        result["observed_drain_s"] = time.time() - t_wait
        sampler.sample()
        result["server_cpu_s"] = sampler.cpu_s - cpu0
        result["server_cpu_by_thread_s"] = ingest.cpu_by_thread_delta(
            threads0, ingest.thread_cpu_by_name(server.proc.pid)
        )
        try:
            cnt, uniq = server.query("SELECT count(*), count(DISTINCT span_id) FROM spans")
        except Exception as e:
            cnt = uniq = -1
            result["verify_error"] = f"{type(e).__name__}: {e}"
        sampler.stop()
        result.update(ingest.persisted_metrics(poller, t0, duration, base + acked))
        check = ingest.check_label(cnt, uniq, base + acked)
        if check.startswith("FAIL") and cnt < base + acked and not result["drained"]:
            check = f"not drained ({cnt:,} of {base + acked:,} after {result['observed_drain_s']:.0f} s)"
        result.update(
            {
                "accepted_sps": acked / duration,
                "spans_acked": acked,
                "count": cnt,
                "uniq": uniq,
                "check": check,
                "peak_rss_mb": sampler.peak_rss / 2**20,
                "peak_main_rss_mb": sampler.peak_root_rss / 2**20,
                "client_wall_s": t_clients_end - t0,
                "count_poll_errors": poller.errors,
                **{k: v for k, v in stats.items() if k != "acked_by_second"},
                "acked_by_second": stats["acked_by_second"],
                "note": "SQLite backend; persisted spans/s = spans visible in phoenix.db per second "
                "from first send to the last count increase within the drain window",
            }
        )
        with contextlib.suppress(OSError):
            result["data_dir_mb"] = (
                sum(f.stat().st_size for f in work.rglob("phoenix.db*") if f.is_file()) / 2**20
            )
    except BaseException as e:
        result["error"] = f"{type(e).__name__}: {e}"
        if not isinstance(e, Exception):
            raise
    finally:
        if poller is not None and poller.is_alive():
            poller.stop()
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        server.stop()
        result["shutdown_s"] = server.shutdown_s
        result["server_log_tail"] = server.tail(20)
        if args.keep_data:
            result["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    sys.exit(ingest.main(["--skip-tracejudge", "--with-phoenix", *sys.argv[1:]]))
