"""`make bench-ui` (issue 12): the web UI's server time per page with 1,000,000 spans stored.

Starts `tracejudge run` on free loopback ports, loads `tracejudge demo` (rules, scores, annotations) and
`--spans` of the ingest benchmark's spans (bench/loadgen.py: 50 traces x 10 spans a request, 500-2000
characters of input and output a span) spread over the last 7 days, waits until every span is stored, then
GETs each page `--requests` times on one keep-alive connection and reports the time from sending the request
to reading the last byte of the answer, p50 and p99 (a page answered 404 is not built yet: skipped, noted).

    python -m bench.ui [--spans 1000000] [--requests 30] [--data-dir DIR] [--json-out FILE]

`--data-dir` keeps the loaded data for another run (a directory that already holds the spans is not loaded
again). `--quick` (20,000 spans, 5 requests) is what tests/integration/test_bench_ui.py runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.service import HOST, REPO_DIR, ManagedServer, http_json, sql_row, tracejudge_cmd

WEEK_NS = 7 * 24 * 3600 * 10**9
SLOWEST = (
    "SELECT TraceId, max(Duration) / 1e6 AS ms FROM otel_traces GROUP BY TraceId ORDER BY ms DESC LIMIT 20"
)


def post_spans(port: int, spans: int, threads: int) -> float:
    """Post `spans` loadgen spans (whole requests of 500) over OTLP/HTTP, each request at a random time of the
    last week; a refused request is sent again after a pause. The seconds it took."""
    spec = loadgen.PayloadSpec()
    templates = loadgen.build_templates(spec, 20, "protobuf")
    left = list(range(-(-spans // spec.spans_per_request)))
    lock, now = threading.Lock(), time.time_ns()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        while True:
            with lock:
                if not left:
                    return
                i = left.pop()
            body = templates[i % len(templates)].render(now - rng.randrange(WEEK_NS))
            for _ in range(100):
                conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    break
                time.sleep(float(resp.getheader("Retry-After") or 0.5))

    t0 = time.monotonic()
    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.monotonic() - t0


def load(args: argparse.Namespace, server: ManagedServer, cmd: list[str]) -> dict[str, Any]:
    """The demo and `args.spans` more spans, unless the data directory holds them already."""
    stored = sql_row(server.api, "SELECT count() FROM otel_traces")[0]
    info: dict[str, Any] = {"already_stored": stored}
    if stored >= args.spans:
        return info
    subprocess.run(
        [*cmd, "demo", "--api-url", server.api], check=True, cwd=REPO_DIR, stdout=subprocess.DEVNULL
    )
    info["send_s"] = round(post_spans(server.ports["http"], args.spans, args.threads), 1)
    t0, target = time.monotonic(), stored + args.spans
    while sql_row(server.api, "SELECT count() FROM otel_traces")[0] < target:
        if time.monotonic() - t0 > args.store_timeout:
            raise RuntimeError(f"fewer than {target} spans stored after {args.store_timeout} s")
        time.sleep(2)
    info["store_wait_s"] = round(time.monotonic() - t0, 1)
    return info


def pages(api: str) -> list[tuple[str, str]]:
    """(label, path) of each page timed; ids are the demo's (a RAG trace, its rule)."""
    _, rules = http_json("GET", api + "/api/v1/rules?project=demo-rag")
    _, scores = http_json("GET", api + "/api/v1/scores?source=ANNOTATION&project=demo-rag&limit=1")
    trace, rule = scores["scores"][0]["trace_id"], rules["rules"][0]["id"]
    return [
        ("traces (newest 50, last 7 d)", "/traces"),
        ("traces, text search", "/traces?text=refund"),  # a word of every loadgen span: no granule skipped
        ("traces, rare text search", "/traces?text=single+sign-on"),  # only in a few demo traces
        ("traces, errors only", "/traces?errors=1"),
        ("traces, one project", "/traces?project=demo-agent"),
        ("traces, score condition", "/traces?score_name=cites_source&score_op=failed"),
        ("traces, session", "/traces?session_id=rag-session-1-000"),
        ("trace view", f"/traces/{trace}"),
        ("rules", "/rules"),
        ("rule page", f"/rules/{rule}"),
        ("new rule form", "/rules/new"),
        ("connections", "/connections"),
        ("sql (slowest traces)", "/sql?" + urllib.parse.urlencode({"query": SLOWEST})),
    ]


def time_page(port: int, path: str, n: int) -> tuple[int, list[float]]:
    """The status of a first GET of `path` and, when 200, the ms of `n` more (request sent to last byte)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    conn.request("GET", path)
    first = conn.getresponse()
    first.read()
    if first.status != 200:
        return first.status, []
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return 200, times


def measure(server: ManagedServer, n: int) -> list[dict[str, Any]]:
    rows = []
    for label, path in pages(server.api):
        status, times = time_page(server.ports["api"], path, n)
        row: dict[str, Any] = {"page": label, "path": path, "status": status}
        if times:
            p50, p99 = loadgen.percentile(times, 50), loadgen.percentile(times, 99)
            row |= {"p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "n": n}
            print(f"  {label:<30} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   ({path[:60]})")
        else:
            print(f"  {label:<30} skipped: {status} (page not built yet?)")
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    cmd = tracejudge_cmd(args)
    with tempfile.TemporaryDirectory(prefix="tracejudge-bench-ui-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        env = {"TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2"}
        server = ManagedServer(cmd, data_dir, Path(tmp), [], env=env)
        server.start()
        try:
            info = load(args, server, cmd)
            spans = sql_row(server.api, "SELECT count(), uniqExact(TraceId) FROM otel_traces")
            print(f"stored: {spans[0]:,} spans, {spans[1]:,} traces ({info})")
            result = {"spans": spans[0], "traces": spans[1], "load": info, "load_avg": os.getloadavg(),
                      "pages": measure(server, args.requests)}  # fmt: skip
        finally:
            server.stop()
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Server time per web UI page with many spans stored.")
    p.add_argument("--spans", type=int, default=1_000_000, help="spans to store besides the demo's")
    p.add_argument("--requests", type=int, default=30, help="timed GETs per page (after one untimed)")
    p.add_argument("--threads", type=int, default=4, help="connections posting the spans")
    p.add_argument("--store-timeout", type=float, default=1800.0, help="seconds to wait for the spans stored")
    p.add_argument("--data-dir", type=Path, help="keep (or reuse) the loaded data here")
    p.add_argument("--quick", action="store_true", help="20,000 spans and 5 requests a page")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--tracejudge-cmd", help='default: the venv\'s tracejudge, e.g. "python -m tracejudge"')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.spans, args.requests = 20_000, 5
    result = run(args)
    if args.json_out:
        args.json_out.write_text(json.dumps({"args": {"spans": args.spans, "requests": args.requests},
                                             "result": result}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
