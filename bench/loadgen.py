"""OTLP trace load generator: pre-encoded realistic LLM spans and client workers.

Shared by ``bench/ingest.py`` and ``bench/peers/phoenix.py``; reusable by later benchmarks.

Payloads
    Each client process builds a few ``ExportTraceServiceRequest`` templates once
    (``traces_per_request`` traces x ``spans_per_trace`` spans, one resource with 6
    attributes, 12 attributes per span including ``input.value``/``output.value`` of
    500-2000 chars each).  Every id and timestamp in a template is a random sentinel;
    after serialising, the byte offsets of every sentinel are recorded.  ``render()``
    copies the template and writes fresh random trace/span ids (parent ids follow
    their span) and "now"-based timestamps at those offsets, so each request carries
    unique (TraceId, SpanId) pairs without re-serialising.  The same is done for
    OTLP/JSON (hex ids, decimal-string timestamps) for the optional JSON variant.

Workers
    ``worker_main`` runs in a child process (``multiprocessing`` spawn context) with
    ``concurrency`` threads, each with its own connection: gRPC through a raw
    ``unary_unary`` call with pre-serialised bytes, or HTTP/1.1 keep-alive through
    ``http.client``.  Throttling (HTTP 429/503, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED)
    is counted and the same payload is resent after the server's Retry-After /
    RetryInfo delay, like the OTel exporters do.  Only 200/OK answers count as
    acknowledged (minus ``partial_success.rejected_spans``).  Everything is bounded by
    the run deadline.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
import random
import string
import struct
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

GRPC_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRANSPORTS = ("grpc", "http", "http-json")

# ---------------------------------------------------------------------------
# Realistic span content
# ---------------------------------------------------------------------------

_COMMON_WORDS = tuple(
    " ".join(
        (
            "the a to of and in is for that you with on it this be are as your can have we will order account",
            "refund payment customer please thanks help issue support policy return shipping delivery invoice",
            "model answer question context document retrieved relevant according sorry understand check status",
            "number date time days week month price plan subscription cancel upgrade password login email address",
        )
    ).split(" ")
)

MODELS = ("gpt-4o-mini", "gpt-4.1", "claude-sonnet-4", "llama-3.1-70b", "mistral-large")
SPAN_SHAPES = (
    # (span name, openinference kind, OTLP SpanKind)
    ("agent.run", "AGENT", 1),
    ("ChatCompletion", "LLM", 3),
    ("retrieve", "RETRIEVER", 1),
    ("embedding", "EMBEDDING", 3),
    ("tool.lookup_order", "TOOL", 1),
    ("ChatCompletion", "LLM", 3),
    ("rerank", "RERANKER", 1),
    ("guardrail.check", "GUARDRAIL", 1),
    ("ChatCompletion", "LLM", 3),
    ("format_answer", "CHAIN", 1),
)


def _vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    words = list(_COMMON_WORDS)
    letters = string.ascii_lowercase
    while len(words) < size:
        words.append("".join(rng.choices(letters, k=rng.randint(2, 11))))
    return words


def _text(rng: random.Random, vocab: list[str], n_chars: int) -> str:
    out: list[str] = []
    total = 0
    while total < n_chars:
        w = rng.choice(vocab)
        out.append(w)
        total += len(w) + 1
    s = " ".join(out)[:n_chars]
    return s[0].upper() + s[1:]


@dataclass
class PayloadSpec:
    traces_per_request: int = 50
    spans_per_trace: int = 10
    io_min_chars: int = 500
    io_max_chars: int = 2000
    error_ratio: float = 0.05
    seed: int = 1
    environment: str = "bench"  # deployment.environment of every resource (a project key)

    @property
    def spans_per_request(self) -> int:
        return self.traces_per_request * self.spans_per_trace


def _sentinel_bytes(rng: random.Random, n: int, used: set[bytes]) -> bytes:
    while True:
        b = rng.randbytes(n)
        if b not in used and 0 not in b:
            used.add(b)
            return b


def _sentinel_ts(rng: random.Random, used: set[bytes]) -> int:
    # 19-digit nanosecond values (like real timestamps) that are unique in the payload
    while True:
        v = rng.randrange(1_600_000_000_000_000_000, 1_999_999_999_999_999_999)
        key = v.to_bytes(8, "little")
        if key not in used:
            used.add(key)
            return v


def _build_model(
    spec: PayloadSpec, rng: random.Random, vocab: list[str], template_idx: int
) -> dict[str, Any]:
    """A plain-python description of one request, with sentinel ids/timestamps."""
    used: set[bytes] = set()
    service = f"support-bot-{template_idx % 4}"
    resource = [
        ("service.name", service),
        ("service.version", f"1.{template_idx % 7}.3"),
        ("deployment.environment", spec.environment),
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.language", "python"),
        ("host.name", f"bench-host-{template_idx % 3}"),
    ]
    traces = []
    ts_rel: dict[int, int] = {}  # sentinel timestamp -> offset (ns) relative to "now"
    for _t in range(spec.traces_per_request):
        trace_id = _sentinel_bytes(rng, 16, used)
        session = f"sess-{rng.randrange(100000)}"
        user = f"user-{rng.randrange(20000)}"
        span_ids = [_sentinel_bytes(rng, 8, used) for _ in range(spec.spans_per_trace)]
        trace_start = -rng.randrange(2_000_000_000, 30_000_000_000)  # started 2-30 s ago
        spans = []
        for i in range(spec.spans_per_trace):
            name, oi_kind, kind = SPAN_SHAPES[i % len(SPAN_SHAPES)]
            parent = b"" if i == 0 else span_ids[0 if i < 4 else rng.randrange(0, i)]
            start_rel = trace_start + (0 if i == 0 else rng.randrange(1_000_000, 1_500_000_000))
            end_rel = min(start_rel + rng.randrange(5_000_000, 1_800_000_000), 0)
            if i == 0:
                end_rel = 0
            s_start = _sentinel_ts(rng, used)
            s_end = _sentinel_ts(rng, used)
            ts_rel[s_start] = start_rel
            ts_rel[s_end] = end_rel
            model = rng.choice(MODELS)
            prompt_tokens = rng.randrange(50, 4000)
            completion_tokens = rng.randrange(10, 1200)
            attrs: list[tuple[str, Any]] = [
                ("openinference.span.kind", oi_kind),
                ("llm.model_name", model),
                ("llm.provider", "openai" if model.startswith("gpt") else "other"),
                ("llm.token_count.prompt", prompt_tokens),
                ("llm.token_count.completion", completion_tokens),
                ("llm.token_count.total", prompt_tokens + completion_tokens),
                ("session.id", session),
                ("user.id", user),
                (
                    "llm.invocation_parameters",
                    json.dumps({"temperature": round(rng.random(), 2), "max_tokens": 1024, "top_p": 1}),
                ),
                ("input.mime_type", "text/plain"),
                ("input.value", _text(rng, vocab, rng.randint(spec.io_min_chars, spec.io_max_chars))),
                ("output.value", _text(rng, vocab, rng.randint(spec.io_min_chars, spec.io_max_chars))),
            ]
            is_error = rng.random() < spec.error_ratio
            events = []
            if is_error:
                events.append(
                    {
                        "name": "exception",
                        "ts": s_end,
                        "attrs": [
                            ("exception.type", "RateLimitError"),
                            ("exception.message", "upstream returned 429 Too Many Requests"),
                        ],
                    }
                )
            spans.append(
                {
                    "span_id": span_ids[i],
                    "parent": parent,
                    "name": name,
                    "kind": kind,
                    "start": s_start,
                    "end": s_end,
                    "attrs": attrs,
                    "events": events,
                    "status": (2, "upstream error") if is_error else (1, ""),
                }
            )
        traces.append({"trace_id": trace_id, "spans": spans})
    return {"resource": resource, "traces": traces, "ts_rel": ts_rel}


def _to_proto(model: dict[str, Any]) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    def kv(k: str, v: Any) -> KeyValue:
        out = KeyValue(key=k)
        if isinstance(v, bool):
            out.value.bool_value = v
        elif isinstance(v, int):
            out.value.int_value = v
        else:
            out.value.string_value = v
        return out

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kv(k, v) for k, v in model["resource"])
    ss = rs.scope_spans.add()
    ss.scope.name = "openinference.instrumentation.openai"
    ss.scope.version = "0.1.66"
    for tr in model["traces"]:
        for sp in tr["spans"]:
            s = Span(
                trace_id=tr["trace_id"],
                span_id=sp["span_id"],
                parent_span_id=sp["parent"],
                name=sp["name"],
                kind=sp["kind"],
                start_time_unix_nano=sp["start"],
                end_time_unix_nano=sp["end"],
                status=Status(code=sp["status"][0], message=sp["status"][1]),
            )
            s.attributes.extend(kv(k, v) for k, v in sp["attrs"])
            for ev in sp["events"]:
                e = s.events.add(name=ev["name"], time_unix_nano=ev["ts"])
                e.attributes.extend(kv(k, v) for k, v in ev["attrs"])
            ss.spans.append(s)
    return bytes(req.SerializeToString())


def _to_json(model: dict[str, Any]) -> bytes:
    def kv(k: str, v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"key": k, "value": {"boolValue": v}}
        if isinstance(v, int):
            return {"key": k, "value": {"intValue": str(v)}}
        return {"key": k, "value": {"stringValue": v}}

    spans = []
    for tr in model["traces"]:
        for sp in tr["spans"]:
            d: dict[str, Any] = {
                "traceId": tr["trace_id"].hex(),
                "spanId": sp["span_id"].hex(),
                "parentSpanId": sp["parent"].hex(),
                "name": sp["name"],
                "kind": sp["kind"],
                "startTimeUnixNano": str(sp["start"]),
                "endTimeUnixNano": str(sp["end"]),
                "attributes": [kv(k, v) for k, v in sp["attrs"]],
                "status": {"code": sp["status"][0], "message": sp["status"][1]},
            }
            if sp["events"]:
                d["events"] = [
                    {
                        "name": ev["name"],
                        "timeUnixNano": str(ev["ts"]),
                        "attributes": [kv(k, v) for k, v in ev["attrs"]],
                    }
                    for ev in sp["events"]
                ]
            spans.append(d)
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv(k, v) for k, v in model["resource"]]},
                "scopeSpans": [
                    {
                        "scope": {"name": "openinference.instrumentation.openai", "version": "0.1.66"},
                        "spans": spans,
                    }
                ],
            }
        ]
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _find_all(body: bytes, needle: bytes) -> list[int]:
    out = []
    i = body.find(needle)
    while i >= 0:
        out.append(i)
        i = body.find(needle, i + 1)
    return out


class Template:
    """A pre-encoded request plus the offsets of every id and timestamp in it."""

    def __init__(self, spec: PayloadSpec, template_idx: int, encoding: str = "protobuf") -> None:
        if encoding not in ("protobuf", "json"):
            raise ValueError(encoding)
        rng = random.Random(spec.seed * 1_000_003 + template_idx)
        vocab = _vocabulary(rng)
        model = _build_model(spec, rng, vocab, template_idx)
        self.encoding = encoding
        self.n_spans = spec.spans_per_request
        body = _to_proto(model) if encoding == "protobuf" else _to_json(model)
        self.body = body
        json_mode = encoding == "json"

        def enc_id(b: bytes) -> bytes:
            return b.hex().encode() if json_mode else b

        # id groups: (raw length, offsets). A span id also appears as its children's parent id.
        self.id_groups: list[tuple[int, list[int]]] = []
        for tr in model["traces"]:
            offs = _find_all(body, enc_id(tr["trace_id"]))
            if len(offs) != len(tr["spans"]):
                raise RuntimeError(f"trace id sentinel found {len(offs)} times, want {len(tr['spans'])}")
            self.id_groups.append((16, offs))
            for sp in tr["spans"]:
                want = 1 + sum(1 for o in tr["spans"] if o["parent"] == sp["span_id"])
                offs = _find_all(body, enc_id(sp["span_id"]))
                if len(offs) != want:
                    raise RuntimeError(f"span id sentinel found {len(offs)} times, want {want}")
                self.id_groups.append((8, offs))
        # timestamp groups: (offset relative to now in ns, offsets)
        self.ts_groups: list[tuple[int, list[int]]] = []
        for sentinel, rel in model["ts_rel"].items():
            needle = str(sentinel).encode() if json_mode else struct.pack("<Q", sentinel)
            offs = _find_all(body, needle)
            if not offs:
                raise RuntimeError("timestamp sentinel not found")
            self.ts_groups.append((rel, offs))
        self.id_bytes = sum(n for n, _ in self.id_groups)

    def render(self, now_ns: int | None = None) -> bytes:
        """A copy of the template with fresh random ids and timestamps around ``now_ns``."""
        buf = bytearray(self.body)
        rnd = os.urandom(self.id_bytes)
        pos = 0
        if self.encoding == "protobuf":
            for n, offs in self.id_groups:
                v = rnd[pos : pos + n]
                pos += n
                for o in offs:
                    buf[o : o + n] = v
            now = time.time_ns() if now_ns is None else now_ns
            pack = struct.pack_into
            for rel, offs in self.ts_groups:
                for o in offs:
                    pack("<Q", buf, o, now + rel)
        else:
            for n, offs in self.id_groups:
                v = rnd[pos : pos + n].hex().encode()
                pos += n
                w = 2 * n
                for o in offs:
                    buf[o : o + w] = v
            now = time.time_ns() if now_ns is None else now_ns
            for rel, offs in self.ts_groups:
                v = str(now + rel).encode()
                for o in offs:
                    buf[o : o + 19] = v
        return bytes(buf)


def build_templates(spec: PayloadSpec, count: int, encoding: str, base_index: int = 0) -> list[Template]:
    return [Template(spec, base_index + i, encoding) for i in range(count)]


# ---------------------------------------------------------------------------
# Response helpers
# ---------------------------------------------------------------------------


def rejected_spans_from_response(
    body: bytes, content_type: str = "application/x-protobuf"
) -> tuple[int, str]:
    """``partial_success.rejected_spans`` and its message from an Export response body."""
    if not body:
        return 0, ""
    if "json" in content_type:
        try:
            doc = json.loads(body)
        except ValueError:
            return 0, "unparsable JSON response"
        ps = (doc or {}).get("partialSuccess") or (doc or {}).get("partial_success") or {}
        return int(ps.get("rejectedSpans") or ps.get("rejected_spans") or 0), str(
            ps.get("errorMessage") or ""
        )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    resp = ExportTraceServiceResponse()
    resp.ParseFromString(body)
    if resp.HasField("partial_success"):
        return resp.partial_success.rejected_spans, resp.partial_success.error_message
    return 0, ""


def grpc_retry_delay(err: Any) -> float | None:
    """Retry delay in seconds from a grpc.RpcError (RetryInfo in status details, or retry-after metadata)."""
    try:
        md = err.trailing_metadata() or ()
    except Exception:
        return None
    for key, value in md:
        if key == "grpc-status-details-bin":
            try:
                from google.rpc import error_details_pb2, status_pb2

                st = status_pb2.Status()
                st.ParseFromString(value)
                for d in st.details:
                    if d.type_url.endswith("google.rpc.RetryInfo"):
                        ri = error_details_pb2.RetryInfo()
                        d.Unpack(ri)
                        return float(ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9)
            except Exception:
                pass
        elif key in ("retry-after", "retry-after-ms"):
            try:
                v = float(value)
                return v / 1000.0 if key == "retry-after-ms" else v
            except ValueError:
                pass
    return None


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# Client workers
# ---------------------------------------------------------------------------


@dataclass
class WorkerConfig:
    transport: str  # grpc | http | http-json
    host: str
    port: int
    spec: PayloadSpec = field(default_factory=PayloadSpec)
    templates: int = 4
    concurrency: int = 1  # threads (connections) in this process
    rate: float = 0.0  # spans/s for this process; 0 = as fast as allowed
    duration: float = 60.0
    gzip: bool = False
    timeout: float = 30.0
    default_retry_delay: float = 1.0
    max_retry_delay: float = 5.0
    http_path: str = "/v1/traces"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class WorkerStats:
    transport: str
    requests_ok: int = 0
    spans_sent_ok: int = 0  # spans in 200/OK requests
    spans_acked: int = 0  # minus partial_success rejected
    spans_rejected: int = 0
    throttled: int = 0  # 429/503/UNAVAILABLE answers (each retried)
    errors: int = 0  # other failures (counted per attempt)
    spans_failed: int = 0  # spans given up (non-retryable error)
    spans_abandoned: int = 0  # spans still unacknowledged at the deadline
    error_samples: list[str] = field(default_factory=list)
    reject_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # successful attempts
    throttle_latencies_ms: list[float] = field(default_factory=list)
    acked_by_second: dict[int, int] = field(default_factory=dict)
    payload_bytes: int = 0  # wire bytes of one request (first template)
    build_s: float = 0.0
    render_ms_total: float = 0.0
    cpu_s: float = 0.0

    def note_error(self, msg: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(msg[:300])


class _Sender:
    """One connection; ``send`` returns (kind, retry_delay, rejected, message, latency_ms)."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.conn: Any = None
        self.channel: Any = None
        self.call: Any = None
        self._connect()

    def _connect(self) -> None:
        cfg = self.cfg
        if cfg.transport == "grpc":
            import grpc

            self.channel = grpc.insecure_channel(
                f"{cfg.host}:{cfg.port}",
                options=[
                    ("grpc.max_send_message_length", -1),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ("grpc.enable_retries", 0),
                ],
                compression=grpc.Compression.Gzip if cfg.gzip else None,
            )
            self.call = self.channel.unary_unary(
                GRPC_EXPORT_METHOD, request_serializer=None, response_deserializer=None
            )
        else:
            self.conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=cfg.timeout)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.conn is not None:
            self.conn.close()

    def send(self, body: bytes) -> tuple[str, float | None, int, str, float]:
        if self.cfg.transport == "grpc":
            return self._send_grpc(body)
        return self._send_http(body)

    def _send_grpc(self, body: bytes) -> tuple[str, float | None, int, str, float]:
        import grpc

        t0 = time.perf_counter()
        try:
            resp = self.call(body, timeout=self.cfg.timeout)
        except grpc.RpcError as e:
            lat = (time.perf_counter() - t0) * 1000
            code = e.code()
            delay = grpc_retry_delay(e)
            if code == grpc.StatusCode.UNAVAILABLE or (
                code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None
            ):
                if delay is None and "connect" in (e.details() or "").lower():
                    return "conn", None, 0, f"{code.name}: {e.details()}", lat
                return "throttled", delay, 0, f"{code.name}: {e.details()}", lat
            if code in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.ABORTED,
            ):
                return "retry", None, 0, f"{code.name}: {e.details()}", lat
            return "fatal", None, 0, f"{code.name}: {e.details()}", lat
        lat = (time.perf_counter() - t0) * 1000
        rejected, msg = rejected_spans_from_response(resp)
        return "ok", None, rejected, msg, lat

    def _send_http(self, body: bytes) -> tuple[str, float | None, int, str, float]:
        cfg = self.cfg
        ctype = "application/json" if cfg.transport == "http-json" else "application/x-protobuf"
        headers = {"Content-Type": ctype, "Connection": "keep-alive", **cfg.headers}
        if cfg.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        t0 = time.perf_counter()
        try:
            self.conn.request("POST", cfg.http_path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            lat = (time.perf_counter() - t0) * 1000
            self.conn.close()
            self.conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=cfg.timeout)
            kind = "conn" if isinstance(e, ConnectionRefusedError) else "retry"
            return kind, None, 0, f"{type(e).__name__}: {e}", lat
        lat = (time.perf_counter() - t0) * 1000
        if r.will_close:
            self.conn.close()
            self.conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=cfg.timeout)
        if r.status == 200:
            rejected, msg = rejected_spans_from_response(data, r.getheader("Content-Type") or ctype)
            return "ok", None, rejected, msg, lat
        if r.status in (429, 502, 503, 504):
            return "throttled", _parse_retry_after(r.getheader("Retry-After")), 0, f"HTTP {r.status}", lat
        return "fatal", None, 0, f"HTTP {r.status}: {data[:200]!r}", lat


