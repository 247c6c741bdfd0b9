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
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common, ingest, loadgen, sampling
from bench.service import HOST, LoggedServer, free_port, http_ok

PEERS_DIR = Path(__file__).resolve().parent

VENV = PEERS_DIR / ".venv-phoenix"


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


class PhoenixServer(LoggedServer):
    """``phoenix serve`` with its SQLite database in ``work``, on free loopback ports."""

    stop_signal = signal.SIGINT  # uvicorn's graceful stop
    stop_timeout = 60.0
    term_after_timeout = True

    def __init__(self, work: Path) -> None:
        super().__init__(work / "phoenix.log")
        self.work = work
        self.ports = {"http": free_port(), "grpc": free_port()}
        self.db = work / "phoenix.db"

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
        healthz = f"http://{HOST}:{self.ports['http']}/healthz"
        self.spawn([str(phoenix_bin), "serve"], env, self.work, lambda: http_ok(healthz) and self._grpc_ready(),
                   what="phoenix", timeout=ready_timeout, interval=0.5)  # fmt: skip

    def _grpc_ready(self) -> bool:
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


def bench_phoenix(args: argparse.Namespace) -> dict[str, Any]:
    """One Phoenix run with the ingest.py options (``--phoenix-*`` for duration, rate, drain)."""
    spec = loadgen.PayloadSpec(
        traces_per_request=args.traces_per_request, spans_per_trace=args.spans_per_trace
    )
    mix = {"grpc": args.grpc, "http": args.http + args.http_json}  # Phoenix takes protobuf only
    mix = {k: v for k, v in mix.items() if v > 0}
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-"))
    server = PhoenixServer(work)
    margs = argparse.Namespace(**{**vars(args), "rate": args.phoenix_rate})
    result: dict[str, Any] = {
        "target": "phoenix",
        "mix": common.mix_label(mix, margs),
        "duration_s": args.phoenix_duration,
        "spans_per_request": spec.spans_per_request,
    }
    samplers: list[sampling.TreeSampler | sampling.CountPoller] = []
    try:
        with common.errors_into(result):
            phoenix_bin = ensure_venv(work / "pip.log")
            result["target"] = f"phoenix {phoenix_version()}"
            result["command"] = (
                f"PHOENIX_WORKING_DIR={work} PHOENIX_HOST={HOST} PHOENIX_PORT={server.ports['http']} "
                f"PHOENIX_GRPC_PORT={server.ports['grpc']} PHOENIX_TELEMETRY_ENABLED=false {phoenix_bin} serve"
            )
            print(f"[phoenix] starting: {result['command']}", flush=True)
            server.start(phoenix_bin)
            print(f"[phoenix] ready in {server.startup_s:.1f} s (ports {server.ports})", flush=True)
            result["startup_s"] = server.startup_s
            result.update(_measure(args, server, mix, spec, samplers))
            result["data_dir_mb"] = common.files_mb(work.rglob("phoenix.db*"))
    finally:
        sampling.stop_threads(*samplers)
        server.stop()
        result["shutdown_s"] = server.shutdown_s
        result["server_log_tail"] = server.tail(20)
        common.keep_or_remove(work, args, result)
    return result


def _measure(
    args: argparse.Namespace,
    server: PhoenixServer,
    mix: dict[str, int],
    spec: loadgen.PayloadSpec,
    samplers: list[sampling.TreeSampler | sampling.CountPoller],
) -> dict[str, Any]:
    """The load against the running Phoenix, its draining into SQLite and the loss/duplicate check."""
    assert server.proc is not None
    duration = args.phoenix_duration
    sampler = sampling.TreeSampler(server.proc.pid)
    poller = sampling.CountPoller(server.count)
    samplers += [sampler, poller]
    sampler.start()
    cpu0 = sampler.cpu_s
    threads0 = sampling.thread_cpu_by_name(server.proc.pid)
    poller.poll_once()
    base = poller.last()
    stats, t0, t_end = common.run_load(args, mix, server.ports, spec, duration, args.phoenix_rate,
                                       lambda _t0: poller.start())  # fmt: skip
    acked = stats["spans_acked"]
    print(
        f"[phoenix] clients done: acked {acked} spans in {duration:.0f} s, throttled {stats['throttled']}, "
        f"errors {stats['errors']}; waiting up to {args.phoenix_drain_timeout:.0f} s for persistence",
        flush=True,
    )
    t_wait = time.time()
    sampling.wait_drained(poller, base + acked, args.phoenix_drain_timeout, max(args.stall_timeout, 60.0))
    poller.stop()
    poller.poll_once()
    result: dict[str, Any] = {"observed_drain_s": time.time() - t_wait}
    sampler.sample()
    result["server_cpu_s"] = sampler.cpu_s - cpu0
    result["server_cpu_by_thread_s"] = sampling.cpu_by_thread_delta(
        threads0, sampling.thread_cpu_by_name(server.proc.pid)
    )
    cnt, uniq = common.count_unique(
        lambda: server.query("SELECT count(*), count(DISTINCT span_id) FROM spans"), result
    )
    sampler.stop()
    result.update(sampling.persisted_metrics(poller, t0, duration, base + acked))
    check = ingest.check_label(cnt, uniq, base + acked)
    if check.startswith("FAIL") and cnt < base + acked and not result["drained"]:
        check = f"not drained ({cnt:,} of {base + acked:,} after {result['observed_drain_s']:.0f} s)"
    result.update(common.load_figures(stats, duration, sampler, poller, t0, t_end))
    result.update({"count": cnt, "uniq": uniq, "check": check,
                   "note": "SQLite backend; persisted spans/s = spans visible in phoenix.db per second "
                   "from first send to the last count increase within the drain window"})  # fmt: skip
    return result


if __name__ == "__main__":
    sys.exit(ingest.main(["--skip-tracejudge", "--with-phoenix", *sys.argv[1:]]))
