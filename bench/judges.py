"""LLM-judge benchmark for tracejudge (``make bench-judges``): 2,000 judge calls in flight, does ingest notice?

Two phases in one invocation, each a fresh ``tracejudge run`` in a fresh temporary data dir under the ingest
benchmark's load (``bench/ingest.py`` ``bench_tracejudge``, ``bench/loadgen.py`` clients), with the rules
benchmark's phases, sampling and reporting (``bench/phase.py`` ``Phase``, ``bench/monitor.py``, the tables of
``bench/rules.py``):

1. **baseline**: no rules;
2. **judging**: ``--connections`` (1) connection(s) to the fake LLM server (``tests/fakes/llm_server.py``, run
   as its own process, ``--latency`` 2 s on every call) created through ``POST /api/v1/connections`` with
   ``max_concurrency`` 2 x the target (no rate limits, key in the service's environment), and one trace-scope
   rule per connection through ``POST /api/v1/rules`` with an ``llm_judge`` (``--protocol``,
   default Chat Completions) and a ``close_marker`` code scorer.

**How many calls are in flight.** A trace-scope judge makes one call per sampled trace, so by Little's law
in flight = sampled traces/s x latency. The rules' ``sampling_rate`` is chosen for ``--in-flight`` (2,000)
calls in flight: ``in_flight / latency / R`` with R the traces/s of the load, taken from the baseline's
accepted spans/s / ``--spans-per-trace`` (or from ``--rate`` when given; ``--sampling-rate`` overrides).
What was really in flight is measured at the fake server (``GET /_control/stats``, every
``--flight-interval`` s): the mean (its time integral of requests in flight over the steady part of the
load) and the peak, next to the service's own gauge ``tracejudge_judge_in_flight_calls`` (which also
counts calls waiting for a connection of the SDK's HTTP pool). One SDK client holds at most 1,000
connections (the ``openai`` and ``anthropic`` SDKs' default ``max_connections``), so one connection cannot
have 2,000 calls at the server; ``--connections N`` spreads them over N connections, each its own client and
pool, each with its own rule sampling 1/N of the rate. The phase's sampling rate, and its basis, are printed.

**Why the load is unthrottled by default.** "Ingest with judging on as a ratio to ingest without it" is
a ratio of capacities: both phases send as fast as the service accepts, so the ratio says how much ingest
capacity the judging costs (the goal is at least 0.9). With a fixed ``--rate`` that both phases sustain,
the ratio is 1 by construction and only says that the service kept that rate. The judging phase's price
includes everything a rule costs (its project's spans go through the trace windows and the rule), not only
the judge calls; ``bench/rules.py`` measures the windows and rules alone.

**Trace close -> score row.** Nothing stores a trace's close time, so each judge rule also has a code scorer
(``close_marker``, ``length_between`` with ``min`` 0): its score row is written when the closed trace is
scored, right after its window closed, and its ``Timestamp`` stands in for the close time. Reported: the
judge's score row ``Timestamp`` minus that, p50/p99/max, overall and per minute of load, split into close ->
handed to the executor (the judge span's start), the call (``LatencyMs``: waiting for a slot, HTTP, retries)
and the rest (waiting for the batch and being collected). Also ingest -> judge score (the trace's
``IngestedAt``; minus the settle time) as ``bench/rules.py`` does.

Judge spans (scope ``tracejudge.judge``) land in ``otel_traces`` too; the ingest benchmark's span counts
exclude them here (``bench_tracejudge``'s ``span_filter``), in both phases, so persisted spans/s and the loss check count
only the load's spans.

Per phase: accepted and persisted spans/s and their ratio, RSS, CPU; for the judging phase: judged traces/s
and judge score rows/s (SQL, by ``Timestamp`` over the steady part of the load), calls started/s and in flight
at the fake server, the latencies above, judge errors and shed rows by class, the fake server's CPU. Exit
status 0 when every phase ran and lost nothing (the goals are reported, not enforced).

Everything runs on 127.0.0.1, every wait is bounded, every started process is stopped (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common, rules
from bench.common import fmt, markdown_table, summary_line
from bench.metrics import metric_sum, scrape, sql_rows
from bench.phase import Phase, phase_options
from bench.phase import run as run_phase_with
from bench.sampling import Periodic
from bench.service import FakeLLM, ManagedServer, http_json, sql_row, tracejudge_cmd

KEY_ENV = "TJ_BENCH_LLM_KEY"  # the service's env var holding the (fake) key
JUDGE_NAME = "bench_judge"
MARKER_NAME = "close_marker"
JUDGE_SCOPE = "tracejudge.judge"
GOAL_RATIO = 0.9
PROTOCOLS = {"chat_completions": "openai", "responses": "openai", "messages": "anthropic"}

# ---------------------------------------------------------------------------
# The fake LLM server, in a process of its own
# ---------------------------------------------------------------------------


class FlightSampler(Periodic):
    """Every ``interval`` s: the fake server's requests in flight, their peak and integral, its request count
    and CPU; every ``metrics_every`` s also the service's ``tracejudge_judge_*`` metrics (summed by name)."""

    def __init__(self, fake: FakeLLM, api: str, t0: float, interval: float, metrics_every: float) -> None:
        super().__init__(interval)
        import psutil

        assert fake.proc is not None
        self.fake, self.api, self.t0 = fake, api, t0
        self.metrics_every = metrics_every
        self.proc = psutil.Process(fake.proc.pid)
        self.points: list[dict[str, Any]] = []
        self.judge_metrics: list[dict[str, Any]] = []
        self._next_metrics = 0.0

    def sample(self) -> None:
        t = time.time()
        try:
            s = self.fake.stats()
            cpu = self.proc.cpu_times()
            self.points.append(
                {**s, "t_mono": s["t"], "t": round(t - self.t0, 2), "cpu_s": cpu.user + cpu.system}
            )
        except Exception as e:
            self.note(e)
        if t >= self._next_metrics:
            self._next_metrics = t + self.metrics_every
            try:
                sums: dict[str, float] = {}
                for name, _, v in scrape(self.api):
                    if name.startswith("tracejudge_judge_"):
                        sums[name] = sums.get(name, 0.0) + v
                self.judge_metrics.append({"t": round(t - self.t0, 2), **sums})
            except Exception as e:
                self.note(e)


