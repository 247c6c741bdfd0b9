"""Client retries are not duplicates (issue 13, item 4): the same request bytes sent again, on every transport,
are acknowledged again, stored once and counted in `tracejudge_receiver_duplicate_requests_total`."""

from __future__ import annotations

import json
import re
import uuid

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from connectors.otlp.grpc_server import EXPORT_METHOD
from tests.builders import otlp_request, otlp_span
from tests.integration.service import ServiceProcess, http
from tests.waiting import eventually

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}


def _protobuf(trace_id: str, spans: int) -> bytes:
    scope = ScopeSpans(
        spans=[
            Span(trace_id=bytes.fromhex(trace_id), span_id=(i + 1).to_bytes(8, "big"), name="s",
                 start_time_unix_nano=1_700_000_000_000_000_000 + i, end_time_unix_nano=1_700_000_000_000_001_000 + i)
            for i in range(spans)
        ]
    )  # fmt: skip
    return bytes(
        ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope])]).SerializeToString()
    )


def _json(trace_id: str, spans: int) -> bytes:
    doc = otlp_request(*(otlp_span(trace_id=trace_id, span_id=f"{i + 1:016x}") for i in range(spans)))
    return json.dumps(doc).encode()


def _duplicates(service: ServiceProcess) -> dict[str, float]:
    _, _, raw = http("GET", service.api + "/metrics")
    found = re.findall(
        r'tracejudge_receiver_duplicate_requests_total\{transport="(\w+)"\} ([0-9.e+]+)', raw.decode()
    )
    return {t: float(v) for t, v in found}


def test_a_resent_request_is_acknowledged_and_stored_once(service: ServiceProcess) -> None:
    ids = {name: uuid.uuid4().hex for name in ("grpc", "http-pb", "http-json", "api")}
    before = _duplicates(service)
    bodies = {
        "http-pb": (service.otlp_http + "/v1/traces", _protobuf(ids["http-pb"], 3), PB),
        "http-json": (service.otlp_http + "/v1/traces", _json(ids["http-json"], 3), JS),
        "api": (service.api + "/api/v1/traces", _json(ids["api"], 3), JS),
    }
    for url, body, headers in bodies.values():
        answers = [http("POST", url, body, headers) for _ in range(3)]
        assert [a[0] for a in answers] == [200, 200, 200]
        assert answers[1][2] == answers[0][2]  # the same answer, counts included
    with grpc.insecure_channel(service.otlp_grpc) as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        body = _protobuf(ids["grpc"], 3)
        for _ in range(2):
            ExportTraceServiceResponse.FromString(export(body, timeout=30))
    # the log has a partition per ingest worker, each stored in its own order: wait for all four traces
    quoted = ", ".join(f"'{t}'" for t in ids.values())
    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId IN ({quoted})", 12)
    rows = service.sql(
        f"SELECT TraceId, count() FROM otel_traces WHERE TraceId IN ({quoted}) GROUP BY TraceId"
    )
    assert sorted(n for _, n in rows) == [3, 3, 3, 3]

    def grown() -> dict[str, float]:  # the workers' counts reach /metrics within a second
        after = _duplicates(service)
        return {t: after.get(t, 0) - before.get(t, 0) for t in ("grpc", "http", "api")}

    eventually(grown, until=lambda g: g == {"grpc": 1, "http": 4, "api": 2}, timeout=30)


def test_a_request_with_other_bytes_is_stored(service: ServiceProcess) -> None:
    trace_id = uuid.uuid4().hex
    first, second = _json(trace_id, 2), _json(trace_id, 2).replace(b'"name"', b' "name"', 1)
    for body in (first, second):
        assert http("POST", service.otlp_http + "/v1/traces", body, JS)[0] == 200
    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'", 4)
