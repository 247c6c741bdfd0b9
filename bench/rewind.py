"""Rewind benchmark (``make bench-rewind``, issue 11): how fast a rewind re-scores stored traces, alone and
under live traffic, and what it costs the live traffic.

One ``tracejudge run`` (embedded chDB, a temporary data dir, no rules at first) with
``ingest.project_keys = ["deployment.environment"]``, then:

0. **store**: ``--spans`` (1,000,000) of the ingest benchmark's spans (``bench/loadgen.py`` templates, 10 spans
   a trace) posted over OTLP/HTTP into project ``bench``, waited for until all are stored; then two rules with
   the same filter and two code scorers: ``rewind`` on ``bench`` and ``live`` on ``live`` (the live load's
   project), so the rewind's scores and the live ones never mix. The filter (``FILTER``: the root span's
   prompt token count below 2025, uniform in 50..4000) matches about half the traces; checked with one SQL
   count (``MATCHED_SQL``) and the rewind's dry run;
1. **alone**: ``POST /api/v1/rules/{rewind}/rewind`` over every stored trace, followed until it succeeds:
   traces/s covered (the job's total / wall time from the POST to ``succeeded``; and the job's own
   ``rate_per_s``), and ``count()`` of ``scores FINAL`` of the rule (= matched x 2);
2. **baseline**: live traffic at a fixed ``--live-rate`` (5,000) spans/s into ``live`` for ``--live-s`` s
   (default: 3 x the rewind's time alone, 20 to 600 s) without a rewind: accepted / offered spans, throttled
   requests (429 / UNAVAILABLE), ingest -> first score p50/p99 of the live rule (``bench/phase.py``'s SQL);
3. **under load**: the same live traffic with the same rewind started ``--rewind-after`` (3) s into it: the
   same live figures, compared with (2), and the rewind's rate (and whether it ended while the load ran).

Goals (issue 11): alone >= 10,000 traces/s; under live load live ingest >= 0.95 of offered with nothing
throttled, live p99 <= 2 x the baseline's, and the rewind >= 5,000 traces/s. ``--quick`` is a small run for
the test (``tests/integration/test_bench_rewind.py``). Everything runs on 127.0.0.1, every wait is bounded,
the service is stopped on exit (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import common, loadgen
from bench.phase import e2e_latency
from bench.rewind_report import render
from bench.rewind_store import store_spans, wait_stored
from bench.sampling import cpu_by_thread_delta, thread_cpu_by_name
from bench.service import ManagedServer, http_json, sql_row, tracejudge_cmd

STORED, LIVE = "bench", "live"  # the projects: deployment.environment of the stored and of the live spans
FILTER = "is_root AND attributes['llm.token_count.prompt'] < 2025"
MATCHED_SQL = (
    "SELECT count() FROM (SELECT TraceId FROM otel_traces WHERE Project = '{project}' GROUP BY TraceId "
    "HAVING countIf(ParentSpanId = '' AND toInt64OrZero(SpanAttributes['llm.token_count.prompt']) < 2025) > 0)"
)
SCORERS = [
    {"type": "code", "name": "mentions_refund", "function": "contains",
     "args": {"value": "refund", "case_sensitive": False}},
    {"type": "code", "name": "sane_length", "function": "length_between", "args": {"min": 100, "max": 1800}},
]  # fmt: skip
SCORES_SQL = "SELECT count() FROM scores FINAL WHERE RuleId = '{rule}'"
SINCE = "2000-01-01T00:00:00Z"  # every stored trace: the window is the project's whole history


def make_rule(api: str, name: str, project: str) -> dict[str, Any]:
    body = {"name": name, "project": project, "scope": "trace", "filter": FILTER, "scorers": SCORERS}
    status, rule = http_json("POST", api + "/api/v1/rules", body)
    if status != 201:
        msg = f"creating rule {name}: HTTP {status}: {rule}"
        raise RuntimeError(msg)
    return dict(rule)


def run_rewind(api: str, rule_id: str, since: str, timeout: float) -> dict[str, Any]:
    """POST a rewind and follow its job until it ends: the job's view, wall time, pauses seen."""
    t0 = time.time()
    status, started = http_json("POST", f"{api}/api/v1/rules/{rule_id}/rewind", {"since": since})
    if status != 202:
        msg = f"rewind: HTTP {status}: {started}"
        raise RuntimeError(msg)
    job: dict[str, Any] = {}
    paused: set[str] = set()
    while time.time() < t0 + timeout:
        job = dict(http_json("GET", f"{api}/api/v1/jobs/{started['job_id']}")[1])
        if job["paused"]:
            paused.add(job["paused"])
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    wall = time.time() - t0
    total = job.get("counts", {}).get("total", 0)
    return {"job": job, "state": job.get("state"), "wall_s": wall, "t_post": t0, "t_end": t0 + wall,
            "traces_per_s": total / wall if wall > 0 else 0.0, "job_rate_per_s": job.get("rate_per_s"),
            "paused_seen": sorted(paused)}  # fmt: skip


