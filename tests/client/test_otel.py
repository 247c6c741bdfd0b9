"""score_current_span / score_current_trace inside real OpenTelemetry SDK spans attach the active span's ids;
outside any span they warn once per client and send nothing."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from tests.client.conftest import as_given
from tests.fakes.scores_server import FakeScores
from tracejudge_client import TraceJudge


def hex_ids(span: object) -> tuple[str, str]:
    context = span.get_span_context()  # type: ignore[attr-defined]
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def test_scores_attach_to_the_active_span_and_its_trace(
    fake: FakeScores, clients: list[TraceJudge], tracer: Tracer
) -> None:
    client = TraceJudge(api_url=fake.url, flush_interval_s=60)
    clients.append(client)
    with tracer.start_as_current_span("request") as root:
        with tracer.start_as_current_span("llm-call") as child:
            client.score_current_span(name="relevance", value=0.85, comment="mostly relevant")
        client.score_current_span(name="root-span", value=True)
        client.score_current_trace(name="overall", value="good", data_type="CATEGORICAL", score_id="s-1")
    assert client.flush(timeout_s=30)
    trace_id, child_id = hex_ids(child)
    assert hex_ids(root)[0] == trace_id
    assert as_given(fake.received) == [
        {"name": "relevance", "value": 0.85, "trace_id": trace_id, "observation_id": child_id,
         "comment": "mostly relevant", "project": "shop"},
        {"name": "root-span", "value": True, "trace_id": trace_id, "observation_id": hex_ids(root)[1],
         "project": "shop"},
        {"name": "overall", "value": "good", "trace_id": trace_id, "score_id": "s-1", "data_type": "CATEGORICAL",
         "project": "shop"},
    ]  # fmt: skip
    assert (client.sent, client.dropped, client.failed) == (3, 0, 0)


def test_the_clients_own_project_wins_over_the_spans_resource(
    fake: FakeScores, clients: list[TraceJudge], tracer: Tracer
) -> None:
    client = TraceJudge(api_url=fake.url, flush_interval_s=60, project="billing")
    clients.append(client)
    with tracer.start_as_current_span("request"):
        client.score_current_trace(name="overall", value=1)
    assert client.flush(timeout_s=30)
    assert [s.get("project") for s in fake.received] == ["billing"]


def test_each_score_takes_the_project_of_its_own_spans_resource(
    fake: FakeScores, clients: list[TraceJudge], tracer: Tracer
) -> None:
    """The client remembers the last resource's project: a span of another resource, or with none (the OTel
    API's own span), is not given it."""
    client = TraceJudge(api_url=fake.url, flush_interval_s=60)
    clients.append(client)
    other = TracerProvider(resource=Resource.create({"service.name": "search"})).get_tracer("tests.client")
    bare = trace.NonRecordingSpan(trace.SpanContext(1, 2, is_remote=True))
    with tracer.start_as_current_span("a"):
        client.score_current_span(name="n", value=1)
    with trace.use_span(bare):
        client.score_current_span(name="n", value=1)
    with other.start_as_current_span("b"):
        client.score_current_span(name="n", value=1)
    with tracer.start_as_current_span("c"):
        client.score_current_span(name="n", value=1)
    assert client.flush(timeout_s=30)
    assert [s.get("project") for s in fake.received] == ["shop", None, "search", "shop"]


def test_ids_are_lowercase_hex_of_full_width(
    fake: FakeScores, clients: list[TraceJudge], tracer: Tracer
) -> None:
    """A trace id with leading zeros keeps all 32 digits."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    client = TraceJudge(api_url=fake.url, flush_interval_s=60)
    clients.append(client)
    context = SpanContext(trace_id=0xAB, span_id=0xCD, is_remote=True, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        client.score_current_span(name="n", value=1)
    assert client.flush(timeout_s=30)
    assert fake.received[0]["trace_id"] == "0" * 30 + "ab"
    assert fake.received[0]["observation_id"] == "0" * 14 + "cd"


def test_outside_any_span_warns_once_and_sends_nothing(
    fake: FakeScores, clients: list[TraceJudge], caplog: pytest.LogCaptureFixture
) -> None:
    client = TraceJudge(api_url=fake.url, flush_interval_s=60)
    clients.append(client)
    with caplog.at_level(logging.WARNING, logger="tracejudge_client"):
        for _ in range(3):
            client.score_current_span(name="n", value=1)
            client.score_current_trace(name="n", value=1)
    warnings = [r.getMessage() for r in caplog.records if "outside any active span" in r.getMessage()]
    assert len(warnings) == 1
    assert client.flush(timeout_s=30)
    assert fake.requests == 0 and fake.received == []
    other = TraceJudge(api_url=fake.url, flush_interval_s=60)
    clients.append(other)
    with caplog.at_level(logging.WARNING, logger="tracejudge_client"):
        other.score_current_trace(name="n", value=1)
    assert sum("outside any active span" in r.getMessage() for r in caplog.records) == 2
