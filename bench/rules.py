"""Rules benchmark for tracejudge (``make bench-rules``): does the flow with 50 rules keep up with ingest?

Two phases in one invocation, each against a fresh ``tracejudge run`` in a fresh temporary data dir, driven
by the ingest benchmark's load (``bench/ingest.py`` ``bench_tracejudge``, ``bench/loadgen.py`` clients):

1. **baseline**: no rules (the scoring branch builds no spans: no project has rules);
2. **rules**: ``--rules`` (50) rules created through ``POST /api/v1/rules`` before the load: trace and span
   scope, filters over input/output/name/attributes/resource/duration_ms/is_root with LIKE/ILIKE/IN/
   BETWEEN/comparisons, ``sampling_rate`` 0.1, code scorers (contains, regex, length_between, json_valid;
   levenshtein on every 10th rule).

The load generator's spans name their project in ``service.name`` (``support-bot-0``..``3``).  By default
(``--projects single``) both phases run with ``TRACEJUDGE_INGEST__PROJECT_KEYS=["deployment.environment"]``,
so every span is in project ``bench`` and every trace meets all 50 rules; ``--projects services`` keeps the
default project keys and spreads the rules over the four service projects (~12 rules per trace).

Reported per phase: accepted and persisted spans/s (as ``bench/ingest.py``), their ratio; and for the rules
phase:

* trace close latency p50/p99 minus the settle time, from the ``tracejudge_window_close_delay_seconds``
  histogram scraped from ``/metrics`` at the end (linear interpolation inside buckets, as Prometheus'
  ``histogram_quantile``), with the bucket each quantile falls in;
* ingest -> first score latency p50/p99 (minus settle) per minute of load, by SQL over a 1/``--e2e-sample``
  sample of traces: a score row's ``Timestamp`` minus its trace's ``IngestedAt`` (when the request arrived);
  it includes the log, the record source and the windows, so it shows windows falling behind;
* RSS of the service process tree every ``--sample-interval`` (5) s over the load: first vs last minute
  mean, max, least-squares slope (MB/min, +- its standard error) after the first minute, and whether that
  is flat;
* ``tracejudge_window_open_traces`` over the load (bounded?), score rows per second (``SELECT count() FROM
  scores`` every sample; do they keep arriving?), ``tracejudge_rule_decisions_total`` summed by outcome,
  scorer errors, closed windows by reason, late spans, and WARNING/ERROR lines of the service log.

"Keeps up" = rules persisted spans/s >= (1 - ``--tolerance``) x baseline; the windows close traces as fast
as they are accepted (closed traces/s x spans per trace >= (1 - tolerance) x accepted spans/s, and every
acknowledged trace closed within settle + 10 s of the load's end); open traces bounded (last-minute mean <=
1.5 x the second minute's, nothing evicted); scores arrive in every sample interval; and the ingest -> score
p99 of the last full minute is within 2 x (+1 s) that of the first.  RSS is "flat" when the last minute's
mean and the trend after the first minute (least squares, extrapolated to the end) are both within
``--flat-pct`` (5 %) above the first minute's mean.

Everything runs on 127.0.0.1, every wait is bounded, every started process is stopped (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import common, ingest
from bench.common import fmt, markdown_table, summary_line
from bench.sampling import Periodic, TreeSampler
from bench.service import ManagedServer, http_json, sql, sql_row, tracejudge_cmd

SINGLE_PROJECT = "bench"  # every loadgen resource has deployment.environment=bench
SERVICE_PROJECTS = tuple(f"support-bot-{i}" for i in range(4))  # loadgen's service.name values
MB = common.MB

# ---------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------

# (scope, filter, span_names, root_spans). Loadgen spans: names agent.run (root), ChatCompletion (x3),
# retrieve, embedding, tool.lookup_order, rerank, guardrail.check, format_answer; attributes
# openinference.span.kind, llm.model_name, llm.provider, llm.token_count.*, session.id, user.id,
# llm.invocation_parameters, input.mime_type; input/output 500-2000 chars of words; ~5 % errors.
SELECTORS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("trace", "input ILIKE '%refund%'", (), False),
    (
        "span",
        "name = 'ChatCompletion' AND attributes['llm.model_name'] IN ('gpt-4o-mini', 'gpt-4.1')",
        (),
        False,
    ),
    ("trace", "is_root AND duration_ms BETWEEN 5000 AND 20000", (), False),
    (
        "span",
        "attributes['openinference.span.kind'] = 'LLM' AND attributes['llm.token_count.total'] > 2500",
        (),
        False,
    ),
    ("trace", "status_code = 'Error'", (), False),
    ("span", "output NOT ILIKE '%sorry%'", ("retrieve", "rerank"), False),
    ("trace", "length(output) > 1500 AND NOT is_root", (), False),
    ("span", "attributes['llm.provider'] != 'openai' AND duration_ms < 200", (), False),
    ("span", "lower(name) LIKE 'tool.%'", (), False),
    ("trace", "", (), False),
    ("span", "attributes['user.id'] LIKE 'user-1%' OR input ILIKE '%subscription%'", (), True),
    ("trace", "attributes['missing.key'] IS NULL AND name = 'format_answer'", (), False),
    (
        "span",
        "resource['service.name'] IN ('support-bot-0', 'support-bot-2') AND duration_ms >= 1000",
        (),
        False,
    ),
    (
        "trace",
        "upper(attributes['openinference.span.kind']) IN ('TOOL', 'GUARDRAIL') AND output LIKE '%order%'",
        (),
        False,
    ),
    ("span", "", ("ChatCompletion",), False),
    ("trace", "attributes['session.id'] LIKE 'sess-9%'", (), False),
    ("span", "kind = 'Client' AND duration_ms > 1000", (), False),
    ("trace", "input LIKE 'Refund%' OR input LIKE 'Payment%' OR output ILIKE '%invoice%'", (), False),
    ("span", "is_root", (), True),
    ("trace", "attributes['llm.token_count.prompt'] < 100", (), False),
    (
        "span",
        "name <> 'embedding' AND status_code != 'Error' AND length(input) BETWEEN 600 AND 900",
        (),
        False,
    ),
    ("trace", "output ILIKE '%thanks%' AND duration_ms > 100", (), False),
    (
        "span",
        "attributes['input.mime_type'] = 'text/plain' AND NOT is_root",
        ("guardrail.check", "format_answer"),
        False,
    ),
    (
        "trace",
        "service_name LIKE 'support-bot-%' AND attributes['llm.model_name'] = 'claude-sonnet-4'",
        (),
        False,
    ),
    (
        "span",
        "name IN ('retrieve', 'embedding', 'rerank') AND attributes['user.id'] NOT IN ('user-1', 'user-2')",
        (),
        False,
    ),
)

SCORER_SETS: tuple[tuple[dict[str, Any], ...], ...] = (
    (
        {
            "name": "mentions_refund",
            "function": "contains",
            "args": {"value": "refund", "case_sensitive": False},
        },
        {"name": "sane_length", "function": "length_between", "args": {"min": 100, "max": 1800}},
    ),
    (
        {
            "name": "names_an_order",
            "function": "regex",
            "args": {"pattern": r"\b(order|invoice)\s+\w+", "ignore_case": True},
        },
    ),
    (
        {"name": "is_json", "function": "json_valid", "args": {"required_keys": ["answer"]}},
        {"name": "enough_words", "function": "length_between", "args": {"min": 50, "unit": "words"}},
    ),
    (
        {
            "name": "asks_about_payment",
            "function": "contains",
            "args": {"field": "input", "value": "payment"},
        },
        {"name": "starts_capitalised", "function": "regex", "args": {"pattern": r"^[A-Z][a-z]+\b"}},
    ),
    (
        {"name": "short_name", "function": "length_between", "args": {"field": "name", "max": 40}},
        {"name": "says_thanks", "function": "contains", "args": {"value": "thanks", "case_sensitive": False}},
        {"name": "input_json", "function": "json_valid", "args": {"field": "input"}},
    ),
)

LEVENSHTEIN = {
    "name": "close_to_reference",
    "function": "levenshtein",
    "args": {
        "expected": "Thanks for your question. Your refund for the order was approved and the payment "
        "will reach your account within five business days.",
        "threshold": 0.3,
    },
}


def make_rules(
    n: int, projects: tuple[str, ...], sampling_rate: float, levenshtein_every: int = 10
) -> list[dict[str, Any]]:
    """``n`` rules cycling through the selectors and scorer sets (deterministic)."""
    rules = []
    for i in range(n):
        scope, flt, names, root = SELECTORS[i % len(SELECTORS)]
        scorers = [{"type": "code", **s} for s in SCORER_SETS[i % len(SCORER_SETS)]]
        if levenshtein_every and i % levenshtein_every == levenshtein_every - 1:
            scorers.append({"type": "code", **LEVENSHTEIN})
        rule: dict[str, Any] = {
            "name": f"bench-{i:02d}-{scope}",
            "project": projects[i % len(projects)],
            "description": f"bench/rules.py rule {i}",
            "scope": scope,
            "filter": flt,
            "sampling_rate": sampling_rate,
            "scorers": scorers,
        }
        if scope == "span":
            rule["span_names"] = list(names)
            rule["root_spans"] = root
        rules.append(rule)
    return rules


def rules_mix(rules: list[dict[str, Any]]) -> dict[str, Any]:
    scorers: dict[str, int] = {}
    for r in rules:
        for s in r["scorers"]:
            scorers[s["function"]] = scorers.get(s["function"], 0) + 1
    return {
        "rules": len(rules),
        "trace_scope": sum(1 for r in rules if r["scope"] == "trace"),
        "span_scope": sum(1 for r in rules if r["scope"] == "span"),
        "empty_filter": sum(1 for r in rules if not r["filter"]),
        "projects": sorted({r["project"] for r in rules}),
        "scorers": scorers,
    }


# ---------------------------------------------------------------------------
# Talking to the service
# ---------------------------------------------------------------------------


def scrape(api: str, timeout: float = 10.0) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of ``/metrics`` as (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(api + "/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return [
        (s.name, dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def metric_by(samples: list[tuple[str, dict[str, str], float]], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for n, lab, v in samples:
        if n == name:
            out[lab.get(label, "")] = out.get(lab.get(label, ""), 0.0) + v
    return out


def histogram_buckets(
    samples: list[tuple[str, dict[str, str], float]], name: str
) -> list[tuple[float, float]]:
    """Cumulative (le, count) pairs of a histogram, sorted, +Inf last."""
    return sorted((float(lab["le"]), v) for n, lab, v in samples if n == name + "_bucket")


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Prometheus' ``histogram_quantile``: (value, bucket lower bound, bucket upper bound)."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan, math.nan, math.nan
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):  # in the +Inf bucket: the highest finite bound, like Prometheus
                return prev_le, prev_le, le
            if c == prev_c:
                return le, prev_le, le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c), prev_le, le
        prev_le, prev_c = le, c
    return math.nan, math.nan, math.nan


def sql_rows(api: str, query: str, timeout: float = 60.0) -> list[list[Any]]:
    return list(sql(api, query, timeout)["data"])


def log_problems(path: Path, limit: int = 12) -> dict[str, Any]:
    """WARNING / ERROR / Traceback lines of the service log (counts by level, first samples)."""
    counts = {"WARNING": 0, "ERROR": 0, "CRITICAL": 0, "Traceback": 0}
    samples: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"counts": counts, "samples": samples}
    for line in lines:
        m = re.search(r" (WARNING|ERROR|CRITICAL) ", line)
        key = m.group(1) if m else ("Traceback" if line.startswith("Traceback") else None)
        if key is None:
            continue
        counts[key] += 1
        if len(samples) < limit:
            samples.append(line[:300])
    return {"counts": counts, "samples": samples}


# ---------------------------------------------------------------------------
# Sampling the service during the load
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# The two phases
# ---------------------------------------------------------------------------


class Phase:
    """Hooks for ``ingest.bench_tracejudge``: create rules when ready, sample during the load, and once the
    spans are drained wait for the windows to close and collect everything from the running service."""

    def __init__(self, args: argparse.Namespace, rules: list[dict[str, Any]], duration: float) -> None:
        self.args = args
        self.rules = rules
        self.duration = duration
        self.monitor: Monitor | None = None
        self.profiler: Profiler | None = None
        self.created: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    # --- hooks ------------------------------------------------------------------------------------------
    def on_ready(self, server: ManagedServer) -> None:
        if not self.rules:
            return
        t = time.time()
        for rule in self.rules:
            status, body = http_json("POST", server.api + "/api/v1/rules", rule)
            if status != 201:
                raise RuntimeError(f"creating rule {rule['name']}: HTTP {status}: {body}")
            self.created.append(body)
        deadline = time.time() + 60
        loaded = 0.0
        while time.time() < deadline:
            loaded = metric_sum(scrape(server.api), "tracejudge_rules_loaded_rules")
            if loaded >= len(self.rules):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"only {loaded:.0f} of {len(self.rules)} rules loaded after 60 s")
        self.extra["rules_created_s"] = round(time.time() - t, 2)
        print(f"   {len(self.created)} rules created and loaded in {time.time() - t:.1f} s", flush=True)

    def on_load_start(self, server: ManagedServer, t0: float) -> None:
        self.t0 = t0
        self.monitor = Monitor(server, t0, self.args.sample_interval, count_scores=bool(self.rules))
        self.monitor.start()
        if self.rules and self.args.py_spy_s > 0:
            assert server.proc is not None
            out = server.log_path.parent / "py-spy.txt"
            if self.args.json_out:
                out = Path(self.args.json_out).with_suffix(".py-spy.txt")
                out.parent.mkdir(parents=True, exist_ok=True)
            self.profiler = Profiler(server.proc.pid, self.args, out)
            self.profiler.start()

    def after_load(self, server: ManagedServer, result: dict[str, Any]) -> None:
        t_end = self.t0 + self.duration
        if self.rules:
            self._wait_windows_closed(server, t_end, result)
        assert self.monitor is not None
        self.monitor.stop()
        self.monitor.sample()  # one last point after the windows closed
        if self.profiler is not None:
            self.extra["py_spy"] = self.profiler.finish()
        m = scrape(server.api)
        ex = self.extra
        ex["series"] = self.monitor.series
        ex["monitor_errors"] = self.monitor.errors
        ex["series_summary"] = summarize_series(self.monitor.series, self.duration, self.args.flat_pct)
        ex["log"] = log_problems(server.log_path)
        ex["closed_by_reason"] = metric_by(m, "tracejudge_window_closed_traces_total", "reason")
        ex["late_spans"] = metric_sum(m, "tracejudge_window_late_spans_total")
        ex["incomplete_traces"] = metric_sum(m, "tracejudge_scoring_incomplete_traces_total")
        ex["rule_load_errors"] = metric_sum(m, "tracejudge_rules_load_errors_total")
        ex["sink_inserts"] = {
            f"{lab.get('table')}/{lab.get('outcome')}": v
            for n, lab, v in m
            if n == "tracejudge_sink_inserts_total"
        }
        ex["receiver_throttled"] = metric_sum(m, "tracejudge_wal_throttled_total")
        if not self.rules:
            return
        settle = self.args.settle_s
        buckets = histogram_buckets(m, "tracejudge_window_close_delay_seconds")
        close: dict[str, Any] = {"count": buckets[-1][1] if buckets else 0, "buckets": buckets}
        for q in (0.5, 0.99):
            v, lo, hi = histogram_quantile(q, buckets)
            close[f"p{round(q * 100)}_s"] = v
            close[f"p{round(q * 100)}_minus_settle_s"] = v - settle
            close[f"p{round(q * 100)}_bucket"] = [lo, hi]
        ex["close_delay"] = close
        ex["decisions"] = metric_by(m, "tracejudge_rule_decisions_total", "outcome")
        total = sum(ex["decisions"].values())
        ex["decision_shares"] = {k: v / total for k, v in ex["decisions"].items()} if total else {}
        ex["decisions_by_rule"] = _by_rule(m)
        ex["score_rows_by_outcome"] = metric_by(m, "tracejudge_rule_scores_total", "outcome")
        ex["scorer_errors"] = ex["score_rows_by_outcome"].get("error", 0.0)
        ex["scorer_error_samples"] = _error_samples(server.api)
        try:
            n, u = sql_row(server.api, "SELECT count(), uniqExact(ScoreId) FROM scores", 120)
            ex["scores_stored"], ex["scores_unique"] = n, u
        except Exception as e:
            ex["scores_query_error"] = f"{type(e).__name__}: {e}"[:300]
        ex["e2e"] = self._e2e_latency(server.api)

    def finish(self) -> None:
        """Stop what still samples (the run failed before ``after_load``)."""
        if self.monitor is not None and self.monitor.is_alive():
            self.monitor.stop()

    # --- helpers ------------------------------------------------------------------------------------------
    def _wait_windows_closed(self, server: ManagedServer, t_end: float, result: dict[str, Any]) -> None:
        """Until every acknowledged trace's window closed (each loadgen trace is in one request, so
        acknowledged spans / spans per trace), none is open and the score count held for 3 polls; bounded by
        ``--close-wait`` and by ``--stall-timeout`` without progress."""
        expected = int(result.get("spans_acked", 0)) // max(1, self.args.spans_per_trace)
        deadline = time.time() + self.args.close_wait
        last_scores, same = -1, 0
        closed, open_now = 0.0, math.nan
        progress_t, progress = time.time(), -1.0
        caught_up_t: float | None = None
        first = True
        while first or time.time() < deadline:  # at least one poll, also with --close-wait 0
            first = False
            try:
                m = scrape(server.api)
                open_now = metric_sum(m, "tracejudge_window_open_traces")
                closed = metric_sum(m, "tracejudge_window_closed_traces_total")
                n = int(sql_row(server.api, "SELECT count() FROM scores", 30)[0])
            except Exception:
                time.sleep(1.0)
                continue
            if closed != progress:
                progress, progress_t = closed, time.time()
            elif time.time() - progress_t > self.args.stall_timeout:
                break
            if closed >= expected and caught_up_t is None:
                caught_up_t = time.time()
            same = same + 1 if n == last_scores else 0
            last_scores = n
            if caught_up_t is not None and open_now == 0 and same >= 3:
                break
            time.sleep(1.0)
        ex = self.extra
        ex["traces_expected"] = expected
        ex["traces_closed_at_end"] = closed
        ex["windows_caught_up_after_load_s"] = round(caught_up_t - t_end, 1) if caught_up_t else None
        ex["windows_settled_after_load_s"] = round(time.time() - t_end, 1)
        ex["open_traces_at_end"] = open_now
        print(
            f"   windows: {closed:,.0f} of {expected:,} traces closed "
            f"{'(caught up ' + format(caught_up_t - t_end, '.0f') + ' s after the load)' if caught_up_t else '(NOT caught up)'}; "
            f"open {open_now:.0f}; score rows {last_scores:,}; stopped waiting {time.time() - t_end:.0f} s after the load",
            flush=True,
        )

    def _e2e_latency(self, api: str) -> dict[str, Any]:
        """Ingest -> first score of a trace, over a sample of traces, overall and per minute of load."""
        k = max(1, int(self.args.e2e_sample))
        t0_ms = int(self.t0 * 1000)
        inner = f"""
            SELECT (toUnixTimestamp64Micro(s.first) - toUnixTimestamp64Micro(t.ing)) / 1e6 AS d,
                   intDiv(toUnixTimestamp64Milli(t.ing) - {t0_ms}, 60000) AS minute
            FROM (SELECT TraceId, min(Timestamp) AS first FROM scores
                  WHERE cityHash64(TraceId) % {k} = 0 GROUP BY TraceId) AS s
            INNER JOIN (SELECT TraceId, max(IngestedAt) AS ing FROM otel_traces
                        WHERE ParentSpanId = '' AND cityHash64(TraceId) % {k} = 0 GROUP BY TraceId) AS t
            ON s.TraceId = t.TraceId"""
        agg = "count(), quantileExact(0.5)(d), quantileExact(0.99)(d), max(d)"
        out: dict[str, Any] = {"sample": f"1/{k} of traces (cityHash64(TraceId) % {k} = 0)"}
        try:
            n, p50, p99, mx = sql_rows(api, f"SELECT {agg} FROM ({inner})", 120)[0]
            settle = self.args.settle_s
            out.update(
                {
                    "traces": int(n),
                    "p50_s": float(p50),
                    "p99_s": float(p99),
                    "max_s": float(mx),
                    "p50_minus_settle_s": float(p50) - settle,
                    "p99_minus_settle_s": float(p99) - settle,
                }
            )
            rows = sql_rows(api, f"SELECT minute, {agg} FROM ({inner}) GROUP BY minute ORDER BY minute", 120)
            out["by_minute"] = [
                {"minute": int(r[0]), "traces": int(r[1]), "p50_s": float(r[2]), "p99_s": float(r[3]),
                 "max_s": float(r[4])}
                for r in rows
            ]  # fmt: skip
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"[:300]
        return out


def _by_rule(m: list[tuple[str, dict[str, str], float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for n, lab, v in m:
        if n == "tracejudge_rule_decisions_total":
            out.setdefault(lab.get("rule", ""), {})[lab.get("outcome", "")] = v
    return dict(sorted(out.items()))


def _error_samples(api: str) -> list[list[Any]]:
    try:
        return sql_rows(
            api,
            "SELECT RuleName, Name, Error, count() FROM scores WHERE Error != '' "
            "GROUP BY RuleName, Name, Error ORDER BY count() DESC LIMIT 5",
            60,
        )
    except Exception as e:
        return [[f"{type(e).__name__}: {e}"[:200]]]


def run_phase(
    args: argparse.Namespace,
    cmd: list[str],
    label: str,
    rules: list[dict[str, Any]],
    duration: float,
    env: dict[str, str],
) -> dict[str, Any]:
    return run(Phase(phase_options(args, duration), rules, duration), cmd, label, env)


def phase_options(args: argparse.Namespace, duration: float) -> argparse.Namespace:
    """The options with this phase's ``--duration``."""
    return argparse.Namespace(**{**vars(args), "duration": duration})


