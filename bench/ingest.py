"""Ingest benchmark for tracejudge (``make bench-ingest``).

Starts ``tracejudge run`` in a fresh temporary data dir on free loopback ports, drives
it with pre-encoded realistic OTLP spans from several client processes (gRPC and
HTTP, see ``bench/loadgen.py``), and reports:

* accepted spans/s (acknowledged by the receiver, minus partial-success rejects),
* persisted spans/s (visible through ``SELECT count() FROM otel_traces``, polled every
  second through the SQL API, during the run and until drained),
* request latency p50/p99, throttled requests (429 / UNAVAILABLE, retried),
* peak RSS of the service process tree,
* a loss/duplicate check: ``count() == uniqExact(TraceId, SpanId) == acknowledged``.

``--with-phoenix`` runs the same generator against Arize Phoenix in the same
invocation (``bench/peers/phoenix.py``) and prints the ratio.  ``--self-test`` checks
the generator and this script against a small stand-in receiver (``bench/stand_in.py``).

Everything targets 127.0.0.1, every loop is bounded, and every started process is
stopped on exit (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common, loadgen
from bench.common import fmt, markdown_table
from bench.sampling import (
    CountPoller,
    TreeSampler,
    by_process,
    cpu_by_thread_delta,
    persisted_metrics,
    stop_threads,
    tree_thread_cpu,
    wait_drained,
)
from bench.service import ManagedServer, sql_row, tracejudge_cmd

# ---------------------------------------------------------------------------
# One benchmark run against tracejudge (or the stand-in)
# ---------------------------------------------------------------------------


def bench_tracejudge(
    args: argparse.Namespace,
    server_cmd: list[str],
    label: str = "tracejudge",
    *,
    env: dict[str, str] | None = None,
    span_filter: str = "",
    on_ready: Callable[[ManagedServer], None] | None = None,
    on_load_start: Callable[[ManagedServer, float], None] | None = None,
    after_load: Callable[[ManagedServer, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """One run against a fresh service; returns the result dict (see ``table_row``).

    Hooks for other benchmarks (``bench/rules.py``, ``bench/judges.py``): ``env`` is added to the service's
    environment; ``span_filter`` (a SQL condition) narrows the spans counted as the load's; ``on_ready(server)``
    runs once it is ready, before the load; ``on_load_start(server, t0)`` when the clients start;
    ``after_load(server, result)`` once the spans are drained and counted, while the service still runs (it
    may add keys to ``result``).
    """
    spec = loadgen.PayloadSpec(
        traces_per_request=args.traces_per_request, spans_per_trace=args.spans_per_trace
    )
    mix = common.mix_from_args(args)
    work = Path(tempfile.mkdtemp(prefix="tj-bench-"))
    server = ManagedServer(server_cmd, work / "data", work, args.server_arg or [], env=env)
    result: dict[str, Any] = {
        "target": label,
        "mix": common.mix_label(mix, args),
        "duration_s": args.duration,
        "spans_per_request": spec.spans_per_request,
        "command": " ".join(server.cmd),
    }
    run = _Run(args, label, server, span_filter)
    try:
        with common.errors_into(result):
            print(f"[{label}] starting: {' '.join(server.cmd)}", flush=True)
            server.start()
            print(f"[{label}] ready in {server.startup_s:.1f} s (ports {server.ports})", flush=True)
            result["startup_s"] = server.startup_s
            if on_ready is not None:
                on_ready(server)
            result.update(run.load(mix, spec, on_load_start))
            if after_load is not None:
                after_load(server, result)
            if args.restart_check and result["count"] >= 0:
                run.restart_check(server_cmd, work, env, result)
            result["data_dir_mb"] = common.files_mb((work / "data").rglob("*"))
    finally:
        stop_threads(run.poller, run.sampler)
        if server.proc is not None:
            server.stop()
            result.setdefault("shutdown_s", server.shutdown_s)
            result.setdefault("exit_code", server.exit_code)
        result["server_log_tail"] = server.tail(30)
        common.keep_or_remove(work, args, result)
    return result


class _Run:
    """The measured part of ``bench_tracejudge``: samplers, the load, draining, the loss/duplicate check."""

    def __init__(self, args: argparse.Namespace, label: str, server: ManagedServer, span_filter: str) -> None:
        self.args, self.label, self.server = args, label, server
        where = f" WHERE {span_filter}" if span_filter else ""
        self.count_q = f"SELECT count() FROM otel_traces{where}"
        self.verify_q = f"SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces{where}"
        self.sampler: TreeSampler | None = None
        self.poller: CountPoller | None = None

    def load(
        self,
        mix: dict[str, int],
        spec: loadgen.PayloadSpec,
        on_load_start: Callable[[ManagedServer, float], None] | None,
    ) -> dict[str, Any]:
        args, server, label = self.args, self.server, self.label
        assert server.proc is not None
        self.sampler = sampler = TreeSampler(server.proc.pid)
        sampler.start()
        cpu0 = sampler.cpu_s
        threads0 = tree_thread_cpu(server.proc.pid)
        self.poller = poller = CountPoller(
            lambda: sql_row(server.api, self.count_q, timeout=args.query_timeout)[0]
        )
        poller.poll_once()
        self.base = base = poller.last()
        if base:
            print(f"[{label}] warning: table already holds {base} spans", flush=True)

        def on_start(t0: float) -> None:
            poller.start()
            if on_load_start is not None:
                on_load_start(server, t0)

        stats, t0, t_end = common.run_load(args, mix, server.ports, spec, args.duration, args.rate, on_start)
        acked = stats["spans_acked"]
        print(
            f"[{label}] clients done: acked {acked} spans in {args.duration:.0f} s, "
            f"throttled {stats['throttled']}, errors {stats['errors']}; waiting for persistence",
            flush=True,
        )
        wait_drained(poller, base + acked, args.drain_timeout, args.stall_timeout)
        poller.stop()
        poller.poll_once()
        sampler.sample()
        threads = cpu_by_thread_delta(threads0, tree_thread_cpu(server.proc.pid), top=1000)
        result: dict[str, Any] = {
            "server_cpu_s": sampler.cpu_s - cpu0,
            "server_cpu_by_process_s": by_process(threads),
            "server_cpu_by_thread_s": dict(list(threads.items())[:12]),
        }
        timeout = max(args.query_timeout, 120)
        cnt, uniq = common.count_unique(lambda: sql_row(server.api, self.verify_q, timeout=timeout), result)
        sampler.stop()
        result.update(persisted_metrics(poller, t0, args.duration, base + acked))
        result.update(common.load_figures(stats, args.duration, sampler, poller, t0, t_end))
        result.update({"count": cnt, "uniq": uniq, "check": check_label(cnt, uniq, base + acked)})
        return result

    def restart_check(
        self, server_cmd: list[str], work: Path, env: dict[str, str] | None, result: dict[str, Any]
    ) -> None:
        """SIGTERM the service, start it again on the same data and count again."""
        self.server.stop()
        result["shutdown_s"] = self.server.shutdown_s
        result["exit_code"] = self.server.exit_code
        server2 = ManagedServer(server_cmd, work / "data", work, self.args.server_arg or [], env=env)
        server2.start()
        try:
            c2, u2 = sql_row(server2.api, self.verify_q, 120)
            acked = self.base + result["spans_acked"]
            result["after_restart"] = {"count": c2, "uniq": u2, "check": check_label(c2, u2, acked)}
        finally:
            server2.stop()


def check_label(count: int, uniq: int, acked: int) -> str:
    if count < 0:
        return "FAIL (verify query failed)"
    if count == uniq == acked:
        return "OK"
    parts = []
    if count < acked:
        parts.append(f"lost {acked - count}")
    if count > uniq:
        parts.append(f"dup {count - uniq}")
    if uniq > acked:
        parts.append(f"unacked-stored {uniq - acked}")
    return "FAIL (" + ", ".join(parts) + f"; count={count} uniq={uniq} acked={acked})"


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

COLUMNS = (
    "target",
    "transport mix",
    "duration",
    "accepted spans/s",
    "persisted spans/s",
    "p50 / p99 request ms",
    "throttled requests",
    "peak RSS MB",
    "loss/dup check",
)


def table_row(r: dict[str, Any]) -> list[str]:
    if "error" in r and "accepted_sps" not in r:
        return [
            r["target"],
            r.get("mix", ""),
            f"{r.get('duration_s', 0):g} s",
            "ERROR",
            "-",
            "-",
            "-",
            "-",
            r["error"][:80],
        ]
    dur = f"{r['duration_s']:g} s"
    if r.get("drain_s") == r.get("drain_s") and r.get("drain_s") is not None:
        dur += f" (+{r['drain_s']:.0f} s drain)"
    elif not r.get("drained", True):
        dur += f" (not drained after {r.get('observed_drain_s', 0):.0f} s)"
    persisted = fmt(r["persisted_sps"])
    return [
        r["target"],
        r["mix"],
        dur,
        fmt(r["accepted_sps"]),
        persisted,
        f"{fmt(r['p50_ms'], '.0f')} / {fmt(r['p99_ms'], '.0f')}",
        str(r["throttled"]),
        fmt(r["peak_rss_mb"]),
        r["check"],
    ]


def render_table(results: list[dict[str, Any]]) -> str:
    return markdown_table(COLUMNS, [table_row(r) for r in results])


def print_details(r: dict[str, Any]) -> None:
    keys = (
        "startup_s",
        "spans_acked",
        "persisted_final",
        "visible_at_client_stop",
        "persisted_sps_during_load",
        "persisted_sps_steady",
        "drain_s",
        "requests_ok",
        "errors",
        "spans_rejected",
        "spans_failed",
        "spans_abandoned",
        "max_ms",
        "server_cpu_s",
        "server_cpu_by_process_s",
        "server_cpu_by_thread_s",
        "client_cpu_s",
        "peak_main_rss_mb",
        "count_query_ms_p50",
        "count_query_ms_max",
        "data_dir_mb",
        "shutdown_s",
        "exit_code",
        "after_restart",
        "by_transport",
        "error_samples",
        "reject_samples",
        "worker_errors",
        "count_poll_errors",
        "verify_error",
        "error",
        "note",
    )
    print(f"-- {r['target']} details")
    for k in keys:
        if k in r and r[k] not in ([], None):
            v = r[k]
            print(f"   {k}: {fmt(v, ',.1f') if isinstance(v, float) else v}")
    if "acked_by_second" in r:
        print(f"   acked spans per second: {r['acked_by_second']}")
    if "count_series" in r:
        series = r["count_series"]
        step = max(1, len(series) // 40)
        print(
            f"   visible count (t s, spans): {series[::step] + ([series[-1]] if series and step > 1 else [])}"
        )


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_load_arguments(p)
    p.add_argument(
        "--restart-check",
        action="store_true",
        help="after the run, SIGTERM the service, start it again on the same data and recount",
    )
    p.add_argument("--skip-tracejudge", action="store_true", help="only run the peer (with --with-phoenix)")
    p.add_argument(
        "--with-phoenix", action="store_true", help="also run Arize Phoenix (bench/peers/phoenix.py)"
    )
    p.add_argument(
        "--phoenix-duration", type=float, default=30.0, help="load seconds for Phoenix (default 30)"
    )
    p.add_argument(
        "--phoenix-drain-timeout",
        type=float,
        default=120.0,
        help="max wait for Phoenix persistence after its load (default 120)",
    )
    p.add_argument("--phoenix-rate", type=float, default=0.0, help="total target spans/s for Phoenix")
    p.add_argument("--self-test", action="store_true", help="check the generator against a stand-in receiver")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    common.interrupt_on_sigterm()
    if args.self_test:
        from bench.stand_in import self_test

        return self_test(args)
    results: list[dict[str, Any]] = []
    if not args.skip_tracejudge:
        results.append(bench_tracejudge(args, tracejudge_cmd(args)))
    if args.with_phoenix:
        from bench.peers import phoenix

        results.append(phoenix.bench_phoenix(args))
    print()
    print(render_table(results))
    for r in results:
        print_details(r)
    tj = next((r for r in results if r["target"] == "tracejudge" and "persisted_sps" in r), None)
    px = next((r for r in results if r["target"].startswith("phoenix") and "persisted_sps" in r), None)
    summary: dict[str, Any] = {}
    if tj and px and px["persisted_sps"] > 0:
        summary["ratio_persisted"] = tj["persisted_sps"] / px["persisted_sps"]
        summary["ratio_accepted"] = tj["accepted_sps"] / max(px["accepted_sps"], 1e-9)
        print(
            f"\nratio tracejudge / phoenix: persisted {summary['ratio_persisted']:.0f}x, "
            f"accepted {summary['ratio_accepted']:.1f}x"
        )
    if tj:
        goal = tj["persisted_sps"] >= 20000 and tj["check"] == "OK" and args.duration >= 60
        summary["goal_20k_sustained_60s_no_loss"] = goal
        summary["stretch_40k"] = tj["persisted_sps"] >= 40000 and tj["check"] == "OK" and args.duration >= 60
        print(
            f"goal (>= 20,000 persisted spans/s, 60 s, no loss): {'MET' if goal else 'NOT MET'}; "
            f"stretch 40k: {'MET' if summary['stretch_40k'] else 'not met'}"
        )
    if args.json_out:
        common.write_json(args.json_out, {"argv": sys.argv, "results": results, "summary": summary})
    ok = all("error" not in r and r.get("check") == "OK" for r in results if r["target"] == "tracejudge")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