def _thread_loop(
    cfg: WorkerConfig,
    templates: list[Template],
    thread_idx: int,
    t_start: float,
    deadline: float,
    stats: WorkerStats,
    lock: threading.Lock,
) -> None:
    sender = _Sender(cfg)
    n_spans = templates[0].n_spans
    interval = (n_spans * cfg.concurrency / cfg.rate) if cfg.rate > 0 else 0.0
    next_send = t_start + (interval * thread_idx / max(cfg.concurrency, 1))
    k = thread_idx
    try:
        while True:
            now = time.time()
            if now >= deadline:
                return
            if interval:
                if next_send > now:
                    time.sleep(min(next_send - now, deadline - now))
                    if time.time() >= deadline:
                        return
                next_send = max(next_send + interval, time.time() - interval)
            tpl = templates[k % len(templates)]
            k += 1
            r0 = time.perf_counter()
            body = tpl.render()
            render_ms = (time.perf_counter() - r0) * 1000
            backoff = cfg.default_retry_delay
            while True:
                kind, delay, rejected, msg, lat = sender.send(body)
                if kind == "ok":
                    acked = n_spans - rejected
                    sec = int(time.time() - t_start)
                    with lock:
                        stats.requests_ok += 1
                        stats.spans_sent_ok += n_spans
                        stats.spans_acked += acked
                        stats.spans_rejected += rejected
                        stats.latencies_ms.append(lat)
                        stats.render_ms_total += render_ms
                        stats.acked_by_second[sec] = stats.acked_by_second.get(sec, 0) + acked
                        if rejected and len(stats.reject_samples) < 5:
                            stats.reject_samples.append(msg[:300])
                    break
                if kind == "fatal":
                    with lock:
                        stats.note_error(msg)
                        stats.spans_failed += n_spans
                    break
                if kind == "throttled":
                    with lock:
                        stats.throttled += 1
                        stats.throttle_latencies_ms.append(lat)
                    wait = min(delay if delay is not None else backoff, cfg.max_retry_delay)
                    backoff = min(backoff * 2, cfg.max_retry_delay)
                else:  # conn / retry: transient transport problem, same payload again
                    with lock:
                        stats.note_error(msg)
                    wait = min(backoff, cfg.max_retry_delay)
                    backoff = min(backoff * 2, cfg.max_retry_delay)
                if time.time() + wait >= deadline:
                    with lock:
                        stats.spans_abandoned += n_spans
                    return
                time.sleep(wait)
    finally:
        sender.close()