def _flight_between(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    dt = max(b["t"] - a["t"], 1e-9)
    return {
        "mean": (b["in_flight_seconds"] - a["in_flight_seconds"]) / max(b["t_mono"] - a["t_mono"], 1e-9),
        "calls_started_per_s": (b["requests"] - a["requests"]) / dt,
        "fake_cpu_pct": (b["cpu_s"] - a["cpu_s"]) / dt * 100,
    }


def summarize_flight(
    points: list[dict[str, Any]], metrics: list[dict[str, Any]], w0: float, w1: float
) -> dict[str, Any]:
    """In flight at the fake server over [w0, w1] s of load: mean (integral / time), max of the samples and
    the server's peak by the end of the load, calls started/s, the fake's CPU; the service's gauge too."""
    steady = [p for p in points if w0 <= p["t"] <= w1 + 0.5]
    out: dict[str, Any] = {"window_s": [round(w0, 1), round(w1, 1)], "samples": len(steady)}
    in_load = [p for p in points if p["t"] <= w1 + 0.5]
    if in_load:
        out["peak_by_end_of_load"] = in_load[-1]["max_in_flight"]
    if points:
        out["peak"] = points[-1]["max_in_flight"]
        out["requests"] = points[-1]["requests"]
    if len(steady) >= 2:
        out.update(_flight_between(steady[0], steady[-1]))
        out["max_sample"] = max(p["in_flight"] for p in steady)
        out["min_sample"] = min(p["in_flight"] for p in steady)
    # from the first call to the last one started (judging may go on long after the load when it lags)
    active = [p for p in points if p["requests"] > 0]
    if len(active) >= 2:
        last = next(p for p in active if p["requests"] == active[-1]["requests"])
        if last is not active[0]:
            out["active"] = {"from_s": active[0]["t"], "to_s": last["t"], **_flight_between(active[0], last)}
    gauge = [m.get("tracejudge_judge_in_flight_calls") for m in metrics if w0 <= m["t"] <= w1 + 0.5]
    vals = [g for g in gauge if g is not None]
    if vals:
        out["service_gauge_mean"] = sum(vals) / len(vals)
        out["service_gauge_max"] = max(vals)
    return out


# ---------------------------------------------------------------------------
# Connections, rules and the sampling rate
# ---------------------------------------------------------------------------


def make_connections(args: argparse.Namespace, fake: FakeLLM) -> list[dict[str, Any]]:
    provider = PROTOCOLS[args.protocol]
    base_url = fake.base_url + ("/v1" if provider == "openai" else "")
    per_conn = math.ceil(args.max_concurrency / args.connections)
    return [
        {"name": f"bench-fake-{i}", "provider": provider, "protocol": args.protocol, "base_url": base_url,
         "api_key_env": KEY_ENV, "model": "fake-judge", "timeout_s": args.judge_timeout, "max_retries": 3,
         "max_concurrency": min(per_conn, 100_000), "requests_per_minute": 0, "tokens_per_minute": 0,
         "input_price_per_mtok": 0.15, "output_price_per_mtok": 0.6}
        for i in range(args.connections)
    ]  # fmt: skip


def make_judge_rules(connections: list[dict[str, Any]], sampling_rate: float) -> list[dict[str, Any]]:
    """One trace-scope rule per connection, each sampling its share, each with the judge and the marker."""
    share = sampling_rate / len(connections)
    return [
        {"name": f"bench-judge-{i}", "project": rules.SINGLE_PROJECT, "scope": "trace", "filter": "",
         "description": "bench/judges.py judge rule", "sampling_rate": share,
         "scorers": [
             {"type": "code", "name": MARKER_NAME, "function": "length_between", "args": {"min": 0}},
             {"type": "llm_judge", "name": JUDGE_NAME, "connection": conn["name"],
              "criteria": "The final answer addresses the user's question and names the order it is about.",
              "min_score": 1, "max_score": 5, "threshold": 3},
         ]}
        for i, conn in enumerate(connections)
    ]  # fmt: skip


def choose_sampling_rate(args: argparse.Namespace, base: dict[str, Any] | None) -> tuple[float, str]:
    """(sampling rate over all judge rules, how it was chosen): in flight / latency / traces per second."""
    if args.sampling_rate is not None:
        return args.sampling_rate, "--sampling-rate"
    calls_per_s = args.in_flight / args.latency
    if args.rate:
        traces_per_s, basis = args.rate / args.spans_per_trace, f"--rate {args.rate:g} spans/s"
    elif base is not None and base.get("accepted_sps"):
        traces_per_s = base["accepted_sps"] / args.spans_per_trace
        basis = f"baseline accepted {base['accepted_sps']:,.0f} spans/s"
    else:
        raise SystemExit("no baseline trace rate to size the sampling: give --sampling-rate or --rate")
    rate = min(1.0, calls_per_s / max(traces_per_s, 1e-9))
    return rate, f"{calls_per_s:,.0f} calls/s / {traces_per_s:,.0f} traces/s ({basis})"


# ---------------------------------------------------------------------------
# The judging phase
# ---------------------------------------------------------------------------


class JudgePhase(Phase):
    """``Phase`` plus: connections before the rules, the fake server's in-flight sampling during the
    load, waiting for the judge calls to finish, and the judge's numbers by SQL."""

    def __init__(
        self,
        args: argparse.Namespace,
        rule_list: list[dict[str, Any]],
        duration: float,
        fake: FakeLLM | None,
        connections: list[dict[str, Any]],
    ) -> None:
        super().__init__(args, rule_list, duration)
        self.fake = fake
        self.connections = connections
        self.flight: FlightSampler | None = None

    def on_ready(self, server: ManagedServer) -> None:
        for conn in self.connections:
            status, body = http_json("POST", server.api + "/api/v1/connections", conn)
            if status != 201 or body.get("key_status") != "set":
                raise RuntimeError(f"creating connection {conn['name']}: HTTP {status}: {body}")
        super().on_ready(server)

    def on_load_start(self, server: ManagedServer, t0: float) -> None:
        super().on_load_start(server, t0)
        if self.fake is not None:
            self.fake.reset_stats()
            self.flight = FlightSampler(
                self.fake, server.api, t0, self.args.flight_interval, self.args.sample_interval
            )
            self.flight.start()

    def _wait_windows_closed(self, server: ManagedServer, t_end: float, result: dict[str, Any]) -> None:
        super()._wait_windows_closed(server, t_end, result)
        if self.fake is not None:
            self._wait_judges_done(server)

    def _wait_judges_done(self, server: ManagedServer) -> None:
        """Until nothing is in flight at the fake server or in the executor and the judge's score rows held
        for 3 polls; bounded by ``--close-wait`` and by ``--stall-timeout`` without progress (no new score
        row and no new call at the fake server)."""
        assert self.fake is not None
        t = time.time()
        deadline, progress_t = t + self.args.close_wait, t
        last, same, busy, calls = -1, 0, math.nan, -1
        while time.time() < deadline and time.time() - progress_t <= self.args.stall_timeout:
            try:
                fake = self.fake.stats()
                busy = fake["in_flight"] + metric_sum(scrape(server.api), "tracejudge_judge_in_flight_calls")
                n = sql_row(server.api, "SELECT count() FROM scores WHERE Scorer = 'llm_judge'", 30)[0]
            except Exception:
                time.sleep(1.0)
                continue
            if n != last or fake["requests"] != calls:
                progress_t, calls = time.time(), fake["requests"]
            same = same + 1 if n == last else 0
            last = n
            if busy == 0 and same >= 3:
                break
            time.sleep(1.0)
        self.extra["judges_done_after_windows_s"] = round(time.time() - t, 1)
        self.extra["judge_calls_busy_at_end"] = busy
        print(f"   judges: {last:,} score rows; {busy:.0f} calls still busy; waited {time.time() - t:.0f} s",
              flush=True)  # fmt: skip

    def after_load(self, server: ManagedServer, result: dict[str, Any]) -> None:
        super().after_load(server, result)
        self.finish_flight()
        if self.flight is not None:
            w0, w1 = steady_window(self.args, self.duration)
            self.extra["judge"] = judge_sql(server.api, self.t0, w0, w1, self.args.settle_s)

    def finish(self) -> None:
        super().finish()
        self.finish_flight()

    def finish_flight(self) -> None:
        """Stop sampling the fake server and keep what was sampled (also after a failed run)."""
        if self.flight is None or "flight" in self.extra:
            return
        self.flight.stop()
        w0, w1 = steady_window(self.args, self.duration)
        self.extra["flight"] = summarize_flight(self.flight.points, self.flight.judge_metrics, w0, w1)
        self.extra["flight_series"] = self.flight.points
        self.extra["judge_metrics_series"] = self.flight.judge_metrics
        self.extra["flight_errors"] = self.flight.errors


def steady_window(args: argparse.Namespace, duration: float) -> tuple[float, float]:
    """Seconds of load counted as steady: after the first traces closed and their calls came back."""
    warm = min(args.settle_s + args.latency + 5.0, duration / 3)
    return warm, duration


# ---------------------------------------------------------------------------
# The judge's numbers, by SQL
# ---------------------------------------------------------------------------

_JUDGE_ROWS = (
    "(SELECT *, toUnixTimestamp64Micro(Timestamp) / 1e6 AS ts FROM scores WHERE Scorer = 'llm_judge')"
)
_JOINED = f"""
    FROM {_JUDGE_ROWS} AS j
    INNER JOIN (SELECT RuleId, TraceId, SpanId, toUnixTimestamp64Micro(Timestamp) / 1e6 AS ts
                FROM scores WHERE Name = '{MARKER_NAME}') AS m
    ON j.RuleId = m.RuleId AND j.TraceId = m.TraceId AND j.SpanId = m.SpanId"""


def judge_sql(api: str, t0: float, w0: float, w1: float, settle: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("rows", lambda: _judge_rows(api, t0 + w0, t0 + w1)),
        ("errors_by_class", lambda: {"by_class": _errors_by_class(api)}),
        ("close_to_score", lambda: _close_to_score(api, t0)),
        ("close_to_score_parts", lambda: _close_parts(api)),
        ("ingest_to_score", lambda: _ingest_to_score(api, settle)),
    ]
    for key, fn in parts:
        try:
            out[key] = fn()
        except Exception as e:
            out[key] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def _judge_rows(api: str, a: float, b: float) -> dict[str, Any]:
    q = f"""SELECT count(), uniqExact(ScoreId), uniqExact(TraceId), countIf(Error != ''),
                   countIf(mapContains(Metadata, 'shed')), countIf(ts >= {a} AND ts < {b}),
                   uniqExactIf(TraceId, ts >= {a} AND ts < {b}), min(ts), max(ts),
                   quantileExactIf(0.5)(LatencyMs, Error = ''), quantileExactIf(0.99)(LatencyMs, Error = ''),
                   sum(InputTokens), sum(OutputTokens), sum(CostUsd), countIf(Error = '')
            FROM {_JUDGE_ROWS}"""
    r = sql_rows(api, q, 120)[0]
    span = max(b - a, 1e-9)
    return {
        "rows": int(r[0]), "unique": int(r[1]), "traces": int(r[2]), "errors": int(r[3]), "shed": int(r[4]),
        "rows_in_window": int(r[5]), "traces_in_window": int(r[6]),
        "rows_per_s": int(r[5]) / span, "traces_per_s": int(r[6]) / span,
        "first_ts": float(r[7]) if r[0] else None, "last_ts": float(r[8]) if r[0] else None,
        "call_ms_p50": float(r[9]), "call_ms_p99": float(r[10]),
        "input_tokens": int(r[11]), "output_tokens": int(r[12]), "cost_usd": float(r[13]),
        "answered": int(r[14]),
        # over the whole judging activity (first to last judge row), which may outlast the load
        "answered_per_s_overall": int(r[14]) / (float(r[8]) - float(r[7])) if r[0] and r[8] - r[7] >= 1 else None,
    }  # fmt: skip


def _errors_by_class(api: str) -> list[list[Any]]:
    q = f"""SELECT if(mapContains(Metadata, 'shed'), concat('Shed(', Metadata['shed'], ')'),
                      splitByString(': ', Error)[1]) AS cls, count(), any(substring(Error, 1, 200))
            FROM {_JUDGE_ROWS} WHERE Error != '' GROUP BY cls ORDER BY count() DESC LIMIT 10"""
    return sql_rows(api, q, 120)


def _quantiles(d: str) -> str:
    return f"count(), quantileExact(0.5)({d}), quantileExact(0.99)({d}), max({d})"


def _q_dict(r: list[Any], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}n": int(r[0]), f"{prefix}p50_s": float(r[1]), f"{prefix}p99_s": float(r[2]),
            f"{prefix}max_s": float(r[3])}  # fmt: skip


