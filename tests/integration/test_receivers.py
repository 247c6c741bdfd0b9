"""Receivers end to end: real OpenTelemetry SDK exporters, every bad input, the API's answers."""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from tests.integration.service import ServiceProcess, http

FIXTURES = Path(__file__).resolve().parents[1] / "testdata" / "otlp"
PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}


def emit(exporter: SpanExporter, project: str, n_traces: int) -> list[str]:
    """Create `n_traces` traces of a root and a child LLM span through the real SDK; return trace ids."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "sdk-test", "tracejudge.project": project})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    ids = []
    for i in range(n_traces):
        with tracer.start_as_current_span("agent.run") as root:
            root.set_attribute("input.value", f"question {i}")
            root.set_attribute("output.value", f"answer {i}")
            root.set_attribute("session.id", "sess-1")
            with tracer.start_as_current_span("llm.call") as child:
                child.set_attribute("gen_ai.prompt", f"prompt {i}")
                child.set_attribute("gen_ai.completion", f"completion {i}")
                child.set_attribute("gen_ai.usage.input_tokens", 12)
            ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return ids


def test_sdk_grpc_exporter(service: ServiceProcess) -> None:
    project = f"grpc-{uuid.uuid4().hex[:8]}"
    ids = emit(GrpcExporter(endpoint=service.otlp_grpc, insecure=True), project, 5)
    service.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 10)
    rows = service.sql(
        f"SELECT SpanName, Input, Output, SessionId, ServiceName, SpanAttributes['gen_ai.usage.input_tokens'] "
        f"FROM otel_traces WHERE TraceId = '{ids[2]}' ORDER BY SpanName"
    )
    assert rows == [
        ["agent.run", "question 2", "answer 2", "sess-1", "sdk-test", ""],
        ["llm.call", "prompt 2", "completion 2", "", "sdk-test", "12"],
    ]


def test_sdk_grpc_exporter_with_gzip(service: ServiceProcess) -> None:
    from grpc import Compression as GrpcCompression

    project = f"grpcgz-{uuid.uuid4().hex[:8]}"
    emit(
        GrpcExporter(endpoint=service.otlp_grpc, insecure=True, compression=GrpcCompression.Gzip), project, 3
    )
    service.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 6)


def test_sdk_http_exporter_with_gzip(service: ServiceProcess) -> None:
    project = f"http-{uuid.uuid4().hex[:8]}"
    exporter = HttpExporter(endpoint=service.otlp_http + "/v1/traces", compression=Compression.Gzip)
    emit(exporter, project, 4)
    service.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 8)


def test_sdk_http_exporter_to_the_api_path(service: ServiceProcess) -> None:
    project = f"api-{uuid.uuid4().hex[:8]}"
    emit(HttpExporter(endpoint=service.api + "/api/v1/traces"), project, 2)
    service.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 4)


def test_seed_curl_example_and_trace_api(service: ServiceProcess) -> None:
    body = (FIXTURES / "json_int64_as_strings.json").read_bytes()
    doc = json.loads(body)
    doc["resourceSpans"][0]["resource"]["attributes"] = [
        {"key": "dokimos.project", "value": {"stringValue": "my-llm-app"}}
    ]
    trace_id = uuid.uuid4().hex
    span0 = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span0["traceId"] = trace_id
    span0["attributes"] += [
        {"key": "input", "value": {"stringValue": "What is the capital of France?"}},
        {"key": "output", "value": {"stringValue": "Paris."}},
    ]
    status, _, answer = http("POST", service.api + "/api/v1/traces", json.dumps(doc).encode(), JS)
    assert status == 200
    assert json.loads(answer) == {"acceptedSpans": 1, "rejectedSpans": 0, "traces": 1}
    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'", 1)
    trace = service.get_json(f"/api/v1/traces/{trace_id}")
    assert trace["project"] == "my-llm-app"
    (span,) = trace["spans"]
    assert span["input"] == "What is the capital of France?"
    assert span["output"] == "Paris."
    assert span["attributes"] == {"tokens": "42"}
    listed = service.get_json("/api/v1/traces?project=my-llm-app&since=2023-01-01T00:00:00Z&limit=10")
    assert trace_id in [t["trace_id"] for t in listed["traces"]]
    status, _, _ = http("GET", service.api + f"/api/v1/traces/{'ab' * 16}")
    assert status == 404
    status, _, _ = http("GET", service.api + "/api/v1/traces/not-an-id")
    assert status == 400


def test_api_path_partial_success(service: ServiceProcess) -> None:
    body = (FIXTURES / "reject_zero_trace_id.json").read_bytes()
    status, _, answer = http("POST", service.api + "/api/v1/traces", body, JS)
    assert status == 200
    doc = json.loads(answer)
    assert (doc["acceptedSpans"], doc["rejectedSpans"], doc["traces"]) == (1, 1, 1)
    assert "invalid trace id" in doc["partialSuccess"]["errorMessage"]


def test_otlp_http_partial_success_in_both_encodings(service: ServiceProcess) -> None:
    body = (FIXTURES / "reject_empty_name.json").read_bytes()
    status, headers, answer = http("POST", service.otlp_http + "/v1/traces", body, JS)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(answer)["partialSuccess"]["rejectedSpans"] == "1"
    from tests.unit.test_decode import to_protobuf

    status, headers, answer = http(
        "POST", service.otlp_http + "/v1/traces", to_protobuf(json.loads(body)), PB
    )
    assert status == 200 and headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(answer)
    assert response.partial_success.rejected_spans == 1
    assert "empty name" in response.partial_success.error_message


@pytest.mark.parametrize("path", ["/v1/traces", "/api/v1/traces"])
def test_empty_request_succeeds(service: ServiceProcess, path: str) -> None:
    base = service.otlp_http if path == "/v1/traces" else service.api
    status, _, _ = http("POST", base + path, ExportTraceServiceRequest().SerializeToString(), PB)
    assert status == 200
    status, _, _answer = http("POST", base + path, b"{}", JS)
    assert status == 200


def test_bad_inputs_get_their_status_and_body(service: ServiceProcess) -> None:
    url = service.otlp_http + "/v1/traces"
    status, _, body = http("POST", url, b"\xff\xff\xff\xffnot protobuf", PB)
    assert status == 400
    assert "protobuf" in status_pb2.Status.FromString(body).message
    status, _, body = http("POST", url, b"{not json", JS)
    assert status == 400 and "JSON" in json.loads(body)["message"]
    status, _, _ = http("GET", url)
    assert status == 405
    status, _, body = http("POST", url, b"hello", {"Content-Type": "text/plain"})
    assert status == 415
    status, _, body = http("POST", url, b"{}", {**JS, "Content-Encoding": "br"})
    assert status == 415
    status, _, body = http("POST", url, b"not gzip at all", {**JS, "Content-Encoding": "gzip"})
    assert status == 400
    status, _, _ = http("POST", url, zlib.compress(b"{}"), {**JS, "Content-Encoding": "deflate"})
    assert status == 200
    status, _, _ = http("POST", service.api + "/api/v1/traces", b"{]", JS)
    assert status == 400
    # The service is still up.
    assert service.ready()


def test_grpc_bad_input_and_partial_success(service: ServiceProcess) -> None:
    channel = grpc.insecure_channel(service.otlp_grpc)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.RpcError) as info:
        export(b"\xff\xff\xff\xff garbage", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    from tests.unit.test_decode import to_protobuf

    body = to_protobuf(json.loads((FIXTURES / "reject_zero_span_id.json").read_bytes()))
    response = ExportTraceServiceResponse.FromString(export(body, timeout=10))
    assert response.partial_success.rejected_spans == 1
    assert response.partial_success.error_message
    channel.close()


def test_body_limit_counted_after_decompression(tmp_path: Path) -> None:
    svc = ServiceProcess(
        tmp_path / "data",
        env={
            "TRACEJUDGE_INGEST__MAX_BODY_BYTES": "20000",
            "TRACEJUDGE_INGEST__GRPC_MAX_MESSAGE_BYTES": "30000",
        },
    ).start()
    try:
        url = svc.otlp_http + "/v1/traces"
        big = json.dumps({"resourceSpans": [], "padding": "x" * 50_000}).encode()
        status, _, _ = http("POST", url, big, JS)
        assert status == 413
        bomb = gzip.compress(big)
        assert len(bomb) < 20_000
        status, _, _ = http("POST", url, bomb, {**JS, "Content-Encoding": "gzip"})
        assert status == 413
        status, _, _ = http("POST", url, gzip.compress(b"{}"), {**JS, "Content-Encoding": "gzip"})
        assert status == 200
        # gRPC's message limit is its own setting (ingest.grpc_max_message_bytes, 30000 here).
        channel = grpc.insecure_channel(svc.otlp_grpc)
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            export(b"\x0a" + b"\x00" * 40_000, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        channel.close()
        assert svc.ready()
    finally:
        assert svc.stop() == 0, svc.output


def test_sql_endpoint_is_read_only_and_limited(service: ServiceProcess) -> None:
    status, _, body = http(
        "POST",
        service.api + "/api/v1/sql",
        json.dumps({"query": "INSERT INTO otel_traces (TraceId) VALUES ('x')"}).encode(),
        JS,
    )
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "query_error" and "readonly" in error["message"].lower()
    status, _, body = http(
        "POST", service.api + "/api/v1/sql", json.dumps({"query": "DROP TABLE otel_traces"}).encode(), JS
    )
    assert status == 400
    status, _, body = http(
        "POST", service.api + "/api/v1/sql", json.dumps({"query": "SELEC nonsense"}).encode(), JS
    )
    assert status == 400 and "error" in json.loads(body)
    doc = service.post_json("/api/v1/sql", {"query": "SELECT number FROM numbers(100000)"})
    assert doc["rows"] == 10_000 and doc["truncated"] is True
    doc = service.post_json("/api/v1/sql", {"query": "SELECT 1 AS one, 'a' AS s"})
    assert doc["columns"] == ["one", "s"] and doc["data"] == [[1, "a"]] and doc["truncated"] is False
    assert service.scalar("SELECT count() FROM otel_traces") >= 0


def test_health_metrics_and_openapi(service: ServiceProcess) -> None:
    status, _, body = http("GET", service.api + "/healthz")
    assert status == 200
    status, _, body = http("GET", service.api + "/metrics")
    text = body.decode()
    assert status == 200
    for name in (
        "tracejudge_receiver_requests_total",
        "tracejudge_receiver_spans_total",
        "tracejudge_wal_backlog_bytes",
        "tracejudge_sink_rows_total",
    ):
        assert name in text
    status, _, body = http("GET", service.api + "/openapi.json")
    paths = json.loads(body)["paths"]
    assert {"/api/v1/traces", "/api/v1/traces/{trace_id}", "/api/v1/sql", "/readyz"} <= set(paths)
    status, _, _ = http("GET", service.api + "/docs")
    assert status == 200
