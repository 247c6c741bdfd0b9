"""The demo dataset (tracejudge/demo_data.py): deterministic per seed, spread over a week, with errors."""

from __future__ import annotations

from typing import Any

from tracejudge.demo_data import HOUR_NS, build

NOW = 1_800_000_000 * 10**9


def spans(data: Any) -> list[dict[str, Any]]:
    requests = data.requests + data.live_requests
    return [s for r in requests for rs in r["resourceSpans"] for sc in rs["scopeSpans"] for s in sc["spans"]]


def test_the_same_seed_gives_the_same_traces_and_another_seed_others() -> None:
    a, b, c = build(1, NOW), build(1, NOW), build(2, NOW)
    assert a == b
    assert not set(a.rag_traces + a.agent_traces) & set(c.rag_traces + c.agent_traces)
    assert len(a.rag_traces) == 200 and len(a.agent_traces) == 100 and len(spans(a)) == a.spans
    assert len(a.live_traces) == 30 and set(a.live_traces) < set(a.rag_traces + a.agent_traces)


def test_times_fall_in_the_last_week_most_in_the_last_day_and_some_spans_fail() -> None:
    data = build(1, NOW)
    roots = [s for s in spans(data) if not s["parentSpanId"]]
    ages = [(NOW - int(s["startTimeUnixNano"])) / HOUR_NS for s in roots]
    assert all(0 <= age <= 24 * 7 for age in ages)
    day = sum(1 for age in ages if age <= 24)
    assert len(ages) * 0.6 < day < len(ages)
    errors = [s for s in spans(data) if s["status"]["code"] == 2]
    assert {s["name"] for s in errors} >= {"llm.chat", "tool.get_weather"}
    assert all(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) for s in spans(data))