def _close_to_score(api: str, t0: float) -> dict[str, Any]:
    """Judge score row minus the marker row of the same (rule, trace, span): all rows, answered rows, and
    per minute of load (by the marker's time)."""
    inner = (
        f"SELECT j.ts - m.ts AS d, j.Error = '' AS ok, intDiv(toInt64(m.ts - {t0}), 60) AS minute {_JOINED}"
    )
    r = sql_rows(api, f"SELECT {_quantiles('d')} FROM ({inner})", 120)[0]
    out = _q_dict(r)
    if out["n"]:
        ok = sql_rows(api, f"SELECT {_quantiles('d')} FROM ({inner}) WHERE ok", 120)[0]
        out.update(_q_dict(ok, "answered_"))
        rows = sql_rows(
            api, f"SELECT minute, {_quantiles('d')} FROM ({inner}) GROUP BY minute ORDER BY minute", 120
        )
        out["by_minute"] = [{"minute": int(x[0]), **_q_dict(x[1:])} for x in rows]
    return out


def _close_parts(api: str) -> dict[str, Any]:
    """For answered calls: close -> handed to the executor (judge span start), the call (LatencyMs), and
    the rest (batch wait and collection)."""
    spans = (f"(SELECT SpanAttributes['tracejudge.score_id'] AS ScoreId, toUnixTimestamp64Micro(Timestamp) / 1e6"
             f" AS ts FROM otel_traces WHERE ScopeName = '{JUDGE_SCOPE}')")  # fmt: skip
    inner = (f"SELECT s.ts - m.ts AS queued, j.LatencyMs / 1000 AS call, j.ts - s.ts - j.LatencyMs / 1000 AS rest "
             f"{_JOINED} INNER JOIN {spans} AS s ON s.ScoreId = j.ScoreId")  # fmt: skip
    out: dict[str, Any] = {}
    for name in ("queued", "call", "rest"):
        r = sql_rows(api, f"SELECT {_quantiles(name)} FROM ({inner})", 120)[0]
        out[name] = _q_dict(r)
    return out


