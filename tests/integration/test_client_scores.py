"""The Python client against a running tracejudge: scores made inside OpenTelemetry SDK spans (whose spans the
app exports to the same service) and by id land in the ``scores`` table on the right trace and span ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.integration.service import ServiceProcess
from tracejudge_client import TraceJudge

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def provider(service: ServiceProcess) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({"service.name": "client-test"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=service.otlp_http + "/v1/traces"))
    )
    yield provider
    provider.shutdown()


def test_the_clients_scores_land_in_the_scores_table(
    service: ServiceProcess, provider: TracerProvider
) -> None:
    client = TraceJudge(api_url=service.api, flush_interval_s=0.1)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("request") as root:
        with tracer.start_as_current_span("llm-call") as child:
            client.score_current_span(name="relevance", value=0.85, comment="mostly relevant")
        client.score_current_trace(name="thumbs-up", value=True)
    trace_id = format(root.get_span_context().trace_id, "032x")
    span_id = format(child.get_span_context().span_id, "016x")
    client.create_score(
        name="sentiment", value="positive", trace_id=trace_id.upper(), score_id=f"s-{trace_id}"
    )
    assert client.flush(timeout_s=60)
    client.shutdown()
    assert (client.sent, client.dropped, client.failed) == (3, 0, 0)
    query = f"SELECT count() FROM scores FINAL WHERE TraceId = '{trace_id}' AND Source = 'API'"
    service.wait_for(query, 3)
    rows = service.sql(
        "SELECT Name, SpanId, DataType, Value, StringValue, Passed, Comment, ScoreId FROM scores FINAL "
        f"WHERE TraceId = '{trace_id}' ORDER BY Name"
    )
    assert [row[:7] for row in rows] == [
        ["relevance", span_id, "NUMERIC", 0.85, "", None, "mostly relevant"],
        ["sentiment", "", "CATEGORICAL", None, "positive", None, ""],
        ["thumbs-up", "", "BOOLEAN", 1.0, "", True, ""],
    ]
    assert rows[1][7] == f"s-{trace_id}"
    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'", 2)
