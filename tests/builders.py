"""Builders for the records tests make over and over: spans, traces, rule bodies and OTLP/JSON requests.

Fields are keyword arguments (only the spans a trace or request holds are positional) with plain defaults,
so a test names just the fields its assertions are about: `span(output="Paris")`, `trace(root, child)`, `rule(scope="span")`,
`otlp_request(otlp_span(trace_id=t, span_id=s), resource={"tracejudge.project": p})`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from dataflow.model import SPAN_SCHEMA, CloseReason, Span, Trace

TRACE_ID = "a" * 32
SPAN_ID = "b" * 16
# The code scorer rule bodies get unless a test names others: the output contains "Paris".
CONTAINS_PARIS: dict[str, Any] = {
    "type": "code",
    "name": "has_paris",
    "function": "contains",
    "args": {"value": "Paris"},
}


def span(
    *,
    trace_id: str = TRACE_ID,
    span_id: str = SPAN_ID,
    parent_span_id: str = "",
    name: str = "llm",
    kind: str = "Client",
    status_code: str = "Unset",
    status_message: str = "",
    service_name: str = "svc",
    project: str = "p",
    session_id: str = "",
    start_ns: int = 0,
    duration_ns: int = 1,
    input: str = "q",
    output: str = "a",
    attributes: Mapping[str, str] | None = None,
    resource: Mapping[str, str] | None = None,
) -> Span:
    """A `dataflow.model.Span`: by default a root `llm` client span of project `p`, 1 ns long, at time 0."""
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=name,
        kind=kind,
        status_code=status_code,
        status_message=status_message,
        service_name=service_name,
        project=project,
        session_id=session_id,
        start_ns=start_ns,
        duration_ns=duration_ns,
        input=input,
        output=output,
        attributes=dict(attributes or {}),
        resource=dict(resource or {}),
    )


def trace(
    *spans: Span,
    trace_id: str | None = None,
    close_reason: CloseReason = CloseReason.ROOT_SETTLED,
    **fields: Any,
) -> Trace:
    """A closed `Trace` of `spans` (its id: `trace_id`, else the first span's), first/last seen and closed at 0.

    `fields` sets Trace's other fields (`late=True`, `new_span_ids=...`).
    """
    tid = trace_id if trace_id is not None else (spans[0].trace_id if spans else TRACE_ID)
    return Trace(tid, tuple(spans), close_reason, 0, 0, 0, **fields)


def rule(**overrides: Any) -> dict[str, Any]:
    """A rule body as the API and `parse_rule` take it (`dataflow.rules.model.RuleSpec`'s fields).

    By default rule `r` of project `p` with one code scorer, `CONTAINS_PARIS`; no id (the store assigns one).
    """
    return {"name": "r", "project": "p", "scorers": [dict(CONTAINS_PARIS)], **overrides}


def otlp_span(
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str = "",
    name: str = "llm",
    start_ns: int | None = None,
    duration_ns: int = 1000,
    attributes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One span in OTLP/JSON (hex ids, string attributes), starting now unless `start_ns` is given."""
    start = time.time_ns() if start_ns is None else start_ns
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent_span_id,
        "name": name,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration_ns),
        "attributes": _key_values(attributes or {}),
    }


def otlp_request(*spans: dict[str, Any], resource: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An OTLP/JSON ExportTraceServiceRequest: `spans` (from `otlp_span`) in one resource and one scope."""
    return {
        "resourceSpans": [
            {"resource": {"attributes": _key_values(resource or {})}, "scopeSpans": [{"spans": list(spans)}]}
        ]
    }


def _key_values(attributes: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()]


def span_table(spans: Sequence[Span], *, starts: bool = False) -> pa.Table:
    """Spans as an Arrow table with `otel_traces`' columns (no events or links), as the log carries them;
    Timestamp is now, or with `starts` each span's `start_ns`."""
    now = datetime.now(UTC)
    stamps: list[Any] = [s.start_ns for s in spans] if starts else [now] * len(spans)
    columns: dict[str, list[Any]] = {
        "Timestamp": stamps,
        "TraceId": [s.trace_id for s in spans],
        "SpanId": [s.span_id for s in spans],
        "ParentSpanId": [s.parent_span_id for s in spans],
        "TraceState": [""] * len(spans),
        "SpanName": [s.name for s in spans],
        "SpanKind": [s.kind for s in spans],
        "ServiceName": [s.service_name for s in spans],
        "ResourceAttributes": [list(s.resource.items()) for s in spans],
        "ScopeName": [""] * len(spans),
        "ScopeVersion": [""] * len(spans),
        "SpanAttributes": [list(s.attributes.items()) for s in spans],
        "Duration": [s.duration_ns for s in spans],
        "StatusCode": [s.status_code for s in spans],
        "StatusMessage": [s.status_message for s in spans],
        "Events.Timestamp": [[] for _ in spans],
        "Events.Name": [[] for _ in spans],
        "Events.Attributes": [[] for _ in spans],
        "Links.TraceId": [[] for _ in spans],
        "Links.SpanId": [[] for _ in spans],
        "Links.TraceState": [[] for _ in spans],
        "Links.Attributes": [[] for _ in spans],
        "Project": [s.project for s in spans],
        "SessionId": [s.session_id for s in spans],
        "Input": [s.input for s in spans],
        "Output": [s.output for s in spans],
        "IngestedAt": [now] * len(spans),
    }
    return pa.Table.from_pydict(columns, schema=SPAN_SCHEMA)
