"""Sampling the service during a phase of ``bench/rules.py`` or ``bench/judges.py``: ``Monitor`` (RSS, CPU,
trace windows, score rows, every ``--sample-interval`` s), ``Profiler`` (py-spy, summarised by function) and
``summarize_series`` (first vs last minute, trends, whether RSS is flat)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import MB
from bench.metrics import metric_sum, scrape
from bench.sampling import Periodic, TreeSampler
from bench.service import ManagedServer, sql_row


class Monitor(Periodic):
    """Every ``interval`` s: RSS of the service process tree (``TreeSampler``) and of the main
    process, open trace windows, closed windows, score rows written (metric) and stored (SQL)."""

    def __init__(self, server: ManagedServer, t0: float, interval: float, count_scores: bool) -> None:
        super().__init__(interval, start_at=t0)
        assert server.proc is not None
        self.server = server
        self.t0 = t0
        self.count_scores = count_scores
        self.tree = TreeSampler(server.proc.pid, interval)
        self.series: list[dict[str, Any]] = []
        self.ncpu = self.tree.psutil.cpu_count() or 1
        self.tree.psutil.cpu_percent(interval=None)
        self._last_cpu: tuple[float, float] | None = None

    def sample(self) -> None:
        t = time.time()
        point: dict[str, Any] = {"t": round(t - self.t0, 2)}
        n = len(self.tree.samples)
        self.tree.sample()
        if len(self.tree.samples) > n:
            point["rss_mb"] = round(self.tree.samples[-1][1] / MB, 1)
        with contextlib.suppress(Exception):
            point["main_rss_mb"] = round(self.tree.root.memory_info().rss / MB, 1)
        # machine-wide CPU busy since the last sample (2 cores = 200 %) and the service tree's share of it:
        # the rest is the load generator and anything else running (noise)
        point["sys_busy_pct"] = round(self.tree.psutil.cpu_percent(interval=None) * self.ncpu, 1)
        cpu = self.tree.cpu_s
        if self._last_cpu is not None:
            point["service_cpu_pct"] = round(
                (cpu - self._last_cpu[1]) / max(t - self._last_cpu[0], 1e-9) * 100, 1
            )
        self._last_cpu = (t, cpu)
        try:
            m = scrape(self.server.api)
            point["open_traces"] = metric_sum(m, "tracejudge_window_open_traces")
            point["closed_traces"] = metric_sum(m, "tracejudge_window_closed_traces_total")
            point["score_rows_metric"] = metric_sum(m, "tracejudge_rule_scores_total")
            point["wal_backlog_mb"] = round(metric_sum(m, "tracejudge_wal_backlog_bytes") / MB, 1)
        except Exception as e:
            self.note(e)
        if self.count_scores:
            try:
                point["scores"] = int(sql_row(self.server.api, "SELECT count() FROM scores", 10)[0])
            except Exception as e:
                self.note(e)
        self.series.append(point)


class Profiler(threading.Thread):
    """``py-spy record`` of the service's main process for ``--py-spy-s`` seconds, ``--py-spy-delay`` s into
    the load (non-blocking sampling: the service is not paused); summarised by function."""

    def __init__(self, pid: int, args: argparse.Namespace, out: Path) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.delay = args.py_spy_delay
        self.seconds = args.py_spy_s
        self.idle = args.py_spy_idle
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self._cancel = threading.Event()

    def run(self) -> None:
        if self._cancel.wait(self.delay):
            return
        exe = Path(sys.executable).parent / "py-spy"
        cmd = [str(exe) if exe.exists() else "py-spy", "record", "--pid", str(self.pid), "--duration",
               f"{self.seconds:g}", "--rate", "100", "--format", "raw", "--nonblocking", "--threads",
               "--output", str(self.out), *(["--idle"] if self.idle else [])]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.seconds + 60)

    def finish(self) -> dict[str, Any]:
        self._cancel.set()
        self.join(timeout=self.seconds + 90)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            if self.proc.poll() is None:
                self.proc.kill()
        return summarize_profile(self.out)


_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive samples by function (``fn (file)``), per thread, from py-spy's raw output."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return {"error": f"no profile: {e}"}
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    flow_incl: dict[str, int] = {}
    flow_self: dict[str, int] = {}
    flow_total = 0
    total = 0
    for line in lines:
        stack, _, n_text = line.rpartition(" ")
        try:
            n = int(n_text)
        except ValueError:
            continue
        frames = stack.split(";")
        total += n
        thread = frames[0] if frames and frames[0].startswith("thread") else "?"
        threads[thread] = threads.get(thread, 0) + n
        names = []
        for f in frames[1:] if thread != "?" else frames:
            m = _FRAME.match(f.strip())
            names.append(
                f"{m.group('fn')} ({'/'.join(Path(m.group('file')).parts[-2:])})" if m else f.strip()
            )
        if names:
            self_t[names[-1]] = self_t.get(names[-1], 0) + n
        for name in set(names):
            incl[name] = incl.get(name, 0) + n
        if "bytewax-flow" in thread:  # the Bytewax worker: windows, rules, scorers and both sinks
            flow_total += n
            if names:
                flow_self[names[-1]] = flow_self.get(names[-1], 0) + n
            for name in set(names):
                flow_incl[name] = flow_incl.get(name, 0) + n

    def share(d: dict[str, int], of: int) -> list[tuple[str, float]]:
        return [(k, round(v / max(of, 1), 4)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"file": str(path), "samples": total, "threads": share(threads, total),
            "flow_thread_samples": flow_total, "flow_thread_self": share(flow_self, flow_total),
            "flow_thread_inclusive": share(flow_incl, flow_total), "self": share(self_t, total),
            "inclusive": share(incl, total)}  # fmt: skip


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (t s, y) per minute and its standard error."""
    n = len(points)
    if n < 3:
        return math.nan, math.nan
    mt = _mean([t for t, _ in points])
    my = _mean([y for _, y in points])
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return math.nan, math.nan
    b = sum((t - mt) * (y - my) for t, y in points) / den
    resid = sum((y - my - b * (t - mt)) ** 2 for t, y in points)
    return b * 60.0, math.sqrt(resid / (n - 2) / den) * 60.0


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    return _fit(points)[0]