def _ingest_to_score(api: str, settle: float) -> dict[str, Any]:
    ing = (f"(SELECT TraceId, toUnixTimestamp64Micro(max(IngestedAt)) / 1e6 AS ing FROM otel_traces "
           f"WHERE ScopeName != '{JUDGE_SCOPE}' AND TraceId IN (SELECT TraceId FROM scores WHERE "
           f"Scorer = 'llm_judge') GROUP BY TraceId)")  # fmt: skip
    inner = f"SELECT j.ts - t.ing AS d FROM {_JUDGE_ROWS} AS j INNER JOIN {ing} AS t ON j.TraceId = t.TraceId"
    out = _q_dict(sql_rows(api, f"SELECT {_quantiles('d')} FROM ({inner})", 120)[0])
    out["p50_minus_settle_s"] = out["p50_s"] - settle
    out["p99_minus_settle_s"] = out["p99_s"] - settle
    return out


# ---------------------------------------------------------------------------
# Running a phase
# ---------------------------------------------------------------------------


def run_phase(
    args: argparse.Namespace,
    cmd: list[str],
    label: str,
    duration: float,
    env: dict[str, str],
    fake: FakeLLM | None = None,
    connections: list[dict[str, Any]] | None = None,
    rule_list: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A phase whose span counts leave out the judge spans (scope ``tracejudge.judge``)."""
    phase = JudgePhase(phase_options(args, duration), rule_list or [], duration, fake, connections or [])
    return run_phase_with(phase, cmd, label, env, span_filter=f"ScopeName != '{JUDGE_SCOPE}'")


# ---------------------------------------------------------------------------
# Summary and report
# ---------------------------------------------------------------------------


def summarize(
    args: argparse.Namespace, base: dict[str, Any] | None, judging: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = rules.verdict(base, judging, args.tolerance, args.spans_per_trace, args.settle_s)
    out.pop("throughput_kept", None)  # rules.py's 5 % tolerance; the goal here is GOAL_RATIO
    out.pop("keeps_up", None)
    if "ratio_accepted" in out:
        out["ingest_ratio_goal"] = GOAL_RATIO
        out["ingest_ratio_goal_met"] = bool(out["ratio_accepted"] >= GOAL_RATIO)
    flight = judging.get("flight", {})
    j = judging.get("judge", {})
    rows, c2s = j.get("rows", {}), j.get("close_to_score", {})
    out.update({
        "target_in_flight": args.in_flight,
        "in_flight_mean": flight.get("mean"),
        "in_flight_max": flight.get("peak_by_end_of_load"),
        "in_flight_reached": bool((flight.get("mean") or 0) >= 0.9 * args.in_flight),
        "executor_in_flight_mean": flight.get("service_gauge_mean"),
        "judge_calls_started_per_s": flight.get("calls_started_per_s"),
        "judged_traces_per_s": rows.get("traces_per_s"),
        "judge_rows_per_s": rows.get("rows_per_s"),
        "judge_answered_per_s_overall": rows.get("answered_per_s_overall"),
        "in_flight_mean_overall": flight.get("active", {}).get("mean"),
        "in_flight_peak_overall": flight.get("peak"),
        "judge_rows": rows.get("rows"),
        "judge_errors": rows.get("errors"),
        "judge_shed": rows.get("shed"),
        "close_to_score_p50_s": c2s.get("p50_s"),
        "close_to_score_p99_s": c2s.get("p99_s"),
        "fake_cpu_pct": flight.get("fake_cpu_pct"),
    })  # fmt: skip
    return out


def _lat(d: dict[str, Any], prefix: str = "") -> str:
    return (f"{fmt(d.get(prefix + 'p50_s'), '.2f')} / {fmt(d.get(prefix + 'p99_s'), '.2f')} s "
            f"(max {fmt(d.get(prefix + 'max_s'), '.1f')} s)")  # fmt: skip


def render_judge_table(r: dict[str, Any], summary: dict[str, Any]) -> str:
    fl, j = r.get("flight", {}), r.get("judge", {})
    rows, c2s, parts = j.get("rows", {}), j.get("close_to_score", {}), j.get("close_to_score_parts", {})
    i2s = j.get("ingest_to_score", {})
    errs = ", ".join(f"{e[0]} {e[1]:,}" for e in j.get("errors_by_class", {}).get("by_class", [])) or "none"
    w = fl.get("window_s", ["?", "?"])
    s, act = r.get("series_summary", {}), fl.get("active", {})
    table = [
        ["judge rules", f"{summary.get('connections')} x trace scope, sampling {summary.get('sampling_rate'):.4f} "
                        f"in all ({summary.get('sampling_basis')}); {summary.get('protocol')}, "
                        f"{summary.get('latency_s'):g} s fake latency"],
        [f"calls in flight at the fake server, mean / min / max ({w[0]}-{w[1]} s of load; target "
         f"{summary.get('target_in_flight'):,})",
         f"{fmt(fl.get('mean'))} / {fmt(fl.get('min_sample'))} / {fmt(fl.get('max_sample'))} "
         f"(peak {fmt(fl.get('peak_by_end_of_load'))})"],
        ["calls in flight in the executor (service gauge), mean / max",
         f"{fmt(fl.get('service_gauge_mean'))} / {fmt(fl.get('service_gauge_max'))}"],
        ["judge calls started/s (fake server)", fmt(fl.get("calls_started_per_s"))],
        ["judged traces/s (judge score rows/s), SQL", f"{fmt(rows.get('traces_per_s'))} ({fmt(rows.get('rows_per_s'))})"],
        ["whole judging activity (may outlast the load): calls in flight mean, started/s, answered rows/s",
         f"{fmt(act.get('mean'))}, {fmt(act.get('calls_started_per_s'))}, {fmt(rows.get('answered_per_s_overall'))} "
         f"({fmt(act.get('from_s'), '.0f')}-{fmt(act.get('to_s'), '.0f')} s after the load began)"],
        ["trace close -> judge score row p50 / p99, all rows", _lat(c2s)],
        ["  answered calls only", _lat(c2s, "answered_")],
        ["  close -> handed to the executor", _lat(parts.get("queued", {}))],
        ["  the call (LatencyMs: slot, HTTP, retries)", _lat(parts.get("call", {}))],
        ["  batch wait + collection", _lat(parts.get("rest", {}))],
        [f"ingest -> judge score p50 / p99 - settle ({summary.get('settle_s'):g} s)",
         f"{fmt(i2s.get('p50_minus_settle_s'), '.2f')} / {fmt(i2s.get('p99_minus_settle_s'), '.2f')} s"],
        ["judge score rows (unique) / errors / shed",
         f"{fmt(rows.get('rows'))} ({fmt(rows.get('unique'))}) / {fmt(rows.get('errors'))} / {fmt(rows.get('shed'))}"],
        ["judge errors by class", errs],
        ["CPU %: fake LLM server / service / machine (100 = one core)",
         f"{fmt(fl.get('fake_cpu_pct'))} / {fmt(s.get('service_cpu_pct_mean'))} / {fmt(s.get('sys_busy_pct_mean'))}"],
    ]  # fmt: skip
    return markdown_table(("judging phase", "value"), table)


def print_judge_details(r: dict[str, Any]) -> None:
    by_min = r.get("judge", {}).get("close_to_score", {}).get("by_minute", [])
    if by_min:
        print("   trace close -> judge score by minute of load (minute: rows, p50 / p99 / max s):")
        for m in by_min:
            print(f"     {m['minute']}: {m['n']:,}, {m['p50_s']:.2f} / {m['p99_s']:.2f} / {m['max_s']:.2f}")
    pts = r.get("flight_series", [])
    if pts:
        step = max(1, len(pts) // 40)
        shown = [(p["t"], p["in_flight"]) for p in pts[::step]]
        print(f"   in flight at the fake server (t s, calls): {shown}")
    for k in ("flight_errors", "judges_done_after_windows_s", "judge_calls_busy_at_end"):
        if r.get(k) not in (None, [], {}):
            print(f"   {k}: {r[k]}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_load_arguments(p, duration=300.0)
    common.add_phase_arguments(p, "judging", skip_help="only the judging phase (needs --sampling-rate or --rate)",
                               close_wait_what="windows and judges")  # fmt: skip
    p.add_argument("--in-flight", type=int, default=2000, help="judge calls to keep in flight (default 2000)")
    p.add_argument(
        "--latency", type=float, default=2.0, help="the fake LLM server's latency per call, s (default 2)"
    )
    p.add_argument(
        "--sampling-rate",
        type=float,
        default=None,
        help="judge sampling over all judge rules (default: from the baseline)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=1,
        help="connections (each with its own rule and SDK client; default 1)",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="max_concurrency over all connections (default 2 x --in-flight)",
    )
    p.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="chat_completions",
        help="judge protocol (default chat_completions)",
    )
    p.add_argument(
        "--judge-timeout", type=float, default=60.0, help="the connections' timeout_s (default 60)"
    )
    p.add_argument(
        "--flight-interval", type=float, default=1.0, help="fake server sampling interval, s (default 1)"
    )
    p.add_argument("--tolerance", type=float, default=1 - GOAL_RATIO, help=argparse.SUPPRESS)
    return p  # fmt: skip


def service_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "TRACEJUDGE_WINDOWS__SETTLE_S": f"{args.settle_s:g}",
        "TRACEJUDGE_INGEST__PROJECT_KEYS": json.dumps(["deployment.environment"]),  # every span in 'bench'
        "TRACEJUDGE_JUDGING__MAX_PENDING": str(max(10_000, 5 * args.in_flight)),
        "TRACEJUDGE_API__SQL_MAX_EXECUTION_S": "120",  # the report's joins, after the load
        KEY_ENV: "not-a-secret",
    }
    return common.service_env(env, args.env)


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    cmd = tracejudge_cmd(args)
    env = service_env(args)
    summary: dict[str, Any] = {"tree": common.git_state(), "latency_s": args.latency, "protocol": args.protocol,
                               "connections": args.connections, "settle_s": args.settle_s,
                               "sample_interval": args.sample_interval, "spans_per_trace": args.spans_per_trace}  # fmt: skip
    results: list[dict[str, Any]] = []
    base = None
    if not args.skip_baseline:
        dur = args.baseline_duration if args.baseline_duration is not None else args.duration
        base = run_phase(args, cmd, "baseline (no rules)", dur, env)
        results.append(base)
        if "accepted_sps" not in base:
            return results, summary, []
    sampling, basis = choose_sampling_rate(args, base)
    summary.update({"sampling_rate": sampling, "sampling_basis": basis})
    print(f"judge sampling rate {sampling:.4f} ({basis})", flush=True)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"tj-bench-fake-llm-{os.getpid()}.log"
    fake = FakeLLM(args.latency, log)
    try:
        fake.start()
        conns = make_connections(args, fake)
        rule_list = make_judge_rules(conns, sampling)
        label = f"judging ({args.in_flight:,} in flight)"
        results.append(run_phase(args, cmd, label, args.duration, env, fake, conns, rule_list))
    finally:
        fake.stop()
        if args.keep_data:
            summary["fake_llm_log"] = str(log)
        else:
            with contextlib.suppress(OSError):
                log.unlink()
    summary.update(summarize(args, base, results[-1]))
    return results, summary, rule_list


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.max_concurrency is None:
        args.max_concurrency = 2 * args.in_flight
    common.interrupt_on_sigterm()
    try:
        results, summary, rule_list = run(args)
    except KeyboardInterrupt:
        print("interrupted: every started process was stopped", file=sys.stderr)
        return 130
    print()
    mix = {"rules": len(rule_list), "trace_scope": len(rule_list), "span_scope": 0}
    print(rules.render_tables(results, {**summary, "rules_mix": mix}, args.settle_s))
    judging = next((r for r in results if r.get("rules")), None)
    if judging is not None and "judge" in judging:
        print()
        print(render_judge_table(judging, summary))
    for r in results:
        rules.print_details(r)
        print_judge_details(r)
    print()
    print(summary_line("summary", summary))
    if args.json_out:
        doc = {"argv": sys.argv, "rules": rule_list, "results": results, "summary": summary}
        common.write_json(args.json_out, doc)
    ok = len(results) == (1 if args.skip_baseline else 2)
    ok = ok and all("error" not in r and r.get("check") == "OK" for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
