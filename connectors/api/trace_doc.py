"""One trace as `GET /api/v1/traces/{trace_id}` answers it, and as the web UI's trace view reads it: its spans
(`sql/queries/trace_by_id.sql`), its scores (the scores store, newest first) and its judge spans."""

from __future__ import annotations

from typing import Any

from connectors.api.params import iso_ns
from connectors.api.score_models import score_view
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.migrate import SQL_DIR
from connectors.clickhouse.scores_store import ScoreAccess, ScoreFilter
from dataflow.windowing.step import JUDGE_SCOPE
from tracejudge_client.validation import MAX_BATCH

_QUERY = SQL_DIR / "queries" / "trace_by_id.sql"


def span_doc(row: dict[str, Any]) -> dict[str, Any]:
    """A row of trace_by_id.sql as the API answers a span."""
    events = [
        {"time_unix_nano": str(t), "name": n, "attributes": dict(a)}
        for t, n, a in zip(row["EventTimesNs"], row["EventNames"], row["EventAttributes"], strict=False)
    ]
    start = int(row["StartNs"])
    return {
        "trace_id": row["TraceId"],
        "span_id": row["SpanId"],
        "parent_span_id": row["ParentSpanId"],
        "name": row["SpanName"],
        "kind": row["SpanKind"],
        "service_name": row["ServiceName"],
        "project": row["Project"],
        "session_id": row["SessionId"],
        "start_time": iso_ns(start),
        "start_time_unix_nano": str(start),
        "duration_ms": int(row["Duration"]) / 1e6,
        "status_code": row["StatusCode"],
        "status_message": row["StatusMessage"],
        "input": row["Input"],
        "output": row["Output"],
        "attributes": dict(row["SpanAttributes"]),
        "resource": dict(row["ResourceAttributes"]),
        "scope": {"name": row["ScopeName"], "version": row["ScopeVersion"]},
        "events": events,
    }


def load_trace(reader: ClickHouse, scores: ScoreAccess, trace_id: str) -> dict[str, Any] | None:
    """The trace (32 lower-case hex digits) with its spans in start order and its scores; None: no such trace.
    Blocking: two queries."""
    rows = reader.query_arrow(_QUERY.read_text(encoding="utf-8"), {"trace_id": trace_id}).to_pylist()
    if not rows:
        return None
    spans = [span_doc(r) for r in rows]
    roots = [s for s in spans if not s["parent_span_id"]]
    found, _ = scores.page(ScoreFilter(trace_id=trace_id), MAX_BATCH)
    return {
        "trace_id": trace_id,
        "project": spans[0]["project"],
        "root_span_id": roots[0]["span_id"] if roots else None,
        "span_count": len(spans),
        "spans": spans,
        "scores": [score_view(r).model_dump(mode="json") for r in found],
        "judge_spans": [s for s in spans if s["scope"]["name"] == JUDGE_SCOPE],
    }