def summarize_series(series: list[dict[str, Any]], duration: float, flat_pct: float) -> dict[str, Any]:
    """RSS and windows over the load (samples with 0 <= t <= duration)."""
    load = [p for p in series if 0 <= p["t"] <= duration + 0.5]
    win = min(60.0, duration / 3)

    def first(key: str) -> float:
        return _mean([p[key] for p in load if key in p and p["t"] <= win])

    def last(key: str) -> float:
        return _mean([p[key] for p in load if key in p and p["t"] >= duration - win])

    rss = [(p["t"], p["rss_mb"]) for p in load if "rss_mb" in p]
    after_warm = [(t, y) for t, y in rss if t >= win]
    out: dict[str, Any] = {
        "window_s": win,
        "samples": len(load),
        "rss_first_min_mb": first("rss_mb"),
        "rss_last_min_mb": last("rss_mb"),
        "rss_max_mb": max((y for _, y in rss), default=math.nan),
        "rss_slope_mb_per_min": _slope_per_min(rss),
        "rss_slope_after_first_min_mb_per_min": _fit(after_warm)[0],
        "rss_slope_after_first_min_se": _fit(after_warm)[1],
        "main_rss_first_min_mb": first("main_rss_mb"),
        "main_rss_last_min_mb": last("main_rss_mb"),
        "main_rss_slope_after_first_min_mb_per_min": _slope_per_min(
            [(p["t"], p["main_rss_mb"]) for p in load if "main_rss_mb" in p and p["t"] >= win]
        ),
    }
    # Flat: the last minute's mean within flat_pct of the first minute's, and the trend after the first
    # minute, extrapolated over the rest of the run, also within flat_pct (the 5 s samples swing by
    # +-150 MB with chDB's insert buffers, so single samples and the maximum say little).
    slope, first_mean = out["rss_slope_after_first_min_mb_per_min"], out["rss_first_min_mb"]
    growth = slope * max(duration - win, 0.0) / 60.0
    out["rss_growth_after_first_min_mb"] = growth
    out["rss_last_vs_first_pct"] = (out["rss_last_min_mb"] / first_mean - 1) * 100 if first_mean else math.nan
    out["rss_flat"] = bool(  # one-sided: memory that shrinks is not a leak
        slope == slope and out["rss_last_vs_first_pct"] <= flat_pct and growth <= flat_pct / 100 * first_mean
    )
    out["sys_busy_pct_mean"] = _mean([p["sys_busy_pct"] for p in load if "sys_busy_pct" in p and p["t"] > 0])
    out["service_cpu_pct_mean"] = _mean(
        [p["service_cpu_pct"] for p in load if "service_cpu_pct" in p and p["t"] > 0]
    )
    closed = [(p["t"], p["closed_traces"]) for p in load if "closed_traces" in p and p["t"] >= win]
    if len(closed) >= 2:
        out["traces_closed_per_s_steady"] = (closed[-1][1] - closed[0][1]) / max(
            closed[-1][0] - closed[0][0], 1e-9
        )
    opens = [(p["t"], p["open_traces"]) for p in load if "open_traces" in p]
    if opens:
        second = _mean([y for t, y in opens if win <= t < 2 * win]) if duration >= 3 * win else math.nan
        out.update(
            {
                "open_traces_max": max(y for _, y in opens),
                "open_traces_first_min_mean": first("open_traces"),
                "open_traces_second_min_mean": second,
                "open_traces_last_min_mean": last("open_traces"),
                "open_traces_slope_after_first_min_per_min": _slope_per_min(
                    [(t, y) for t, y in opens if t >= win]
                ),
            }
        )
    scores = [(p["t"], p["scores"]) for p in series if "scores" in p]
    if len(scores) >= 2:
        rates = [
            ((t1 + t0) / 2, (c1 - c0) / max(t1 - t0, 1e-9))
            for (t0, c0), (t1, c1) in itertools.pairwise(scores)
            if t0 >= 10 and t1 <= duration + 0.5
        ]
        out["score_rows_per_s_min_interval"] = min((r for _, r in rates), default=math.nan)
        out["score_rows_per_s_max_interval"] = max((r for _, r in rates), default=math.nan)
        out["scores_arrive_every_interval"] = bool(rates) and all(r > 0 for _, r in rates)
        in_load = [(t, c) for t, c in scores if t <= duration + 0.5]
        warm = [(t, c) for t, c in in_load if t >= win]
        if len(warm) >= 2:
            out["score_rows_per_s_steady"] = (warm[-1][1] - warm[0][1]) / max(warm[-1][0] - warm[0][0], 1e-9)
    return out