def settled_count(api: str, query: str, timeout: float, polls: int = 3) -> int:
    """A count once it held for ``polls`` polls a second apart (or at ``timeout``)."""
    deadline, last, same = time.time() + timeout, -1, 0
    while True:
        n = sql_row(api, query, 120)[0]
        same = same + 1 if n == last else 0
        if same >= polls or time.time() > deadline:
            return n
        last = n
        time.sleep(1.0)


def live_phase(
    args: argparse.Namespace, server: ManagedServer, live_rule: str, rewind: str | None
) -> dict[str, Any]:
    """Live traffic at ``--live-rate`` for ``--live-s`` s; with ``rewind`` (a rule id) a rewind of it starts
    ``--rewind-after`` s into it. The live figures, and the rewind's."""
    spec = loadgen.PayloadSpec(environment=LIVE)
    out: dict[str, Any] = {}
    thread: threading.Thread | None = None

    def on_start(t0: float) -> None:
        nonlocal thread
        if rewind is not None:

            def go() -> None:
                time.sleep(max(0.0, t0 + args.rewind_after - time.time()))
                out["rewind"] = run_rewind(server.api, rewind, SINCE, args.rewind_timeout)

            thread = threading.Thread(target=go, daemon=True)
            thread.start()

    mix = {"http": args.live_clients}
    live_q = f"SELECT count() FROM scores WHERE RuleId = '{live_rule}'"
    scores0 = sql_row(server.api, live_q, 120)[0]
    stats, t0, t_end = loadgen.run_clients(mix, "127.0.0.1", server.ports, spec, args.live_s, rate=args.live_rate,
                                           concurrency=2, templates=4, on_start=on_start)  # fmt: skip
    if thread is not None:
        thread.join(timeout=args.rewind_timeout)
    offered = args.live_rate * args.live_s
    out.update({
        "duration_s": args.live_s, "offered_spans": offered, "accepted_spans": stats["spans_acked"],
        "ingest_ratio": stats["spans_acked"] / offered, "throttled": stats["throttled"],
        "client_errors": stats["errors"], "request_p99_ms": stats["p99_ms"],
        "live_scores": settled_count(server.api, live_q, args.drain_timeout) - scores0,
    })  # fmt: skip
    lo, hi = int(t0 * 1000), int((t0 + args.live_s) * 1000)
    out["e2e"] = e2e_latency(
        server.api, t0, args.e2e_sample, 0.0, f"RuleId = '{live_rule}'",
        f"Project = '{LIVE}' AND IngestedAt BETWEEN fromUnixTimestamp64Milli({lo}) AND fromUnixTimestamp64Milli({hi})",
    )  # fmt: skip
    if "rewind" in out:
        out["rewind"]["ended_during_load"] = out["rewind"]["t_end"] <= t_end
    return out


def prepare(args: argparse.Namespace, api: str, port: int, result: dict[str, Any]) -> tuple[str, str]:
    """Store the spans, create the two rules, count what the filter matches: (rewind rule id, live rule id)."""
    result["store"] = store_spans(port, args.spans, args.store_threads, STORED)
    result["store"]["stored_wait_s"] = wait_stored(api, STORED, args.spans, args.drain_timeout)
    rewind_rule, live_rule = (
        make_rule(api, "bench-rewind", STORED)["id"],
        make_rule(api, "bench-live", LIVE)["id"],
    )
    result["rules"] = {
        "rewind": rewind_rule,
        "live": live_rule,
        "filter": FILTER,
        "scorers": [s["name"] for s in SCORERS],
    }
    traces_q = f"SELECT uniqExact(TraceId) FROM otel_traces WHERE Project = '{STORED}'"
    result["traces"] = sql_row(api, traces_q, 120)[0]
    result["matched_sql"] = sql_row(api, MATCHED_SQL.format(project=STORED), 120)[0]
    result["scores_expected"] = 2 * result["matched_sql"]
    body = {"since": SINCE, "dry_run": True}
    status, dry = http_json("POST", f"{api}/api/v1/rules/{rewind_rule}/rewind", body)
    result["dry_run"] = dry if status == 200 else {"error": f"HTTP {status}: {dry}"}
    print(
        f"[rewind] stored {result['traces']:,} traces; the filter matches {result['matched_sql']:,}",
        flush=True,
    )
    return rewind_rule, live_rule  # fmt: skip


