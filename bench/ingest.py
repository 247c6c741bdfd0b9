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
the generator and this script against a small stand-in receiver.

Everything targets 127.0.0.1, every loop is bounded, and every started process is
stopped on exit (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common, loadgen
from bench.common import fmt, markdown_table
from bench.sampling import (
    CountPoller,
    TreeSampler,
    cpu_by_thread_delta,
    persisted_metrics,
    stop_threads,
    thread_cpu_by_name,
    wait_drained,
)
from bench.service import HOST, ManagedServer, sql_row, tracejudge_cmd

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
        threads0 = thread_cpu_by_name(server.proc.pid)
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
        result: dict[str, Any] = {
            "server_cpu_s": sampler.cpu_s - cpu0,
            "server_cpu_by_thread_s": cpu_by_thread_delta(threads0, thread_cpu_by_name(server.proc.pid)),
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
# Self-test: a stand-in receiver with the tracejudge CLI/API shape
# ---------------------------------------------------------------------------


def stand_in_main(argv: list[str]) -> int:
    """``ingest.py --stand-in run --data-dir D --host H --otlp-grpc-port G --otlp-http-port P --api-port A``.

    Counts spans (unique (trace id, span id) pairs, duplicates kept), makes them "visible"
    0.3 s later, throttles every 7th request (429 + Retry-After / UNAVAILABLE + RetryInfo)
    and partially rejects every 11th (rejected spans are not stored).
    """
    from concurrent import futures
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import grpc
    from google.protobuf import duration_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["run"])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--host", default=HOST)
    p.add_argument("--otlp-grpc-port", type=int, required=True)
    p.add_argument("--otlp-http-port", type=int, required=True)
    p.add_argument("--api-port", type=int, required=True)
    a = p.parse_args(argv)
    os.makedirs(a.data_dir, exist_ok=True)

    lock = threading.Lock()
    pending: list[tuple[float, list[tuple[str, str]]]] = []
    visible: list[tuple[str, str]] = []
    nreq = [0]

    def take(keys: list[tuple[str, str]]) -> tuple[str, int]:
        """Decide the fate of one request: ("throttle"|"ok", rejected count)."""
        with lock:
            nreq[0] += 1
            n = nreq[0]
            if n % 7 == 0:
                return "throttle", 0
            rejected = 10 if n % 11 == 0 else 0
            pending.append((time.time() + 0.3, keys[rejected:]))
            return "ok", rejected

    def publish() -> None:
        now = time.time()
        with lock:
            while pending and pending[0][0] <= now:
                visible.extend(pending.pop(0)[1])

    def keys_from_proto(body: bytes) -> list[tuple[str, str]]:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        return [
            (s.trace_id.hex(), s.span_id.hex())
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]

    def keys_from_json(body: bytes) -> list[tuple[str, str]]:
        doc = json.loads(body)
        return [
            (s["traceId"].lower(), s["spanId"].lower())
            for rs in doc["resourceSpans"]
            for ss in rs["scopeSpans"]
            for s in ss["spans"]
        ]

    def grpc_export(body: bytes, context: grpc.ServicerContext) -> bytes:
        fate, rejected = take(keys_from_proto(body))
        if fate == "throttle":
            st = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="stand-in WAL full")
            ri = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=50_000_000))
            st.details.add().Pack(ri)
            context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in WAL full")
        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.rejected_spans = rejected
            resp.partial_success.error_message = "stand-in rejected some spans"
        return bytes(resp.SerializeToString())

    gserver = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", 64 * 2**20)],
    )
    gserver.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService",
                {"Export": grpc.unary_unary_rpc_method_handler(grpc_export)},
            ),
        )
    )
    gserver.add_insecure_port(f"{a.host}:{a.otlp_grpc_port}")

    class OTLPHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                import gzip

                body = gzip.decompress(body)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            is_json = ctype == "application/json"
            keys = keys_from_json(body) if is_json else keys_from_proto(body)
            fate, rejected = take(keys)
            if fate == "throttle":
                self._reply(429, b"", "text/plain", {"Retry-After": "0.05"})
                return
            if is_json:
                doc: dict[str, Any] = {}
                if rejected:
                    doc = {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": "stand-in"}}
                self._reply(200, json.dumps(doc).encode(), "application/json")
            else:
                resp = ExportTraceServiceResponse()
                if rejected:
                    resp.partial_success.rejected_spans = rejected
                self._reply(200, resp.SerializeToString(), "application/x-protobuf")

    class APIHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, code: int, doc: Any) -> None:
            b = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_GET(self) -> None:
            self._json(200 if self.path == "/readyz" else 404, {"ok": self.path == "/readyz"})

        def do_POST(self) -> None:
            q = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))["query"]
            publish()
            with lock:
                n, u = len(visible), len(set(visible))
            if "uniqExact" in q:
                self._json(
                    200, {"columns": ["c", "u"], "types": ["UInt64", "UInt64"], "data": [[n, u]], "rows": 1}
                )
            else:
                self._json(200, {"columns": ["c"], "types": ["UInt64"], "data": [[str(n)]], "rows": 1})

    hserver = ThreadingHTTPServer((a.host, a.otlp_http_port), OTLPHandler)
    aserver = ThreadingHTTPServer((a.host, a.api_port), APIHandler)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gserver.start()
    print(f"stand-in OTLP gRPC listening on {a.host}:{a.otlp_grpc_port}", flush=True)
    threading.Thread(target=hserver.serve_forever, daemon=True).start()
    print(f"stand-in OTLP HTTP listening on {a.host}:{a.otlp_http_port}", flush=True)
    threading.Thread(target=aserver.serve_forever, daemon=True).start()
    print(f"stand-in API listening on {a.host}:{a.api_port}", flush=True)
    stop.wait(timeout=3600)
    gserver.stop(2).wait(5)
    hserver.shutdown()
    aserver.shutdown()
    return 0


