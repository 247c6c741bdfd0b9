"""One phase of a two-phase benchmark (``bench/rules.py``, ``bench/judges.py``): ``Phase``, the hooks of
``ingest.bench_tracejudge`` that create the rules once the service is ready, sample it during the load, wait for
the windows to close and collect the metrics and SQL figures after; ``run`` runs one."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from bench import common, ingest
from bench.metrics import (
    histogram_buckets,
    histogram_quantile,
    log_problems,
    metric_by,
    metric_sum,
    scrape,
    sql_rows,
)
from bench.monitor import Monitor, Profiler, summarize_series
from bench.service import ManagedServer, http_json, sql_row


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
        return e2e_latency(api, self.t0, self.args.e2e_sample, self.args.settle_s)


def e2e_latency(
    api: str, t0: float, sample: int, settle: float, scores_where: str = "1", spans_where: str = "1"
) -> dict[str, Any]:
    """Ingest -> first score of a trace, over 1/``sample`` of the traces (``scores_where`` and ``spans_where``
    narrow the scores and spans looked at), overall and per minute after ``t0``."""
    k = max(1, int(sample))
    t0_ms = int(t0 * 1000)
    inner = f"""
        SELECT (toUnixTimestamp64Micro(s.first) - toUnixTimestamp64Micro(t.ing)) / 1e6 AS d,
               intDiv(toUnixTimestamp64Milli(t.ing) - {t0_ms}, 60000) AS minute
        FROM (SELECT TraceId, min(Timestamp) AS first FROM scores
              WHERE cityHash64(TraceId) % {k} = 0 AND {scores_where} GROUP BY TraceId) AS s
        INNER JOIN (SELECT TraceId, max(IngestedAt) AS ing FROM otel_traces
                    WHERE ParentSpanId = '' AND cityHash64(TraceId) % {k} = 0 AND {spans_where}
                    GROUP BY TraceId) AS t
        ON s.TraceId = t.TraceId"""
    agg = "count(), quantileExact(0.5)(d), quantileExact(0.99)(d), max(d)"
    out: dict[str, Any] = {"sample": f"1/{k} of traces (cityHash64(TraceId) % {k} = 0)"}
    try:
        n, p50, p99, mx = sql_rows(api, f"SELECT {agg} FROM ({inner})", 120)[0]
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
        phase.args, cmd, label=label, env=env, span_filter=span_filter,
        on_ready=phase.on_ready, on_load_start=phase.on_load_start, after_load=phase.after_load,
    )  # fmt: skip
    phase.finish()
    result.update(phase.extra)
    result["rules"] = len(phase.rules)
    result["env"] = env
    result["tree"] = tree
    return result
