"""How the trace view shows a trace: the span tree laid out as a waterfall, and span inputs and outputs as chat
messages, pretty JSON or (folded when long) text. Pure functions of `connectors/api/trace_doc.py`'s document."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dataflow.windowing.step import JUDGE_SCOPE

FOLD_CHARS = 600
FOLD_LINES = 12
MIN_BAR_PCT = 0.4
JUDGE_SCORE_ATTRIBUTE = "tracejudge.score_id"  # a judge span's score (dataflow/scoring/judge_step.py)


@dataclass(frozen=True)
class Body:
    """An input or output as shown: kind is 'empty', 'messages', 'json' or 'text'."""

    kind: str
    text: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    folded: bool = False
    summary: str = ""


@dataclass(frozen=True)
class SpanRow:
    """One span of the waterfall: its depth in the tree, its bar (percent of the trace's time) and scores."""

    span: dict[str, Any]
    depth: int
    left_pct: float
    width_pct: float
    judge: bool
    error: bool
    scores: list[dict[str, Any]]
    input: Body
    output: Body
    judged: dict[str, Any] | None  # a judge span: the score it wrote


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and "text" in p for p in value):
        return "\n".join(str(p["text"]) for p in value)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _messages(doc: Any) -> list[dict[str, str]] | None:
    """Chat messages: a list of {role, content} (or {"messages": [...]}); None when doc is not that."""
    if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
        doc = doc["messages"]
    if not isinstance(doc, list) or not doc:
        return None
    if not all(isinstance(m, dict) and "role" in m for m in doc):
        return None
    return [{"role": str(m["role"]), "content": _content(m.get("content", ""))} for m in doc]


def _folded(kind: str, text: str) -> Body:
    long = len(text) > FOLD_CHARS or text.count("\n") >= FOLD_LINES
    summary = text[:160].replace("\n", " ") + ("…" if len(text) > 160 else "")
    return Body(kind, text=text, folded=long, summary=summary)


def body(text: str) -> Body:
    """How to show a span's input or output."""
    if not text:
        return Body("empty")
    stripped = text.lstrip()
    if stripped[:1] in ("[", "{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return _folded("text", text)
        messages = _messages(doc)
        if messages is not None:
            return Body("messages", messages=messages)
        return _folded("json", json.dumps(doc, indent=2, ensure_ascii=False))
    return _folded("text", text)


def _order(spans: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Spans depth first (children in start order under their parent), each with its depth. A span whose
    parent is not in the trace is shown as a root."""
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    for s in sorted(spans, key=lambda s: int(s["start_time_unix_nano"])):
        parent = s["parent_span_id"] if s["parent_span_id"] in ids else ""
        children.setdefault(parent, []).append(s)
    out: list[tuple[dict[str, Any], int]] = []
    stack = [(s, 0) for s in reversed(children.get("", []))]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:  # a cycle of parent ids: show each span once
            continue
        seen.add(span["span_id"])
        out.append((span, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(span["span_id"], [])))
    out.extend((s, 0) for s in spans if s["span_id"] not in seen)
    return out


def waterfall(doc: dict[str, Any]) -> tuple[list[SpanRow], float]:
    """The spans of a trace document as waterfall rows, and the trace's duration in milliseconds."""
    spans = doc["spans"]
    starts = [int(s["start_time_unix_nano"]) for s in spans]
    t0 = min(starts)
    t1 = max(st + int(s["duration_ms"] * 1e6) for st, s in zip(starts, spans, strict=True))
    total = max(t1 - t0, 1)
    by_span: dict[str, list[dict[str, Any]]] = {}
    by_id = {score["score_id"]: score for score in doc["scores"]}
    for score in doc["scores"]:
        by_span.setdefault(score["observation_id"], []).append(score)
    rows = []
    for span, depth in _order(spans):
        left = (int(span["start_time_unix_nano"]) - t0) / total * 100
        width = max(span["duration_ms"] * 1e6 / total * 100, MIN_BAR_PCT)
        rows.append(
            SpanRow(
                span=span, depth=depth, left_pct=round(min(left, 100 - MIN_BAR_PCT), 3),
                width_pct=round(min(width, 100 - left), 3) if left < 100 else MIN_BAR_PCT,
                judge=span["scope"]["name"] == JUDGE_SCOPE, error=span["status_code"].upper().endswith("ERROR"),
                scores=by_span.get(span["span_id"], []), input=body(span["input"]), output=body(span["output"]),
                judged=by_id.get(span["attributes"].get(JUDGE_SCORE_ATTRIBUTE, "")),
            )
        )  # fmt: skip
    return rows, total / 1e6


def trace_sql(trace_id: str) -> str:
    """The SELECT the SQL page opens for a trace (trace_id: 32 hex digits, checked by the caller)."""
    return (
        "SELECT Timestamp, SpanId, ParentSpanId, SpanName, Duration, StatusCode, ScopeName, Input, Output\n"
        f"FROM otel_traces\nWHERE TraceId = '{trace_id}'\nORDER BY Timestamp\nLIMIT 1000"
    )
