"""Scores API benchmark (``make bench-scores``): scores/s accepted and persisted through ``POST /api/v1/scores``.

One fresh ``tracejudge run`` (``bench/service.py``'s ``ManagedServer``, a temporary data dir, embedded
ClickHouse unless ``--server-arg``/``--env`` say otherwise), then ``--clients`` (4) client processes, each with
``--concurrency`` (1) keep-alive connections, posting lists of ``--batch`` (100) scores as fast as the service
answers for ``--duration`` (60) s. Every score has a fresh ``score_id`` made by its client
(``bench-<client>-<conn>-<n>``) and realistic fields: a name from a small set with its type (NUMERIC,
BOOLEAN, CATEGORICAL), a trace id from a pool, on every other score a span id, some comments and metadata.

Reported: scores/s accepted (the answers' ``accepted``), persisted (``count()`` of ``scores FINAL`` with
``Source IN ('API', 'ANNOTATION')`` at the end, once it stops growing, per second of load plus the wait for it
after the load: an answer means durable in the scores log, stored in ClickHouse shortly after), whether every
accepted id is stored exactly once (``uniqExact(ScoreId)`` = ``count()`` = accepted), answer latency
p50/p99/max, refused requests by status, and the service's CPU (its process tree, psutil) as % of one core.
The goal (issue 10): at least 20,000 scores/s persisted.

Everything runs on 127.0.0.1, every wait is bounded, every started process is stopped (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import fmt, markdown_table
from bench.loadgen import percentile
from bench.sampling import TreeSampler, cpu_by_thread_delta, thread_cpu_by_name
from bench.service import HOST, ManagedServer, sql_row, tracejudge_cmd

PATH = "/api/v1/scores"
GOAL_SPS = 20_000
PERSISTED_QUERY = "SELECT count(), uniqExact(ScoreId) FROM scores FINAL WHERE Source IN ('API', 'ANNOTATION')"
CATEGORIES = ("friendly", "neutral", "rude")
COMMENTS = ("thumbs up from the user", "checked against the order record", "answer cites the wrong policy")

# ---------------------------------------------------------------------------
# The clients
# ---------------------------------------------------------------------------


def make_score(rng: random.Random, score_id: str, trace_ids: list[str]) -> dict[str, Any]:
    """One score as an application posts it: a name with its type, a trace (every other one a span)."""
    kind = rng.randrange(5)
    score: dict[str, Any] = {"score_id": score_id, "trace_id": rng.choice(trace_ids)}
    if kind == 0:
        score.update(name="accuracy", value=round(rng.random(), 3), data_type="NUMERIC")
    elif kind == 1:
        score.update(name="relevance", value=round(rng.random(), 3))  # type inferred
    elif kind == 2:
        score.update(name="user_feedback", value=rng.random() < 0.8, data_type="BOOLEAN")
    elif kind == 3:
        score.update(name="tone", value=rng.choice(CATEGORIES), data_type="CATEGORICAL")
    else:
        score.update(name="reviewed", value=rng.randrange(2), data_type="BOOLEAN", source="ANNOTATION")
    if rng.random() < 0.5:
        score["observation_id"] = f"{rng.getrandbits(64):016x}"
    if rng.random() < 0.3:
        score["comment"] = rng.choice(COMMENTS)
    if rng.random() < 0.2:
        score["metadata"] = {"app_version": "1.4.2", "user_tier": rng.choice(("free", "pro"))}
    return score


class Connection(threading.Thread):
    """One keep-alive connection posting batches until ``stop_at``; keeps its latencies and counts."""

    def __init__(self, port: int, prefix: str, batch: int, stop_at: float, timeout: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.port, self.prefix, self.batch, self.stop_at, self.timeout = port, prefix, batch, stop_at, timeout
        self.rng = random.Random(seed)
        self.trace_ids = [f"{self.rng.getrandbits(128):032x}" for _ in range(500)]
        self.latencies_ms: list[float] = []
        self.accepted = 0
        self.sent = 0
        self.refused: dict[str, int] = {}
        self.item_errors: list[Any] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"}
        n = 0
        while time.time() < self.stop_at:
            body = json.dumps([make_score(self.rng, f"{self.prefix}-{n + i}", self.trace_ids)
                               for i in range(self.batch)]).encode()  # fmt: skip
            n += self.batch
            t0 = time.perf_counter()
            try:
                conn.request("POST", PATH, body, headers)
                resp = conn.getresponse()
                answer = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self._refuse(type(e).__name__)
                conn.close()
                time.sleep(0.1)
                continue
            self.latencies_ms.append((time.perf_counter() - t0) * 1000)
            self.sent += self.batch
            if resp.status in (200, 207):
                doc = json.loads(answer)
                self.accepted += int(doc["accepted"])
                if doc["errors"] and len(self.item_errors) < 5:
                    self.item_errors.append(doc["errors"][:3])
            else:
                self._refuse(str(resp.status))
        conn.close()

    def _refuse(self, what: str) -> None:
        self.refused[what] = self.refused.get(what, 0) + 1


def client_main(index: int, port: int, args: dict[str, Any], start_at: float, out: Any) -> None:
    """A client process: ``concurrency`` connections from ``start_at`` for ``duration`` s; its figures to ``out``."""
    time.sleep(max(0.0, start_at - time.time()))
    stop_at = start_at + args["duration"]
    conns = [Connection(port, f"bench-{index}-{c}", args["batch"], stop_at, args["request_timeout"],
                        seed=index * 1000 + c) for c in range(args["concurrency"])]  # fmt: skip
    for c in conns:
        c.start()
    for c in conns:
        c.join()
    refused: dict[str, int] = {}
    for c in conns:
        for k, v in c.refused.items():
            refused[k] = refused.get(k, 0) + v
    out.put({
        "accepted": sum(c.accepted for c in conns), "sent": sum(c.sent for c in conns),
        "latencies_ms": [x for c in conns for x in c.latencies_ms], "refused": refused,
        "item_errors": [e for c in conns for e in c.item_errors][:5], "end": time.time(),
    })  # fmt: skip


def run_clients(port: int, args: argparse.Namespace, start_at: float) -> list[dict[str, Any]]:
    """The client processes (spawned), started together at ``start_at``; their figures."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    opts = {k: getattr(args, k) for k in ("duration", "batch", "concurrency", "request_timeout")}
    procs = [ctx.Process(target=client_main, args=(i, port, opts, start_at, out), daemon=True)
             for i in range(args.clients)]  # fmt: skip
    for p in procs:
        p.start()
    try:
        wait = start_at - time.time() + args.duration + args.request_timeout + 60
        return [out.get(timeout=max(wait, 1.0)) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------


def wait_persisted(api: str, target: int, timeout: float) -> tuple[int, int, float]:
    """(stored rows, unique ids, seconds waited) once the count reaches ``target`` or stops growing."""
    t0 = time.time()
    last = (-1, -1)
    while True:
        cnt, uniq = sql_row(api, PERSISTED_QUERY, timeout=120)
        if cnt >= target or (cnt, uniq) == last or time.time() - t0 > timeout:
            return cnt, uniq, time.time() - t0
        last = (cnt, uniq)
        time.sleep(1.0)


def measure(server: ManagedServer, args: argparse.Namespace) -> dict[str, Any]:
    """The load against a started server, and what it stored."""
    assert server.proc is not None
    sampler = TreeSampler(server.proc.pid)
    sampler.sample()
    cpu0, threads0 = sampler.cpu_s, thread_cpu_by_name(server.proc.pid)
    sampler.start()
    start_at = time.time() + 3.0  # the spawned clients import and connect first
    figures = run_clients(server.ports["api"], args, start_at)
    sampler.stop()
    wall = max(f["end"] for f in figures) - start_at
    cpu = sampler.cpu_s - cpu0
    accepted = sum(f["accepted"] for f in figures)
    stored, unique, waited = wait_persisted(server.api, accepted, args.drain_timeout)
    lat = [x for f in figures for x in f["latencies_ms"]]
    refused: dict[str, int] = {}
    for f in figures:
        for k, v in f["refused"].items():
            refused[k] = refused.get(k, 0) + v
    return {
        "duration_s": args.duration, "client_wall_s": wall, "requests": len(lat),
        "sent": sum(f["sent"] for f in figures), "accepted": accepted,
        "accepted_sps": accepted / wall, "stored": stored, "stored_unique": unique,
        "persisted_sps": stored / (wall + waited), "persist_wait_s": waited,
        "exactly_once": stored == unique == accepted,
        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat, default=float("nan")),
        "refused": refused, "item_errors": [e for f in figures for e in f["item_errors"]][:5],
        "service_cpu_s": cpu, "service_cpu_pct_of_core": cpu / wall * 100,
        "service_cpu_by_thread_s": cpu_by_thread_delta(threads0, thread_cpu_by_name(server.proc.pid)),
        "peak_rss_mb": sampler.peak_rss / common.MB,
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"tree": common.git_state()}
    work = Path(tempfile.mkdtemp(prefix="bench-scores-"))
    env = common.service_env({}, args.env)
    server = ManagedServer(tracejudge_cmd(args), work / "data", work, args.server_arg or [], env)
    try:
        with common.errors_into(result):
            server.start()
            result["startup_s"] = server.startup_s
            result.update(measure(server, args))
    finally:
        server.stop()
        if "error" in result or not result.get("exactly_once", False):
            result["server_log_tail"] = server.tail(30)
        common.keep_or_remove(work, args, result)
    return result


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    if "accepted_sps" not in r:
        return f"ERROR: {r.get('error')}\n{r.get('server_log_tail', '')}"
    cols = ("clients", "duration", "accepted scores/s", "persisted scores/s", "stored once",
            "p50 / p99 / max answer ms", "service CPU (% of a core)", "refused requests")  # fmt: skip
    row = [
        f"{args.clients} x {args.concurrency} conn, {args.batch}/request",
        f"{r['client_wall_s']:.0f} s", fmt(r["accepted_sps"]), fmt(r["persisted_sps"]),
        f"{'yes' if r['exactly_once'] else 'NO'} ({r['stored']:,} rows, {r['stored_unique']:,} ids, "
        f"{r['accepted']:,} accepted)",
        f"{fmt(r['p50_ms'], '.1f')} / {fmt(r['p99_ms'], '.1f')} / {fmt(r['max_ms'], '.0f')}",
        fmt(r["service_cpu_pct_of_core"]), str(r["refused"] or 0),
    ]  # fmt: skip
    goal = "met" if r["persisted_sps"] >= GOAL_SPS else "NOT met"
    return "\n".join([
        markdown_table(cols, [row]), "",
        f"goal {GOAL_SPS:,} scores/s persisted: {goal}; service CPU by thread (s): {r['service_cpu_by_thread_s']}",
    ])  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--concurrency", type=int, default=1, help="connections per client process (default 1)")
    p.add_argument("--batch", type=int, default=100, help="scores per request (default 100)")
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--drain-timeout", type=float, default=120.0, help="max wait for the rows after the load")
    common.add_service_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    common.interrupt_on_sigterm()
    result = run(args)
    print(render(result, args))
    if result.get("item_errors"):
        print(f"refused items (first): {result['item_errors']}")
    if args.json_out:
        common.write_json(args.json_out, {"argv": sys.argv, "args": vars(args), "result": result})
    return 0 if result.get("exactly_once") and "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
