"""Scale-out benchmark (``make bench-scale``, issue 14): one tracejudge process against two, same run.

Each configuration gets a fresh ClickHouse server (the test's HTTP front over chDB, ``tests/fakes/
clickhouse_http.py``) and N ``tracejudge run`` processes on it, each with its own data directory. The rules of
``bench/rules.py`` (``--rules`` of them over the four service projects) are created through the first process;
``bench/loadgen.py``'s gRPC clients then send realistic traces, as fast as they are acknowledged, split evenly
over the processes. Every request holds whole traces, so sending a request to one process is what the
Collector's ``routing_key: traceID`` does with its traces. Measured, from the start of the load:

* persisted spans/s: acknowledged spans / the time until all are in ``otel_traces`` (the shared store);
* scored spans/s: closed traces (``tracejudge_window_closed_traces_total``, summed over the processes) x spans
  per trace / the time until every acknowledged trace is closed and evaluated;
* the loss/duplicate check of ``bench/ingest.py``: ``count() == uniqExact(TraceId, SpanId) == acknowledged``;
* the scoring step's thread time (``tracejudge_flow_stage_seconds_total{stage="scoring"}``: CPU, not the waits
  for ClickHouse), its look-ups of root-less parts and their wall time
  (``tracejudge_scoring_fragment_query_duration_seconds{operation="look-up"}``)
  and the traces it completed with another process's part (``tracejudge_scoring_foreign_fragments_total``),
  summed over the processes at the end.

On this 2-core machine the processes, the clients and the ClickHouse front all compete for the same cores: see
``bench/RESULTS.md`` for what that means on a real multi-core host.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.common import fmt, markdown_table, write_json
from bench.ingest import check_label
from bench.metrics import metric_sum, scrape
from bench.rules import SERVICE_PROJECTS, make_rules
from bench.service import HOST, ManagedServer, http_json, sql_row
from tests.fakes.clickhouse_http import clickhouse_http_front

ENV = {"TRACEJUDGE_WINDOWS__SETTLE_S": "1.0", "TRACEJUDGE_WINDOWS__IDLE_GAP_S": "2.0"}


@contextlib.contextmanager
def processes(n: int, work: Path, url: str) -> Iterator[list[ManagedServer]]:
    servers: list[ManagedServer] = []
    try:
        for i in range(n):
            (work / f"p{i}").mkdir(parents=True)
            server = ManagedServer([sys.executable, "-m", "tracejudge"], work / f"p{i}" / "data", work / f"p{i}",
                                   ["--clickhouse-dsn", url], env=ENV)  # fmt: skip
            server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


def create_rules(servers: list[ManagedServer], n: int) -> None:
    for rule in make_rules(n, SERVICE_PROJECTS, 1.0):
        status, doc = http_json("POST", servers[0].api + "/api/v1/rules", rule)
        if status != 201:
            msg = f"creating a rule failed: {status} {doc}"
            raise RuntimeError(msg)
    deadline = time.monotonic() + 60
    while any(metric_sum(scrape(s.api), "tracejudge_rules_loaded_rules") < n for s in servers):
        if time.monotonic() > deadline:
            msg = "the rules did not reach every process"
            raise RuntimeError(msg)
        time.sleep(0.3)


def load(servers: list[ManagedServer], args: argparse.Namespace, spec: loadgen.PayloadSpec) -> dict[str, Any]:
    """The clients, `args.clients` gRPC processes per tracejudge process, all at once; merged stats."""
    results: list[dict[str, Any]] = []

    def one(server: ManagedServer) -> None:
        stats, _, _ = loadgen.run_clients({"grpc": args.clients}, HOST, server.ports, spec, args.duration,
                                          concurrency=args.concurrency)  # fmt: skip
        results.append(stats)

    threads = [threading.Thread(target=one, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {key: sum(r[key] for r in results) for key in ("spans_acked", "throttled", "errors")}


def progress(servers: list[ManagedServer]) -> tuple[int, float]:
    """(spans stored, traces closed by all processes)."""
    stored = sql_row(servers[0].api, "SELECT count() FROM otel_traces WHERE ScopeName != 'tracejudge.judge'")[
        0
    ]
    closed = sum(metric_sum(scrape(s.api), "tracejudge_window_closed_traces_total") for s in servers)
    return stored, closed


def run(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    spec = loadgen.PayloadSpec()
    with clickhouse_http_front(work / "clickhouse") as url, processes(n, work, url) as servers:
        create_rules(servers, args.rules)
        t0 = time.monotonic()
        stats = load(servers, args, spec)
        acked = int(stats["spans_acked"])
        at_stop = progress(servers)
        reached: dict[str, float] = {}
        deadline = time.monotonic() + args.drain_timeout
        while len(reached) < 2 and time.monotonic() < deadline:
            stored, closed = progress(servers)
            now = time.monotonic() - t0
            if stored >= acked:
                reached.setdefault("persisted", now)
            if closed * spec.spans_per_trace >= acked:
                reached.setdefault("scored", now)
            time.sleep(0.5)
        scoring_s, foreign, lookups, lookup_s = (
            sum(metric_sum(scrape(s.api), name, **labels) for s in servers)
            for name, labels in (
                ("tracejudge_flow_stage_seconds_total", {"stage": "scoring"}),
                ("tracejudge_scoring_foreign_fragments_total", {}),
                ("tracejudge_scoring_fragment_query_duration_seconds_count", {"operation": "look-up"}),
                ("tracejudge_scoring_fragment_query_duration_seconds_sum", {"operation": "look-up"}),
            )
        )
        count, uniq = sql_row(
            servers[0].api,
            "SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces WHERE ScopeName != 'tracejudge.judge'",
            timeout=120,
        )
    return {
        "processes": n, "duration_s": args.duration, "spans_acked": acked,
        "accepted_sps": acked / args.duration, "throttled": stats["throttled"],
        "persisted_sps": acked / reached["persisted"] if "persisted" in reached else float("nan"),
        "scored_sps": acked / reached["scored"] if "scored" in reached else float("nan"),
        "persisted_at_stop": at_stop[0], "scored_spans_at_stop": at_stop[1] * spec.spans_per_trace,
        "check": check_label(count, uniq, acked), "scoring_stage_s": scoring_s, "foreign_fragments": int(foreign),
        "lookups": int(lookups), "lookup_s": lookup_s,
    }  # fmt: skip


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    header = ("processes", "load", "accepted spans/s", "persisted spans/s", "scored spans/s", "throttled",
              "loss/dup check", "scoring step s", "look-ups (s)", "foreign fragments")  # fmt: skip
    rows = [
        [str(r["processes"]), f"{r['duration_s']:g} s, {args.rules} rules", fmt(r["accepted_sps"]),
         fmt(r["persisted_sps"]), fmt(r["scored_sps"]), str(r["throttled"]), r["check"],
         f"{r['scoring_stage_s']:.1f}", f"{r['lookups']} ({r['lookup_s']:.1f})",
         str(r["foreign_fragments"])]
        for r in results
    ]  # fmt: skip
    return markdown_table(header, rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per configuration")
    p.add_argument("--rules", type=int, default=20, help="code rules (bench/rules.py's set)")
    p.add_argument("--clients", type=int, default=1, help="gRPC client processes per tracejudge process")
    p.add_argument("--concurrency", type=int, default=4, help="connections per client process")
    p.add_argument(
        "--drain-timeout", type=float, default=180.0, help="seconds to wait for storing and scoring"
    )
    p.add_argument("--processes", default="1,2", help="the configurations, e.g. 1,2")
    p.add_argument("--json", help="write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = []
    for n in (int(x) for x in args.processes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"tj-scale-{n}-") as tmp:
            print(f"[scale] {n} process(es): {args.duration:g} s of load", flush=True)
            results.append(run(n, args, Path(tmp)))
            print(f"[scale] {results[-1]}", flush=True)
    print(render(results, args))
    if args.json:
        write_json(args.json, {"results": results, "args": vars(args)})
    return 0 if all(r["check"] == "OK" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
