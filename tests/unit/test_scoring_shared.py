"""The scoring step with other processes live on the same ClickHouse (issue 14 item 2): a closed trace without
its root is completed from ClickHouse; if the root is stored (another process holds it), the whole trace is
scored again here as a late one; a trace with its root is scored as it is, with no query."""

from __future__ import annotations

from dataflow import metrics
from dataflow.model import CloseReason, Span, Trace
from dataflow.rules.model import RuleSet, compile_rule, parse_rule
from dataflow.rules.status import RuleStats
from dataflow.scoring.step import ScoringStep
from tests import builders

TID = "ab" * 16
ROOT = builders.span(trace_id=TID, span_id="01" * 8, name="agent", output="Paris", start_ns=1)
CHILD = builders.span(
    trace_id=TID, span_id="02" * 8, parent_span_id="01" * 8, name="tool", output="Lyon", start_ns=2
)
RULE = compile_rule(parse_rule({
    "id": "r", "version": 1, "name": "r", "project": "p", "scope": "trace", "filter": "name = 'tool'",
    "scorers": [{"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}}],
}))  # fmt: skip


class Rules:
    current = RuleSet.of((RULE,))


class Stored:
    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans
        self.asked: list[str] = []

    def fetch(self, trace_ids: list[str]) -> dict[str, list[Span]]:
        self.asked += trace_ids
        return {TID: self.spans} if TID in trace_ids else {}


def closed(*spans: Span) -> Trace:
    return Trace(TID, spans, CloseReason.IDLE_GAP, 0, 0, 0)


def values(out: list[tuple[str, object]]) -> list[tuple[float | None, bool]]:
    return [(r.value, "late" in r.metadata) for kind, rows in out if kind == "scores" for r in rows]  # type: ignore[attr-defined]


def foreign() -> float:
    return float(metrics.SCORING_FOREIGN_FRAGMENTS._value.get())


def test_a_root_less_fragment_is_completed_and_scored_as_the_whole_trace_when_the_root_is_elsewhere() -> None:
    store, before = Stored([ROOT, CHILD]), foreign()
    out = ScoringStep(Rules(), RuleStats(), store, shared=lambda: True)([closed(CHILD)])
    assert store.asked == [TID] and values(out) == [(1.0, True)]  # the root's output, as a late trace
    assert foreign() == before + 1


def test_alone_or_with_its_root_a_trace_is_scored_as_it_is_with_no_query() -> None:
    store = Stored([ROOT, CHILD])
    assert values(ScoringStep(Rules(), RuleStats(), store, shared=lambda: False)([closed(CHILD)])) == [
        (0.0, False)
    ]
    assert values(ScoringStep(Rules(), RuleStats(), store, shared=lambda: True)([closed(ROOT, CHILD)])) == [
        (1.0, False)
    ]
    assert store.asked == []


def test_a_root_less_trace_with_no_root_anywhere_is_scored_as_on_one_process() -> None:
    store, before = Stored([CHILD]), foreign()
    assert values(ScoringStep(Rules(), RuleStats(), store, shared=lambda: True)([closed(CHILD)])) == [
        (0.0, False)
    ]
    assert store.asked == [TID] and foreign() == before