def self_test(args: argparse.Namespace) -> int:
    import random

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    failures: list[str] = []

    def expect(cond: bool, msg: str) -> None:
        print(("  ok   " if cond else "  FAIL ") + msg, flush=True)
        if not cond:
            failures.append(msg)

    print("self-test 1: payload templates")
    spec = loadgen.PayloadSpec(traces_per_request=20, spans_per_trace=10)
    tpl = loadgen.Template(spec, 3)
    seen: set[tuple[bytes, bytes]] = set()
    for _ in range(3):
        body = tpl.render()
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        rs = req.resource_spans[0]
        spans = list(rs.scope_spans[0].spans)
        expect(len(spans) == 200, f"200 spans per request ({len(spans)})")
        expect(len(rs.resource.attributes) == 6, "resource has 6 attributes incl. service.name")
        expect(all(len(s.attributes) == 12 for s in spans), "every span has 12 attributes")
        io = [
            len(kv.value.string_value)
            for s in spans
            for kv in s.attributes
            if kv.key in ("input.value", "output.value")
        ]
        expect(
            len(io) == 400 and min(io) >= 500 and max(io) <= 2000,
            f"input/output 500-2000 chars ({min(io)}-{max(io)})",
        )
        keys = {(s.trace_id, s.span_id) for s in spans}
        expect(len(keys) == 200 and not (keys & seen), "fresh unique (trace id, span id) per request")
        seen |= keys
        ids = {s.span_id for s in spans}
        expect(
            all(not s.parent_span_id or s.parent_span_id in ids for s in spans),
            "parent ids point at patched span ids",
        )
        now = time.time_ns()
        expect(
            all(
                abs(s.end_time_unix_nano - now) < 60e9 and s.end_time_unix_nano >= s.start_time_unix_nano
                for s in spans
            ),
            "timestamps are fresh and end >= start",
        )
    full = loadgen.Template(loadgen.PayloadSpec(), 0)
    per_span = len(full.body) / full.n_spans
    expect(
        2000 <= per_span <= 4000,
        f"default request: {full.n_spans} spans, {len(full.body) / 1e6:.2f} MB, {per_span:.0f} B/span",
    )
    t = time.perf_counter()
    for _ in range(20):
        full.render()
    expect(True, f"render cost {(time.perf_counter() - t) / 20 * 1000:.2f} ms per 500-span request")
    jt = loadgen.Template(spec, 3, "json")
    doc = json.loads(jt.render())
    js = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    expect(len({(s["traceId"], s["spanId"]) for s in js}) == 200, "OTLP/JSON variant has 200 unique id pairs")
    expect(
        all(len(s["traceId"]) == 32 and int(s["startTimeUnixNano"]) > 0 for s in js),
        "OTLP/JSON hex ids and string timestamps",
    )
    rnd = random.Random(0)
    s = rnd.choice(js)
    expect(
        s["parentSpanId"] == "" or s["parentSpanId"] in {x["spanId"] for x in js},
        "OTLP/JSON parent ids patched",
    )

    print(
        "self-test 2: full run against the stand-in receiver (gRPC + HTTP + HTTP/JSON, throttling, partial success)"
    )
    st_args = argparse.Namespace(**vars(args))
    st_args.duration, st_args.grpc, st_args.http, st_args.http_json = 4.0, 1, 1, 1
    st_args.traces_per_request, st_args.templates, st_args.drain_timeout = 10, 2, 20
    st_args.restart_check, st_args.rate, st_args.concurrency = False, 0.0, 2
    st_cmd = [sys.executable, "-m", "bench.ingest", "--stand-in"]
    r = bench_tracejudge(st_args, st_cmd, label="stand-in")
    print(render_table([r]))
    print_details(r)
    expect("error" not in r, f"run finished ({r.get('error', 'no error')})")
    expect(r.get("check") == "OK", f"loss/dup check {r.get('check')}")
    expect(r.get("throttled", 0) > 0, f"throttles counted and retried ({r.get('throttled')})")
    expect(r.get("spans_rejected", 0) > 0, f"partial_success rejects parsed ({r.get('spans_rejected')})")
    expect(r.get("accepted_sps", 0) > 0 and r.get("persisted_sps", 0) > 0, "rates computed")
    expect(set(r.get("by_transport", {})) == {"grpc", "http", "http-json"}, "all three transports sent")
    expect(r.get("peak_rss_mb", 0) > 0, "peak RSS sampled")

    print("self-test 3: --rate pacing")
    st_args.duration, st_args.rate, st_args.grpc, st_args.http, st_args.http_json = 4.0, 2000.0, 1, 1, 0
    st_args.concurrency = 1
    r2 = bench_tracejudge(st_args, st_cmd, label="stand-in rate")
    print(render_table([r2]))
    acc = r2.get("accepted_sps", 0)
    expect(
        1400 <= acc <= 2200,
        f"offered ~2000 spans/s at --rate 2000 (accepted {r2.get('accepted_sps', 0):.0f}/s)",
    )
    expect(r2.get("check") == "OK", f"loss/dup check {r2.get('check')}")

    print(f"self-test: {'PASSED' if not failures else 'FAILED: ' + '; '.join(failures)}")
    return 0 if not failures else 1


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
    p.add_argument("--stand-in", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--stand-in":
        return stand_in_main(argv[1:])
    args = build_parser().parse_args(argv)
    common.interrupt_on_sigterm()
    if args.self_test:
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
