"""The trace view's layout (connectors/ui/trace_render.py): span order and depth, bars, and how an input or output
is shown (chat messages, pretty JSON, folded text)."""

from __future__ import annotations

import json
from typing import Any

from connectors.ui.trace_render import FOLD_CHARS, body, waterfall
from connectors.ui.trace_view import annotation_value


def span(span_id: str, parent: str, start_ms: float, duration_ms: float, **extra: Any) -> dict[str, Any]:
    return {"span_id": span_id, "parent_span_id": parent, "start_time_unix_nano": str(int(start_ms * 1e6)),
            "duration_ms": duration_ms, "scope": {"name": extra.get("scope", "")}, "status_code": "Unset",
            "input": "", "output": "", "attributes": extra.get("attributes", {})}  # fmt: skip


def test_spans_are_laid_out_depth_first_with_bars_relative_to_the_trace() -> None:
    spans = [span("r", "", 0, 10), span("b", "r", 6, 4), span("a", "r", 1, 2), span("j", "a", 3, 1,
             scope="tracejudge.judge", attributes={"tracejudge.score_id": "s1"}), span("o", "gone", 2, 0)]  # fmt: skip
    scores = [{"score_id": "s1", "observation_id": "a"}, {"score_id": "s2", "observation_id": ""}]
    rows, total_ms = waterfall({"spans": spans, "scores": scores})
    assert total_ms == 10
    assert [(r.span["span_id"], r.depth) for r in rows] == [("r", 0), ("a", 1), ("j", 2), ("b", 1), ("o", 0)]
    assert (rows[0].left_pct, rows[0].width_pct) == (0, 100)
    assert (rows[3].left_pct, rows[3].width_pct) == (60, 40)
    assert rows[4].width_pct > 0  # a span of no duration still shows a bar
    assert rows[2].judge and rows[2].judged == scores[0] and rows[1].scores == [scores[0]]


def test_a_cycle_of_parents_shows_each_span_once() -> None:
    rows, _ = waterfall({"spans": [span("a", "b", 0, 1), span("b", "a", 0, 1)], "scores": []})
    assert sorted(r.span["span_id"] for r in rows) == ["a", "b"]


def test_bodies() -> None:
    chat = body(json.dumps([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]))
    assert chat.kind == "messages" and chat.messages == [{"role": "user", "content": "hi"}]
    wrapped = body(json.dumps({"messages": [{"role": "system", "content": "be brief"}]}))
    assert wrapped.messages == [{"role": "system", "content": "be brief"}]
    pretty = body('{"a":[1,2]}')
    assert pretty.kind == "json" and pretty.text == '{\n  "a": [\n    1,\n    2\n  ]\n}' and not pretty.folded
    assert body("[not json").kind == "text"
    long = body("x" * (FOLD_CHARS + 1))
    assert long.folded and long.summary.endswith("…")
    assert body("").kind == "empty" and not body("short").folded


def test_annotation_values() -> None:
    assert annotation_value(" 0.5 ") == 0.5
    assert annotation_value("True") is True and annotation_value("false") is False
    assert annotation_value("good") == "good" and annotation_value("nan") == "nan"
