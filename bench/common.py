"""What the benchmarks share: their options, one load run's figures, the report's formatting, the results JSON.

* options: ``add_load_arguments`` (the load, the service and the output: ``bench/ingest.py``, ``rules.py``,
  ``judges.py``), ``add_phase_arguments`` (the two-phase benchmarks, ``rules.py`` and ``judges.py``),
  ``add_service_arguments`` (the service and the output of ``scores.py`` and ``rewind.py``),
  ``service_env`` (``--env KEY=VALUE``), ``interrupt_on_sigterm``;
* a load run: ``run_load`` (``bench/loadgen.py``'s clients with the options), ``load_figures`` (what the
  clients and the samplers measured), ``count_unique`` (the loss/duplicate query), ``errors_into``, ``files_mb``, ``keep_or_remove``;
* the report: ``fmt`` (numbers, '-' when missing), ``markdown_table``, ``summary_line``, ``write_json``,
  ``git_state``.

The processes (the service, the fake LLM server) are in ``bench/service.py``, the samplers in
``bench/sampling.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.sampling import CountPoller, TreeSampler
from bench.service import HOST, REPO_DIR

MB = 2**20

# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


# fmt: off
def add_load_arguments(p: argparse.ArgumentParser, duration: float = 60.0) -> None:
    """The load, service and output options ``bench_tracejudge`` reads (``ingest.py``, ``rules.py``,
    ``judges.py``)."""
    p.add_argument("--duration", type=float, default=duration, help=f"seconds of load (default {duration:g})")
    p.add_argument("--grpc", type=int, default=2, help="gRPC client processes (default 2)")
    p.add_argument("--http", type=int, default=2, help="HTTP protobuf client processes (default 2)")
    p.add_argument("--http-json", type=int, default=0, help="HTTP OTLP/JSON client processes (default 0)")
    p.add_argument("--concurrency", type=int, default=2,
                   help="connections (threads, requests in flight) per client process (default 2)")
    p.add_argument("--rate", type=float, default=0.0, help="total target spans/s (default: as fast as allowed)")
    p.add_argument("--traces-per-request", type=int, default=50)
    p.add_argument("--spans-per-trace", type=int, default=10)
    p.add_argument("--templates", type=int, default=4, help="distinct pre-encoded payloads per client process")
    p.add_argument("--gzip", action="store_true", help="gzip request bodies (HTTP Content-Encoding, gRPC gzip)")
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--query-timeout", type=float, default=10.0, help="timeout of each count poll")
    p.add_argument("--drain-timeout", type=float, default=180.0, help="max wait for persistence after the load")
    p.add_argument("--stall-timeout", type=float, default=30.0, help="stop waiting if the count is flat this long")
    p.add_argument("--tracejudge-cmd", default=None,
                   help="command that runs tracejudge (default: venv's tracejudge)")
    p.add_argument("--server-arg", action="append", help="extra argument for 'tracejudge run' (repeatable)")
    p.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    p.add_argument("--json-out", default=None, help="write all results as JSON to this file")


def add_phase_arguments(p: argparse.ArgumentParser, phase: str, skip_help: str, close_wait_what: str) -> None:
    """The options of a benchmark with a baseline phase and a measured ``phase`` (``rules.py``, ``judges.py``):
    what ``bench.phase.Phase`` reads."""
    p.add_argument("--baseline-duration", type=float, default=None,
                   help="seconds of load of the baseline phase (default: --duration)")
    p.add_argument("--skip-baseline", action="store_true", help=skip_help)
    p.add_argument("--settle-s", type=float, default=2.0,
                   help="windows.settle_s of the service, subtracted from latencies (default 2)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the service in both phases (repeatable), e.g. "
                   "TRACEJUDGE_WINDOWS__REMEMBER_CLOSED=100000")
    p.add_argument("--sample-interval", type=float, default=5.0, help="RSS/metrics sampling interval (5 s)")
    p.add_argument("--close-wait", type=float, default=600.0,
                   help=f"max wait for {close_wait_what} after the load (600 s)")
    p.add_argument("--e2e-sample", type=int, default=10,
                   help="ingest->first score latency over 1/N of the traces (default 10)")
    p.add_argument("--py-spy-s", type=float, default=0.0,
                   help=f"profile the service's main process with py-spy this many seconds in the {phase} phase "
                   "(0: off)")
    p.add_argument("--py-spy-delay", type=float, default=30.0, help="seconds into the load to start py-spy")
    p.add_argument("--py-spy-idle", action="store_true",
                   help="also sample threads that wait (py-spy --idle): shows what the flow waits for")
    p.add_argument("--flat-pct", type=float, default=5.0,
                   help="RSS is flat when the last minute's mean and the trend after the first minute (extrapolated "
                   "to the end) are within this %% of the first minute's mean (default 5)")
    p.set_defaults(restart_check=False)
# fmt: on


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    """The service and output options of a benchmark of one service (``scores.py``, ``rewind.py``)."""
    p.add_argument("--tracejudge-cmd", default=None, help="command that runs tracejudge (default: venv's)")
    p.add_argument("--server-arg", action="append", help="extra argument for 'tracejudge run' (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="service environment")
    p.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and log")
    p.add_argument("--json-out", default=None, help="write the results as JSON to this file")


def service_env(base: dict[str, str], pairs: Iterable[str]) -> dict[str, str]:
    """``base`` with each ``--env KEY=VALUE`` on top."""
    env = dict(base)
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"--env {kv!r}: expected KEY=VALUE")
        env[key] = value
    return env


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so every finally-block stops what it started."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def mix_from_args(args: argparse.Namespace) -> dict[str, int]:
    mix = {"grpc": args.grpc, "http": args.http, "http-json": args.http_json}
    return {k: v for k, v in mix.items() if v > 0}


def mix_label(mix: dict[str, int], args: argparse.Namespace) -> str:
    parts = [f"{n} {t}" for t, n in mix.items()]
    extra = [f"{args.concurrency} conn{'s' if args.concurrency > 1 else ''} each"]
    if args.gzip:
        extra.append("gzip")
    extra.append(f"{args.traces_per_request * args.spans_per_trace} spans/req")
    if args.rate:
        extra.append(f"rate {args.rate:g}/s")
    return " + ".join(parts) + " (" + ", ".join(extra) + ")"


# ---------------------------------------------------------------------------
# One load run
# ---------------------------------------------------------------------------


def run_load(
    args: argparse.Namespace,
    mix: dict[str, int],
    ports: dict[str, int],
    spec: loadgen.PayloadSpec,
    duration: float,
    rate: float,
    on_start: Callable[[float], None],
) -> tuple[dict[str, Any], float, float]:
    """``loadgen.run_clients`` against 127.0.0.1 with the load options: (stats, t0, clients' end)."""
    return loadgen.run_clients(mix, HOST, ports, spec, duration, rate=rate, concurrency=args.concurrency,
                               templates=args.templates, use_gzip=args.gzip, timeout=args.request_timeout,
                               on_start=on_start)  # fmt: skip


def load_figures(
    stats: dict[str, Any], duration: float, sampler: TreeSampler, poller: CountPoller, t0: float, t_end: float
) -> dict[str, Any]:
    """What the clients and the samplers measured, as result fields."""
    return {
        "accepted_sps": stats["spans_acked"] / duration,
        "spans_acked": stats["spans_acked"],
        "peak_rss_mb": sampler.peak_rss / MB,
        "peak_main_rss_mb": sampler.peak_root_rss / MB,
        "client_wall_s": t_end - t0,
        "count_poll_errors": poller.errors,
        **{k: v for k, v in stats.items() if k != "acked_by_second"},
        "acked_by_second": stats["acked_by_second"],
    }


def count_unique(query: Callable[[], list[int]], result: dict[str, Any]) -> tuple[int, int]:
    """(stored spans, unique (trace id, span id)); (-1, -1) and ``verify_error`` when the query fails."""
    try:
        cnt, uniq = query()
    except Exception as e:
        result["verify_error"] = f"{type(e).__name__}: {e}"
        return -1, -1
    return cnt, uniq


@contextlib.contextmanager
def errors_into(result: dict[str, Any]) -> Iterator[None]:
    r"""A failure of the run becomes ``result["error"]``; Ctrl-C (and other non-``Exception``\ s) is recorded and
    raised again, after the caller's clean-up."""
    try:
        yield
    except BaseException as e:
        result["error"] = f"{type(e).__name__}: {e}"
        if not isinstance(e, Exception):
            raise


def files_mb(paths: Iterable[Path]) -> float:
    """The size of the files among ``paths``, MB (nan if they cannot be read)."""
    try:
        return sum(f.stat().st_size for f in paths if f.is_file()) / MB
    except OSError:
        return math.nan


def keep_or_remove(work: Path, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """With ``--keep-data`` the work dir stays and is named in the result; otherwise it is removed."""
    if args.keep_data:
        result["work_dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def fmt(x: Any, spec: str = ",.0f") -> str:
    """A number for the report; '-' when missing (None or nan), as is when it is no number."""
    if x is None:
        return "-"
    try:
        if x != x:  # nan
            return "-"
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [list(header), ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in lines)


def summary_line(title: str, summary: dict[str, Any]) -> str:
    """``title: key value, ...`` with floats to 3 decimals."""
    items = (f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
    return f"{title}: " + ", ".join(items)


def write_json(path: str | Path, doc: dict[str, Any], indent: int = 1, announce: bool = True) -> None:
    """The results as JSON (values JSON has no type for as strings); ``announce`` prints where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=indent, default=str))
    if announce:
        print(f"results written to {path}")


def git_state() -> str:
    """The commit under test and the files that differ from it (the service runs from the working tree)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--short", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    files = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted {', '.join(files)}" if files else "")  # fmt: skip