def run(
    phase: Phase, cmd: list[str], label: str, env: dict[str, str], span_filter: str = ""
) -> dict[str, Any]:
    """One phase: ``ingest.bench_tracejudge`` with the phase's hooks, and what the phase collected."""
    tree = common.git_state()  # the service runs from the working tree, which may change between phases
    print(
        f"== phase {label}: {phase.duration:g} s of load, {len(phase.rules)} rules; tree {tree}", flush=True
    )
    result = ingest.bench_tracejudge(
        phase.args,
        cmd,
        label=label,
        env=env,
        span_filter=span_filter,
        on_ready=phase.on_ready,
        on_load_start=phase.on_load_start,
        after_load=phase.after_load,
    )
    phase.finish()
    result.update(phase.extra)
    result["rules"] = len(phase.rules)
    result["env"] = env
    result["tree"] = tree
    return result


# ---------------------------------------------------------------------------
# Verdict and report
# ---------------------------------------------------------------------------


def verdict(
    base: dict[str, Any] | None,
    rules: dict[str, Any],
    tolerance: float,
    spans_per_trace: int,
    settle_s: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if base and base.get("persisted_sps"):
        out["ratio_persisted"] = rules.get("persisted_sps", 0.0) / base["persisted_sps"]
        out["ratio_accepted"] = rules.get("accepted_sps", 0.0) / max(base.get("accepted_sps", 0.0), 1e-9)
        out["throughput_kept"] = out["ratio_persisted"] >= 1 - tolerance
    s = rules.get("series_summary", {})
    second, last = (
        s.get("open_traces_second_min_mean", math.nan),
        s.get("open_traces_last_min_mean", math.nan),
    )
    evicted = rules.get("closed_by_reason", {}).get("evicted", 0.0)
    out["windows_bounded"] = bool(
        evicted == 0 and (second != second or last != last or last <= 1.5 * max(second, 1.0))
    )
    out["scores_keep_arriving"] = bool(s.get("scores_arrive_every_interval"))
    windowed_sps = (s.get("traces_closed_per_s_steady") or 0.0) * spans_per_trace
    caught_up = rules.get("windows_caught_up_after_load_s")
    out["windowed_vs_accepted"] = windowed_sps / max(rules.get("accepted_sps", 0.0), 1e-9)
    out["windows_keep_up"] = bool(
        out["windowed_vs_accepted"] >= 1 - tolerance and caught_up is not None and caught_up <= settle_s + 10
    )
    by_min = [m for m in rules.get("e2e", {}).get("by_minute", []) if m["traces"] >= 50]
    full = [m for m in by_min if 0 <= m["minute"] < int(rules.get("duration_s", 0) // 60)]
    if len(full) >= 2:
        out["e2e_p99_first_vs_last_minute_s"] = [full[0]["p99_s"], full[-1]["p99_s"]]
        out["e2e_not_growing"] = full[-1]["p99_s"] <= 2 * full[0]["p99_s"] + 1.0
    keys = (
        "throughput_kept",
        "windows_bounded",
        "windows_keep_up",
        "scores_keep_arriving",
        "e2e_not_growing",
    )
    out["keeps_up"] = all(out.get(k, True) for k in keys) and "throughput_kept" in out
    out["rss_flat"] = s.get("rss_flat")
    return out


def render_tables(results: list[dict[str, Any]], summary: dict[str, Any], settle: float) -> str:
    base = next((r for r in results if r.get("rules") == 0), None)
    cols = (
        "phase",
        "duration",
        "accepted spans/s",
        "persisted spans/s",
        "vs baseline",
        "p50 / p99 request ms",
        "RSS MB first / last min (max)",
        "RSS trend after 1st min, MB/min (flat?)",
        "throttled requests",
        "loss/dup check",
    )
    rows = []
    for r in results:
        if "persisted_sps" not in r:
            rows.append([r["target"], f"{r.get('duration_s', 0):g} s", "ERROR", "-", "-", "-", "-", "-", "-",
                         str(r.get("error", ""))[:80]])  # fmt: skip
            continue
        s = r.get("series_summary", {})
        dur = f"{r['duration_s']:g} s"
        if r.get("drain_s") == r.get("drain_s") and r.get("drain_s") is not None:
            dur += f" (+{r['drain_s']:.0f} s drain)"
        ratio = "1.00" if r is base else "-"
        if base is not None and r is not base and base.get("persisted_sps"):
            ratio = f"{r['persisted_sps'] / base['persisted_sps']:.2f}"
        rows.append(
            [
                r["target"],
                dur,
                fmt(r["accepted_sps"]),
                fmt(r["persisted_sps"]),
                ratio,
                f"{fmt(r['p50_ms'], '.0f')} / {fmt(r['p99_ms'], '.0f')}",
                f"{fmt(s.get('rss_first_min_mb'))} / {fmt(s.get('rss_last_min_mb'))} ({fmt(s.get('rss_max_mb'))})",
                f"{fmt(s.get('rss_slope_after_first_min_mb_per_min'), '+.1f')} +- "
                f"{fmt(s.get('rss_slope_after_first_min_se'), '.1f')} ({'flat' if s.get('rss_flat') else 'NOT flat'})",
                str(r.get("throttled", "-")),
                r["check"],
            ]
        )
    out = [markdown_table(cols, rows)]
    rr = next((r for r in results if r.get("rules")), None)
    if rr is not None and "close_delay" in rr:
        cd, e2e, s = rr["close_delay"], rr.get("e2e", {}), rr.get("series_summary", {})
        dec = rr.get("decisions", {})
        tot = sum(dec.values()) or 1.0
        dec_s = ", ".join(
            f"{k} {v:,.0f} ({v / tot:.1%})" for k, v in sorted(dec.items(), key=lambda kv: -kv[1])
        )
        closed = sum(rr.get("closed_by_reason", {}).values())

        def bucket(key: str) -> str:
            lo, hi = cd.get(key, [math.nan, math.nan])
            return f"({lo:g}, {hi:g}]"

        cols2 = ("rules phase", "value")
        rows2 = [
            ["rules", f"{rr['rules']} ({summary.get('rules_mix', {}).get('trace_scope', '?')} trace, "
                      f"{summary.get('rules_mix', {}).get('span_scope', '?')} span scope), "
                      f"sampling {summary.get('sampling_rate')}"],
            ["trace close latency p50 / p99 - settle "
             f"({settle:g} s), histogram", f"{fmt(cd.get('p50_minus_settle_s'), '.2f')} / "
                                           f"{fmt(cd.get('p99_minus_settle_s'), '.2f')} s "
                                           f"(buckets {bucket('p50_bucket')}, {bucket('p99_bucket')} s; "
                                           f"{cd.get('count', 0):,.0f} traces)"],
            ["ingest -> first score p50 / p99 - settle (SQL, " + e2e.get("sample", "") + ")",
             f"{fmt(e2e.get('p50_minus_settle_s'), '.2f')} / {fmt(e2e.get('p99_minus_settle_s'), '.2f')} s "
             f"(max {fmt(e2e.get('max_s'), '.1f')} s, {e2e.get('traces', 0):,} traces)"],
            ["windows: traces closed per s during the load (x spans/trace = spans/s scored)",
             f"{fmt(s.get('traces_closed_per_s_steady'))} (x {summary.get('spans_per_trace', 10)} = "
             f"{fmt((s.get('traces_closed_per_s_steady') or 0) * summary.get('spans_per_trace', 10))} spans/s)"],
            ["windows caught up with ingest", f"{rr.get('traces_closed_at_end', 0):,.0f} of "
             f"{rr.get('traces_expected', 0):,} traces closed; caught up "
             f"{fmt(rr.get('windows_caught_up_after_load_s'), '.0f')} s after the load ended"],
            ["traces closed", f"{closed:,.0f} ({', '.join(f'{k} {v:,.0f}' for k, v in rr.get('closed_by_reason', {}).items())})"],
            ["open traces: max / 2nd-minute mean / last-minute mean",
             f"{fmt(s.get('open_traces_max'))} / {fmt(s.get('open_traces_second_min_mean'))} / "
             f"{fmt(s.get('open_traces_last_min_mean'))}"],
            ["score rows/s (steady, during load)", f"{fmt(s.get('score_rows_per_s_steady'))} "
             f"(min {fmt(s.get('score_rows_per_s_min_interval'))} / max {fmt(s.get('score_rows_per_s_max_interval'))} "
             f"per {summary.get('sample_interval'):g} s interval)"],
            ["score rows stored (unique)", f"{rr.get('scores_stored', 0):,} ({rr.get('scores_unique', 0):,})"],
            ["decisions by outcome", dec_s],
            ["scorer errors", f"{rr.get('scorer_errors', 0):,.0f}"],
            ["late spans / incomplete traces / rule load errors",
             f"{rr.get('late_spans', 0):,.0f} / {rr.get('incomplete_traces', 0):,.0f} / {rr.get('rule_load_errors', 0):,.0f}"],
            ["service log WARNING / ERROR / Traceback",
             " / ".join(str(rr.get("log", {}).get("counts", {}).get(k, 0)) for k in ("WARNING", "ERROR", "Traceback"))],
        ]  # fmt: skip
        out.append(markdown_table(cols2, rows2))
    return "\n\n".join(out)


def print_details(r: dict[str, Any]) -> None:
    ingest.print_details(r)
    for k in (
        "rules_created_s",
        "windows_settled_after_load_s",
        "open_traces_at_end",
        "closed_by_reason",
        "sink_inserts",
        "receiver_throttled",
        "score_rows_by_outcome",
        "scorer_error_samples",
        "monitor_errors",
    ):
        if k in r and r[k] not in ([], None, {}):
            print(f"   {k}: {r[k]}")
    if r.get("log", {}).get("samples"):
        print("   service log problems:")
        for line in r["log"]["samples"]:
            print(f"     {line}")
    s = r.get("series_summary")
    if s:
        print(
            f"   series summary: { {k: (round(v, 1) if isinstance(v, float) else v) for k, v in s.items()} }"
        )
    series = r.get("series", [])
    if series:
        print(
            "   t s | RSS MB (main) | open traces | closed | score rows | WAL backlog MB | CPU % machine (service)"
        )
        for p in series:
            print(
                f"   {p['t']:6.1f} | {fmt(p.get('rss_mb'))} ({fmt(p.get('main_rss_mb'))}) | "
                f"{fmt(p.get('open_traces'))} | {fmt(p.get('closed_traces'))} | {fmt(p.get('scores'))} | "
                f"{fmt(p.get('wal_backlog_mb'), '.1f')} | {fmt(p.get('sys_busy_pct'))} ({fmt(p.get('service_cpu_pct'))})"
            )
    prof = r.get("py_spy")
    if prof:
        print(f"   py-spy ({prof.get('samples', 0)} samples, {prof.get('file', prof.get('error'))}):")
        for title in ("threads", "flow_thread_inclusive", "flow_thread_self", "self"):
            print(f"     {title}:")
            for name, sh in prof.get(title, []):
                print(f"       {sh:6.1%}  {name}")
    e2e = r.get("e2e", {})
    if e2e.get("by_minute"):
        print("   ingest -> first score by minute of load (minute: traces, p50 / p99 / max s):")
        for m in e2e["by_minute"]:
            print(
                f"     {m['minute']}: {m['traces']:,}, {m['p50_s']:.2f} / {m['p99_s']:.2f} / {m['max_s']:.2f}"
            )
    if r.get("decisions_by_rule"):
        print("   decisions by rule (scored / filtered_out / not_targeted / sampled_out):")
        for name, d in r["decisions_by_rule"].items():
            print(
                f"     {name}: {d.get('scored', 0):,.0f} / {d.get('filtered_out', 0):,.0f} / "
                f"{d.get('not_targeted', 0):,.0f} / {d.get('sampled_out', 0):,.0f}"
            )


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_load_arguments(p, duration=300.0)
    common.add_phase_arguments(
        p, "rules", skip_help="only the rules phase", close_wait_what="windows to close"
    )
    p.add_argument("--rules", type=int, default=50, help="rules created (default 50)")
    p.add_argument(
        "--sampling-rate", type=float, default=0.1, help="every rule's sampling_rate (default 0.1)"
    )
    p.add_argument(
        "--levenshtein-every",
        type=int,
        default=10,
        help="a levenshtein scorer on every Nth rule (default 10)",
    )
    p.add_argument(
        "--projects",
        choices=("single", "services"),
        default="single",
        help="single: every span in project 'bench', all rules on every trace (default); services: the "
        "loadgen's service.name projects, rules spread over them",
    )
    p.add_argument("--tolerance", type=float, default=0.05, help="allowed throughput loss (default 0.05)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    common.interrupt_on_sigterm()
    cmd = tracejudge_cmd(args)
    env = {"TRACEJUDGE_WINDOWS__SETTLE_S": f"{args.settle_s:g}"}
    if args.projects == "single":
        env["TRACEJUDGE_INGEST__PROJECT_KEYS"] = json.dumps(["deployment.environment"])
        projects: tuple[str, ...] = (SINGLE_PROJECT,)
    else:
        projects = SERVICE_PROJECTS
    env = common.service_env(env, args.env)
    rules = make_rules(args.rules, projects, args.sampling_rate, args.levenshtein_every)
    summary: dict[str, Any] = {
        "rules_mix": rules_mix(rules),
        "sampling_rate": args.sampling_rate,
        "settle_s": args.settle_s,
        "sample_interval": args.sample_interval,
        "projects": args.projects,
        "spans_per_trace": args.spans_per_trace,
    }
    summary["tree"] = common.git_state()
    print(f"rules: {summary['rules_mix']}; tree {summary['tree']}", flush=True)
    results: list[dict[str, Any]] = []
    if not args.skip_baseline:
        base_dur = args.baseline_duration if args.baseline_duration is not None else args.duration
        results.append(run_phase(args, cmd, "baseline (no rules)", [], base_dur, env))
    results.append(run_phase(args, cmd, f"{len(rules)} rules", rules, args.duration, env))
    base = results[0] if not args.skip_baseline else None
    summary.update(verdict(base, results[-1], args.tolerance, args.spans_per_trace, args.settle_s))
    print()
    print(render_tables(results, summary, args.settle_s))
    for r in results:
        print_details(r)
    print()
    shown = {k: v for k, v in summary.items() if k != "rules_mix"}
    print(summary_line("verdict", shown))
    if args.json_out:
        common.write_json(
            args.json_out, {"argv": sys.argv, "rules": rules, "results": results, "summary": summary}
        )
    ok = all("error" not in r and r.get("check") == "OK" for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
