"""The ingest benchmark's self-test (``python -m bench.ingest --self-test``): the load generator's payloads, and
whole runs of ``bench_tracejudge`` against a stand-in receiver with the tracejudge CLI/API shape
(``stand_in_main``, run as ``python -m bench.stand_in run --data-dir D --host H --otlp-grpc-port G ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from bench import loadgen
from bench.ingest import bench_tracejudge, print_details, render_table
from bench.service import HOST

# ---------------------------------------------------------------------------
# Self-test: a stand-in receiver with the tracejudge CLI/API shape
# ---------------------------------------------------------------------------


def stand_in_main(argv: list[str]) -> int:
    """``python -m bench.stand_in run --data-dir D --host H --otlp-grpc-port G --otlp-http-port P --api-port A``.

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
    st_cmd = [sys.executable, "-m", "bench.stand_in"]
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


if __name__ == "__main__":
    sys.exit(stand_in_main(sys.argv[1:]))
