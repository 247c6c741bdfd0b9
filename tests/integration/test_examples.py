"""The runnable examples in examples/, run as written against a running tracejudge (only the addresses, from
the standard environment variables the examples read, are this test's own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.integration.service import REPO, ServiceProcess

pytestmark = pytest.mark.timeout(180)


def test_score_app_sends_its_spans_and_scores(service: ServiceProcess) -> None:
    env = os.environ | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": service.otlp_http,
        "TRACEJUDGE_API_URL": service.api,
    }
    run = subprocess.run([sys.executable, "examples/score_app.py"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, (run.stdout, run.stderr)
    ids = re.search(r"trace_id=([0-9a-f]{32}) span_id=([0-9a-f]{16})", run.stdout)
    assert ids is not None, run.stdout
    trace_id, span_id = ids.groups()
    assert "scores: sent 4, failed 0, dropped 0" in run.stdout

    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'", 2)
    spans = service.sql(
        f"SELECT SpanName, SpanId, Input, Output FROM otel_traces WHERE TraceId = '{trace_id}' ORDER BY SpanName"
    )
    question, reply = "How long does a refund take?", "Refunds reach your account within five business days."
    assert [row[0] for row in spans] == ["answer_question", "llm.call"]
    assert [row[2:] for row in spans] == [[question, reply], [question, reply]]
    assert spans[1][1] == span_id

    service.wait_for(f"SELECT count() FROM scores FINAL WHERE TraceId = '{trace_id}'", 4)
    rows = service.sql(
        "SELECT Name, SpanId, DataType, Value, StringValue, Comment, Source FROM scores FINAL "
        f"WHERE TraceId = '{trace_id}' ORDER BY Name"
    )
    assert rows == [
        ["helpfulness", "", "NUMERIC", 0.85, "", "answers the question asked", "API"],
        ["mentions_timeframe", span_id, "BOOLEAN", 1.0, "", "", "API"],
        ["tone", span_id, "CATEGORICAL", None, "friendly", "", "API"],
        ["user_feedback", "", "BOOLEAN", 1.0, "", "thumbs up", "API"],
    ]


def readme_python_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From your application", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readmes_client_examples_work_as_written(service: ServiceProcess) -> None:
    for block in readme_python_blocks():  # each on its own, as a reader would copy it
        program = block.replace("http://localhost:4318", service.otlp_http)
        run = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True,
                             timeout=120, env=os.environ | {"TRACEJUDGE_API_URL": service.api})  # fmt: skip
        assert run.returncode == 0, (block, run.stdout, run.stderr)
        assert run.stderr == "", run.stderr  # no warning from the client or the exporter

    names = "('accuracy', 'sentiment', 'relevance', 'overall_quality')"
    service.wait_for(f"SELECT count() FROM scores FINAL WHERE Name IN {names}", 4)
    rows = service.sql(
        "SELECT Name, TraceId, SpanId, DataType, Value, StringValue FROM scores FINAL "
        f"WHERE Name IN {names} ORDER BY Name"
    )
    given = "abcdef1234567890abcdef1234567890"
    assert [row[0] for row in rows] == ["accuracy", "overall_quality", "relevance", "sentiment"]
    assert rows[0][1:] == [given, "", "NUMERIC", 0.92, ""]
    assert rows[3][1:] == [given, "abcdef1234567890", "CATEGORICAL", None, "positive"]
    (quality_trace, quality_span), (relevance_trace, relevance_span) = rows[1][1:3], rows[2][1:3]
    assert (quality_span, rows[1][4], rows[2][4]) == ("", 0.95, 0.85)
    service.wait_for(
        f"SELECT count() FROM otel_traces WHERE TraceId IN ('{quality_trace}', '{relevance_trace}')", 2
    )
    spans = service.sql(
        f"SELECT SpanName, TraceId, SpanId FROM otel_traces WHERE TraceId IN ('{quality_trace}', '{relevance_trace}') "
        "ORDER BY SpanName"
    )
    assert spans == [
        ["answer-query", relevance_trace, relevance_span],
        ["process-user-request", quality_trace, spans[1][2]],
    ]