def run_worker(cfg: WorkerConfig, t_start: float, templates: list[Template] | None = None) -> WorkerStats:
    """Run one client process' threads until ``t_start + cfg.duration``; usable in-process too."""
    stats = WorkerStats(transport=cfg.transport)
    if templates is None:
        b0 = time.perf_counter()
        templates = build_templates(
            cfg.spec, cfg.templates, "json" if cfg.transport == "http-json" else "protobuf"
        )
        stats.build_s = time.perf_counter() - b0
    stats.payload_bytes = len(templates[0].body)
    lock = threading.Lock()
    deadline = t_start + cfg.duration
    threads = [
        threading.Thread(
            target=_thread_loop, args=(cfg, templates, i, t_start, deadline, stats, lock), daemon=True
        )
        for i in range(cfg.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.time()) + cfg.timeout + cfg.max_retry_delay + 5)
    return stats


def worker_main(
    cfg_dict: dict[str, Any], ready_q: Any, start_value: Any, go_event: Any, result_q: Any
) -> None:
    """Entry point of a client process (spawn context).

    Builds templates, reports ready, waits for ``go_event`` (its start wall time is in
    ``start_value``), runs, and puts ``asdict(WorkerStats)`` (or an error dict) on ``result_q``.
    """
    try:
        spec = PayloadSpec(**cfg_dict.pop("spec"))
        cfg = WorkerConfig(spec=spec, **cfg_dict)
        b0 = time.perf_counter()
        templates = build_templates(
            spec,
            cfg.templates,
            "json" if cfg.transport == "http-json" else "protobuf",
            base_index=os.getpid() % 1000,
        )
        build_s = time.perf_counter() - b0
        ready_q.put(os.getpid())
        if not go_event.wait(timeout=300):
            result_q.put({"error": "never started"})
            return
        c0 = time.process_time()
        stats = run_worker(cfg, start_value.value, templates)
        stats.build_s = build_s
        stats.cpu_s = time.process_time() - c0
        result_q.put(asdict(stats))
    except BaseException as e:  # report, never hang the parent
        result_q.put({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        with contextlib.suppress(Exception):
            ready_q.put(os.getpid())


# ---------------------------------------------------------------------------
# Orchestration helpers shared by ingest.py and peers/
# ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    idx = min(len(v) - 1, max(0, round(q / 100.0 * (len(v) - 1))))
    return v[idx]


def merge_stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {
        "requests_ok": 0,
        "spans_sent_ok": 0,
        "spans_acked": 0,
        "spans_rejected": 0,
        "throttled": 0,
        "errors": 0,
        "spans_failed": 0,
        "spans_abandoned": 0,
        "client_cpu_s": 0.0,
        "error_samples": [],
        "reject_samples": [],
        "worker_errors": [],
        "by_transport": {},
    }
    lat: list[float] = []
    by_sec: dict[int, int] = {}
    for r in results:
        if "error" in r:
            total["worker_errors"].append(r["error"])
            continue
        for k in (
            "requests_ok",
            "spans_sent_ok",
            "spans_acked",
            "spans_rejected",
            "throttled",
            "errors",
            "spans_failed",
            "spans_abandoned",
        ):
            total[k] += r[k]
        total["client_cpu_s"] += r.get("cpu_s", 0.0)
        total["error_samples"].extend(r["error_samples"])
        total["reject_samples"].extend(r["reject_samples"])
        lat.extend(r["latencies_ms"])
        for s, n in r["acked_by_second"].items():
            by_sec[int(s)] = by_sec.get(int(s), 0) + n
        bt = total["by_transport"].setdefault(
            r["transport"], {"workers": 0, "spans_acked": 0, "throttled": 0, "lat": [], "payload_bytes": 0}
        )
        bt["workers"] += 1
        bt["spans_acked"] += r["spans_acked"]
        bt["throttled"] += r["throttled"]
        bt["lat"].extend(r["latencies_ms"])
        bt["payload_bytes"] = r["payload_bytes"]
    for bt in total["by_transport"].values():
        lats = bt.pop("lat")
        bt["p50_ms"] = percentile(lats, 50)
        bt["p99_ms"] = percentile(lats, 99)
    total["p50_ms"] = percentile(lat, 50)
    total["p99_ms"] = percentile(lat, 99)
    total["max_ms"] = max(lat) if lat else float("nan")
    total["acked_by_second"] = [by_sec.get(s, 0) for s in range(max(by_sec) + 1)] if by_sec else []
    total["error_samples"] = total["error_samples"][:8]
    total["reject_samples"] = total["reject_samples"][:8]
    return total


def run_clients(
    mix: dict[str, int],
    host: str,
    ports: dict[str, int],
    spec: PayloadSpec,
    duration: float,
    rate: float = 0.0,
    concurrency: int = 1,
    templates: int = 4,
    use_gzip: bool = False,
    timeout: float = 30.0,
    http_path: str = "/v1/traces",
    on_start: Any = None,
    tick: Any = None,
) -> tuple[dict[str, Any], float, float]:
    """Start client processes per ``mix`` (transport -> process count), run them, merge results.

    ``on_start(t0)`` is called right after the start signal; ``tick()`` roughly every 0.25 s
    while clients run (the caller samples the server there).  Returns (merged stats, t0, t_end).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    n_workers = sum(mix.values())
    if n_workers <= 0:
        raise ValueError("no client processes")
    per_worker_rate = rate / n_workers if rate > 0 else 0.0
    ready_q = ctx.Queue()
    result_q = ctx.Queue()
    go = ctx.Event()
    start_value = ctx.Value("d", 0.0)
    procs = []
    try:
        for transport, count in mix.items():
            for _ in range(count):
                cfg = WorkerConfig(
                    transport=transport,
                    host=host,
                    port=ports["grpc" if transport == "grpc" else "http"],
                    spec=spec,
                    templates=templates,
                    concurrency=concurrency,
                    rate=per_worker_rate,
                    duration=duration,
                    gzip=use_gzip,
                    timeout=timeout,
                    http_path=http_path,
                )
                d = asdict(cfg)
                p = ctx.Process(target=worker_main, args=(d, ready_q, start_value, go, result_q), daemon=True)
                p.start()
                procs.append(p)
        for _ in procs:
            ready_q.get(timeout=300)
        t0 = time.time() + 0.2
        start_value.value = t0
        go.set()
        if on_start:
            on_start(t0)
        results: list[dict[str, Any]] = []
        hard_deadline = t0 + duration + timeout + 30
        while len(results) < len(procs) and time.time() < hard_deadline:
            if tick:
                tick()
            try:
                results.append(result_q.get(timeout=0.25))
            except Exception:
                if not any(p.is_alive() for p in procs) and result_q.empty():
                    break
        t_end = time.time()
        if len(results) < len(procs):
            results.append({"error": f"{len(procs) - len(results)} client process(es) gave no result"})
        return merge_stats(results), t0, t_end
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
