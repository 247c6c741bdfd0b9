"""Soak benchmark for tracejudge (``make bench-soak``): a fixed load for a long time, does anything grow?

One ``tracejudge run`` in a fresh temporary data dir under a fixed ``--rate`` (5,000 spans/s) for
``--duration`` (600 s) from the ingest benchmark's clients (``bench/ingest.py``, ``bench/loadgen.py``), with
``--rules`` (20) rules: ``--rules`` - 1 of the rules benchmark's code-scorer rules (``bench/rules.py``
``make_rules``) and one trace-scope rule with an LLM judge against the fake LLM server
(``tests/fakes/llm_server.py``, ``--latency`` s per call) and a code scorer (``bench/judges.py``'s connection,
rule and phase).

Every ``--soak-interval`` s (10) the ``SoakSampler`` reads the service's process tree from ``/proc`` (RSS, open
file descriptors, threads: psutil), its ``/metrics`` (write-ahead-log backlog bytes, open trace windows), the
write-ahead log's files on disk and ClickHouse's active parts (``system.parts`` through the SQL API). The report
is a table of each minute's mean, and a verdict per figure: **flat** when every minute after the first
``--warmup-min`` (2) is within ``--flat-pct`` (10 %) of the first of them, or within the figure's absolute slack
(``SLACK``: a few descriptors, threads or parts, a few MB of log, are noise, not growth).

No loss, no duplicates: the spans of the load stored, ``count()`` and ``uniqExact(TraceId, SpanId)``, against
the spans the clients had acknowledged (the ingest benchmark's check, judge spans left out; ``otel_traces`` is a
plain MergeTree, so FINAL would not collapse anything), and the score rows' ``count()`` against
``uniqExact(ScoreId)`` and ``count() FROM scores FINAL`` (a ReplacingMergeTree). Exit status 0 when the run lost nothing, duplicated nothing and
every figure was flat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import common, judges, rules
from bench.common import MB, fmt, markdown_table
from bench.metrics import metric_sum, scrape
from bench.phase import phase_options
from bench.phase import run as run_phase
from bench.sampling import Periodic, TreeSampler
from bench.service import FakeLLM, ManagedServer, sql_row, tracejudge_cmd

# (column, key, format, absolute slack under which a change is noise)
FIGURES: tuple[tuple[str, str, str, float], ...] = (
    ("RSS MB", "rss_mb", ",.0f", 0.0),
    ("open fds", "fds", ",.0f", 8.0),
    ("threads", "threads", ",.0f", 4.0),
    ("WAL backlog MB", "wal_backlog_mb", ",.1f", 16.0),
    ("WAL on disk MB", "wal_disk_mb", ",.1f", 16.0),
    ("active parts", "parts", ",.0f", 10.0),
    ("open traces", "open_traces", ",.0f", 500.0),
    ("flow behind (traces)", "flow_behind", ",.0f", 500.0),
)


LOAD_SPANS = f"ScopeName != '{judges.JUDGE_SCOPE}'"


def thread_names(pid: int) -> Counter[str]:
    """Threads of a process by name (``/proc/PID/task/*/comm``), digits folded: what a thread count is made of."""
    out: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[re.sub(r"\d+", "N", f.read().strip())] += 1
    return out


def data_dir_of(server: ManagedServer) -> Path:
    return Path(server.cmd[server.cmd.index("--data-dir") + 1])


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return total


class SoakSampler(Periodic):
    """Every ``interval`` s: RSS, open fds and threads of the service's process tree, the WAL's backlog
    (metric) and bytes on disk, open trace windows, ClickHouse's active parts."""

    def __init__(self, server: ManagedServer, t0: float, interval: float) -> None:
        super().__init__(interval, start_at=t0)
        assert server.proc is not None
        self.api, self.t0 = server.api, t0
        self.wal_dir = data_dir_of(server) / "wal"
        self.tree = TreeSampler(server.proc.pid, interval)
        self.points: list[dict[str, Any]] = []

    def _proc_figures(self) -> dict[str, Any]:
        ps = self.tree.psutil
        fds = threads = 0
        names: Counter[str] = Counter()
        for p in [self.tree.root, *self.tree.root.children(recursive=True)]:
            with contextlib.suppress(ps.Error):
                fds += p.num_fds()
                threads += p.num_threads()
                names.update(thread_names(p.pid))
        self.tree.sample()
        return {
            "rss_mb": self.tree.samples[-1][1] / MB,
            "fds": fds,
            "threads": threads,
            "thread_names": names,
        }

    def sample(self) -> None:
        point: dict[str, Any] = {"t": round(time.time() - self.t0, 1)}
        try:
            point.update(self._proc_figures())
            point["wal_disk_mb"] = dir_bytes(self.wal_dir) / MB
            m = scrape(self.api)
            point["wal_backlog_mb"] = metric_sum(m, "tracejudge_wal_backlog_bytes") / MB
            point["open_traces"] = metric_sum(m, "tracejudge_window_open_traces")
            point["parts"] = sql_row(self.api, "SELECT count() FROM system.parts WHERE active", 30)[0]
            # acknowledged traces the trace windows have not closed yet (each loadgen trace is in one request)
            stored = sql_row(self.api, f"SELECT uniqExact(TraceId) FROM otel_traces WHERE {LOAD_SPANS}", 30)[
                0
            ]
            point["flow_behind"] = stored - metric_sum(m, "tracejudge_window_closed_traces_total")
        except Exception as e:
            self.note(e)
        self.points.append(point)


def by_minute(points: list[dict[str, Any]], duration: float) -> list[dict[str, Any]]:
    """Each whole minute of load: the mean of every figure sampled in it."""
    out = []
    for minute in range(int(duration // 60)):
        inside = [p for p in points if minute * 60 <= p["t"] < (minute + 1) * 60]
        row: dict[str, Any] = {"minute": minute + 1, "samples": len(inside)}
        for _, key, _, _ in FIGURES:
            vals = [float(p[key]) for p in inside if key in p]
            row[key] = sum(vals) / len(vals) if vals else math.nan
        out.append(row)
    return out


def flatness(minutes: list[dict[str, Any]], warmup: int, pct: float) -> dict[str, dict[str, Any]]:
    """Per figure: the first minute after ``warmup``, the largest deviation from it after, and whether that
    is within ``pct`` % of it or the figure's absolute slack."""
    out: dict[str, dict[str, Any]] = {}
    after = minutes[warmup:]
    for _, key, _, slack in FIGURES:
        vals = [m[key] for m in after if not math.isnan(m[key])]
        if len(vals) < 2:
            out[key] = {"flat": None}
            continue
        ref = vals[0]
        dev = max(abs(v - ref) for v in vals[1:])
        flat = dev <= max(abs(ref) * pct / 100, slack)
        out[key] = {
            "ref": ref,
            "max_dev": dev,
            "max_dev_pct": dev / ref * 100 if ref else math.nan,
            "flat": flat,
        }
    return out


class SoakPhase(judges.JudgePhase):
    """The judge phase plus the ``SoakSampler`` during the load, and the FINAL counts after it."""

    soak: SoakSampler | None = None

    def on_load_start(self, server: ManagedServer, t0: float) -> None:
        super().on_load_start(server, t0)
        self.soak = SoakSampler(server, t0, self.args.soak_interval)
        self.soak.start()

    def after_load(self, server: ManagedServer, result: dict[str, Any]) -> None:
        self.stop_soak()
        super().after_load(server, result)
        # scores is a ReplacingMergeTree: FINAL collapses rows stored twice (otel_traces is a plain MergeTree,
        # where the ingest check's count() == uniqExact(TraceId, SpanId) is the duplicate test)
        try:
            self.extra["scores_final"] = sql_row(server.api, "SELECT count() FROM scores FINAL", 300)[0]
        except Exception as e:
            self.extra["scores_final_error"] = f"{type(e).__name__}: {e}"[:300]

    def finish(self) -> None:
        super().finish()
        self.stop_soak()

    def stop_soak(self) -> None:
        if self.soak is None or "soak_points" in self.extra:
            return
        self.soak.stop()
        self.extra["soak_points"] = self.soak.points
        self.extra["soak_errors"] = self.soak.errors


def service_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "TRACEJUDGE_WINDOWS__SETTLE_S": f"{args.settle_s:g}",
        "TRACEJUDGE_INGEST__PROJECT_KEYS": json.dumps(["deployment.environment"]),  # every span in 'bench'
        "TRACEJUDGE_API__SQL_MAX_EXECUTION_S": "300",  # the FINAL count and the report's joins
        judges.KEY_ENV: "not-a-secret",
    }
    return common.service_env(env, args.env)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"tj-bench-soak-llm-{os.getpid()}.log"
    fake = FakeLLM(args.latency, log)
    try:
        fake.start()
        conns = judges.make_connections(args, fake)
        rule_list = rules.make_rules(args.rules - 1, (rules.SINGLE_PROJECT,), args.sampling_rate)
        rule_list += judges.make_judge_rules(conns, args.judge_sampling_rate)
        phase = SoakPhase(phase_options(args, args.duration), rule_list, args.duration, fake, conns)
        label = f"soak ({args.rate:,.0f} spans/s, {len(rule_list)} rules)"
        result = run_phase(phase, tracejudge_cmd(args), label, service_env(args), span_filter=LOAD_SPANS)
    finally:
        fake.stop()
        with contextlib.suppress(OSError):
            log.unlink()
    return result, rule_list


def verdict(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    minutes = by_minute(result.get("soak_points", []), args.duration)
    flat = flatness(minutes, args.warmup_min, args.flat_pct)
    acked = int(result.get("spans_acked", -1))
    out: dict[str, Any] = {
        "minutes": minutes,
        "flat": flat,
        "spans_acked": acked,
        "count": result.get("count"),
        "uniq": result.get("uniq"),
        "scores_final": result.get("scores_final"),
        "scores_stored": result.get("scores_stored"),
        "scores_unique": result.get("scores_unique"),
    }
    out["no_loss_no_duplicates"] = bool(
        result.get("check") == "OK"
        and out["count"] == acked
        and out["scores_stored"] == out["scores_unique"] == out["scores_final"]
    )
    out["all_flat"] = all(f["flat"] for f in flat.values())
    return out


def render(v: dict[str, Any]) -> str:
    cols = ["minute", *(c for c, _, _, _ in FIGURES)]
    rows = [[str(m["minute"]), *(fmt(m[k], f) for _, k, f, _ in FIGURES)] for m in v["minutes"]]
    flat_row = ["flat?"]
    for _, key, _, _ in FIGURES:
        f = v["flat"][key]
        if f["flat"] is None:
            flat_row.append("-")
        else:
            flat_row.append(f"{'yes' if f['flat'] else 'NO'} ({f['max_dev_pct']:+.1f} %)")
    table = markdown_table(cols, [*rows, flat_row])
    counts = (
        f"spans acknowledged {v['spans_acked']:,}; stored count() {v['count']}, uniqExact {v['uniq']}, "
        f"score rows {v['scores_stored']} (unique {v['scores_unique']}, FINAL {v['scores_final']}); "
        f"no loss, no duplicates: {v['no_loss_no_duplicates']}; all flat: {v['all_flat']}"
    )
    return f"{table}\n\n{counts}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_load_arguments(p, duration=600.0)
    common.add_phase_arguments(p, "soak", skip_help=argparse.SUPPRESS, close_wait_what="windows and judges")
    p.set_defaults(rate=5000.0, flat_pct=10.0, skip_baseline=True)
    p.add_argument("--rules", type=int, default=20, help="rules, the last with the judge (default 20)")
    p.add_argument("--sampling-rate", type=float, default=0.1, help="the code rules' sampling_rate (0.1)")
    p.add_argument("--judge-sampling-rate", type=float, default=0.02, help="the judge rule's (0.02)")
    p.add_argument("--latency", type=float, default=1.0, help="the fake LLM server's latency, s (1)")
    p.add_argument("--judge-timeout", type=float, default=60.0, help="the connection's timeout_s (60)")
    p.add_argument("--soak-interval", type=float, default=10.0, help="seconds between soak samples (10)")
    p.add_argument("--warmup-min", type=int, default=2, help="minutes before the figures must be flat (2)")
    p.add_argument("--flight-interval", type=float, default=5.0, help="fake server sampling interval, s (5)")
    p.set_defaults(connections=1, max_concurrency=200, protocol="chat_completions")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    common.interrupt_on_sigterm()
    try:
        result, rule_list = run(args)
    except KeyboardInterrupt:
        print("interrupted: every started process was stopped", file=sys.stderr)
        return 130
    v = verdict(args, result)
    print()
    print(render(v))
    rules.print_details(result)
    points = [p for p in result.get("soak_points", []) if p.get("thread_names")]
    if points:
        first, last = points[0]["thread_names"], points[-1]["thread_names"]
        grew = {k: (first.get(k, 0), v) for k, v in last.items() if v != first.get(k, 0)}
        print(f"   threads by name that changed, first -> last sample: {grew}")
    if result.get("soak_errors"):
        print(f"   soak sampler errors: {result['soak_errors']}")
    if args.json_out:
        common.write_json(
            args.json_out, {"argv": sys.argv, "rules": rule_list, "result": result, "verdict": v}
        )
    ok = "error" not in result and v["no_loss_no_duplicates"] and v["all_flat"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