def measure(args: argparse.Namespace, server: ManagedServer, result: dict[str, Any]) -> None:
    """The phases against a started service; figures into ``result``."""
    assert server.proc is not None
    api, pid = server.api, server.proc.pid
    rewind_rule, live_rule = prepare(args, api, server.ports["http"], result)
    scores_q = SCORES_SQL.format(rule=rewind_rule)
    threads0 = thread_cpu_by_name(pid)
    alone = run_rewind(api, rewind_rule, SINCE, args.rewind_timeout)
    alone["service_cpu_by_thread_s"] = cpu_by_thread_delta(threads0, thread_cpu_by_name(pid))
    alone["scores_final"] = settled_count(api, scores_q, args.drain_timeout, polls=1)
    result["alone"] = alone
    print(f"[rewind] alone: {alone['state']} in {alone['wall_s']:.1f} s, {alone['traces_per_s']:,.0f} traces/s",
          flush=True)  # fmt: skip
    if args.live_s <= 0:
        args.live_s = min(600.0, max(20.0, 3 * alone["wall_s"]))
    result["live_s"] = args.live_s
    result["baseline"] = live_phase(args, server, live_rule, None)
    print(f"[rewind] baseline live phase: {_brief(result['baseline'])}", flush=True)
    result["under_load"] = live_phase(args, server, live_rule, rewind_rule)
    print(f"[rewind] live phase with a rewind: {_brief(result['under_load'])}", flush=True)
    result["scores_final"] = settled_count(api, scores_q, args.drain_timeout, polls=1)


def _brief(phase: dict[str, Any]) -> str:
    return (f"ingest {phase['ingest_ratio']:.3f} of offered, throttled {phase['throttled']}, "
            f"live p99 {phase['e2e'].get('p99_s', float('nan')):.2f} s")  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"tree": common.git_state(), "spans": args.spans}
    work = Path(tempfile.mkdtemp(prefix="bench-rewind-"))
    env = common.service_env(
        {"TRACEJUDGE_INGEST__PROJECT_KEYS": json.dumps(["deployment.environment"])}, args.env
    )
    server = ManagedServer(tracejudge_cmd(args), work / "data", work, args.server_arg or [], env)
    try:
        with common.errors_into(result):
            server.start()
            result["startup_s"] = server.startup_s
            measure(args, server, result)
    finally:
        server.stop()
        if "error" in result:
            result["server_log_tail"] = server.tail(30)
        common.keep_or_remove(work, args, result)
    return result


# fmt: off
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spans", type=int, default=1_000_000, help="stored spans (10 a trace; default 1,000,000)")
    p.add_argument("--quick", action="store_true", help="a small run: 20,000 spans, 4 s of live traffic")
    p.add_argument("--store-threads", type=int, default=4, help="connections posting the stored spans")
    p.add_argument("--live-rate", type=float, default=5000.0, help="live spans/s offered (default 5,000)")
    p.add_argument("--live-s", type=float, default=0.0,
                   help="seconds of live traffic per live phase (default: 3 x the rewind alone, 20 to 600)")
    p.add_argument("--live-clients", type=int, default=2, help="live HTTP client processes (default 2)")
    p.add_argument("--rewind-after", type=float, default=3.0, help="seconds into the live load to start the rewind")
    p.add_argument("--rewind-timeout", type=float, default=1800.0, help="max wait for a rewind to end")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="max wait for spans and scores to settle")
    p.add_argument("--e2e-sample", type=int, default=1, help="live latency over 1/N of the traces (default 1)")
    common.add_service_arguments(p)
    return p
# fmt: on


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.spans, args.live_s = 20_000, args.live_s or 4.0
    common.interrupt_on_sigterm()
    result = run(args)
    print(render(result))
    if args.json_out:
        common.write_json(args.json_out, {"argv": sys.argv, "args": vars(args), "result": result})
    ok = "error" not in result and result.get("scores_final") == result.get("scores_expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
