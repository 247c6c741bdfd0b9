"""Root-less trace parts between processes (issue 14 item 2, `dataflow/scoring/foreign.py`): a process that
scores a root-less part with no root stored records it; the process that gets the root after that finds the
record (one look-up per batch), completes the trace and scores it whole, as a late one."""

from __future__ import annotations

import logging

import pytest

from dataflow import metrics
from dataflow.errors import QueryError, SinkError
from dataflow.model import CloseReason, ScoreRow, Span, Trace
from dataflow.rules.model import RuleSet, compile_rule, parse_rule
from dataflow.rules.status import RuleStats
from dataflow.scoring.foreign import ForeignCheck
from dataflow.scoring.step import ScoringStep
from tests import builders

NS = 1_000_000_000
IDLE_GAP_S = 30.0
TID = "cd" * 16
T0 = 1_000 * NS
ROOT = builders.span(
    trace_id=TID, span_id="01" * 8, name="agent", output="Paris", start_ns=T0, duration_ns=60 * NS
)
CHILD = builders.span(  # the part that reached the other process, closed and scored there
    trace_id=TID, span_id="02" * 8, parent_span_id="01" * 8, name="tool", output="Lyon", start_ns=T0 + NS
)
LATE_CHILD = builders.span(  # a child that reached this process with the root
    trace_id=TID, span_id="03" * 8, parent_span_id="01" * 8, name="answer", start_ns=T0 + 50 * NS
)
WHOLE = parse_rule({
    "id": "whole", "version": 1, "name": "whole", "project": "p", "scope": "trace", "filter": "name = 'tool'",
    "scorers": [{"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}}],
})  # fmt: skip  # matches only with the other process's child; scores the root's output
EACH = parse_rule({
    "id": "each", "version": 1, "name": "each", "project": "p", "scope": "span",
    "scorers": [{"type": "code", "name": "lyon", "function": "contains", "args": {"value": "Lyon"}}],
})  # fmt: skip


class Rules:
    def __init__(self, *specs: object, rate: float = 1.0) -> None:
        rules = [compile_rule(s.model_copy(update={"sampling_rate": rate})) for s in specs]  # type: ignore[attr-defined]
        self.current = RuleSet.of(tuple(rules))


class Stored:
    """ClickHouse as the scoring step sees it: full fetches, and root-less parts recorded and looked up."""

    def __init__(self, *spans: Span, recorded: tuple[str, ...] = (), fail: bool = False) -> None:
        self.spans = list(spans)
        self.recorded = [(tid, "p") for tid in recorded]
        self.fail = fail
        self.fetched: list[str] = []
        self.asked: list[list[str]] = []

    def fetch(self, trace_ids: list[str]) -> dict[str, list[Span]]:
        self.fetched += trace_ids
        return {TID: self.spans} if TID in trace_ids and self.spans else {}

    def known(self, trace_ids: list[str]) -> set[str]:
        self.asked.append(trace_ids)
        if self.fail:
            msg = "ClickHouse is away"
            raise QueryError(msg)
        return {tid for tid, _ in self.recorded if tid in trace_ids}

    def record(self, fragments: list[tuple[str, str]]) -> None:
        if self.fail:
            msg = "ClickHouse is away"
            raise SinkError(msg)
        self.recorded += fragments


def closed(*spans: Span, after_s: float = IDLE_GAP_S) -> Trace:
    """A trace this process closed `after_s` after its root started."""
    return Trace(TID, spans, CloseReason.ROOT_SETTLED, 0, 0, T0 + int(after_s * NS))


def scoring(store: Stored, rules: Rules, shared: bool = True) -> ScoringStep:
    return ScoringStep(
        rules, RuleStats(), store, shared=lambda: shared, foreign=ForeignCheck(store, IDLE_GAP_S)
    )


def score(store: Stored, rules: Rules, trace: Trace, shared: bool = True) -> list[ScoreRow]:
    return rows_of(scoring(store, rules, shared), trace)


def rows_of(step: ScoringStep, trace: Trace) -> list[ScoreRow]:
    return [r for kind, rows in step([trace]) if kind == "scores" for r in rows]  # type: ignore[attr-defined]


def foreign() -> float:
    return float(metrics.SCORING_FOREIGN_FRAGMENTS._value.get())


def test_a_root_whose_other_spans_another_process_stored_is_completed_and_scored_whole() -> None:
    store, before = (
        Stored(CHILD, recorded=(TID,)),
        foreign(),
    )  # this process's own spans need not be stored yet
    rows = score(store, Rules(WHOLE, EACH), closed(ROOT, LATE_CHILD))
    assert store.asked == [[TID]]  # one look-up
    assert store.fetched == [TID]  # then the full fetch, of that trace alone
    by_rule = {(r.rule_id, r.span_id): (r.value, r.metadata.get("late")) for r in rows}
    # the trace-scope rule sees the whole trace (the same score id the other process wrote, replaced); the
    # span-scope rule scores this process's spans only (the other process scored its child)
    assert by_rule == {
        ("whole", ""): (1.0, "true"),
        ("each", ROOT.span_id): (0.0, "true"),
        ("each", LATE_CHILD.span_id): (0.0, "true"),
    }
    assert foreign() == before + 1


def test_with_no_part_recorded_elsewhere_a_trace_is_scored_as_it_is_without_a_full_fetch() -> None:
    store, before = Stored(CHILD), foreign()  # the child is stored (another process still has it open)
    rows = score(store, Rules(WHOLE, EACH), closed(ROOT, LATE_CHILD))
    assert len(store.asked) == 1 and store.fetched == []
    assert {(r.rule_id, r.span_id, r.metadata.get("late")) for r in rows} == {
        ("each", ROOT.span_id, None), ("each", LATE_CHILD.span_id, None)
    }  # fmt: skip  # the trace-scope rule's filter needs the child: not matched
    assert foreign() == before


@pytest.mark.parametrize(
    ("trace", "rules", "shared"),
    [
        (closed(ROOT, after_s=IDLE_GAP_S / 2 - 1), Rules(WHOLE), True),  # too short to have been split so
        (closed(CHILD), Rules(WHOLE), True),  # no root: completed the session-18 way (full fetch) instead
        (closed(ROOT), Rules(WHOLE, rate=0.0), True),  # no rule samples the trace
        (closed(ROOT), Rules(WHOLE), False),  # one process
    ],
    ids=["short", "rootless", "unsampled", "alone"],
)
def test_no_look_up(trace: Trace, rules: Rules, shared: bool) -> None:
    store = Stored(CHILD, recorded=(TID,))
    score(store, rules, trace, shared)
    assert store.asked == []


def test_a_failing_query_scores_the_traces_as_they_are_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Stored(CHILD, recorded=(TID,), fail=True)
    step = scoring(store, Rules(WHOLE, EACH))
    with caplog.at_level(logging.INFO, logger="dataflow.scoring.foreign"):
        for _ in range(2):
            assert [r.rule_id for r in rows_of(step, closed(ROOT))] == ["each"]
        store.fail = False
        assert sorted(r.rule_id for r in rows_of(step, closed(ROOT))) == ["each", "whole"]
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert len(store.asked) == 3


def test_a_root_less_part_with_no_root_stored_is_recorded_and_then_scored_whole_where_the_root_arrives() -> (
    None
):
    """Both sides, one store: the child's process scores its part (the child standing in for the root) and
    records it; the root's process, closing later, finds the record and scores the whole trace."""
    store = Stored(CHILD)
    part = score(store, Rules(WHOLE), closed(CHILD))
    assert [(r.value, r.metadata.get("late")) for r in part] == [(0.0, None)]
    assert store.recorded == [(TID, "p")]
    store.spans = [ROOT, CHILD]
    whole = score(store, Rules(WHOLE), closed(ROOT))
    assert [(r.score_id, r.value, r.metadata.get("late")) for r in whole] == [(part[0].score_id, 1.0, "true")]


def test_a_root_less_part_whose_root_is_stored_or_that_no_rule_samples_is_not_recorded() -> None:
    store = Stored(ROOT, CHILD)
    score(store, Rules(WHOLE), closed(CHILD))  # scored whole here already (the session-18 case)
    score(Stored(CHILD), Rules(WHOLE, rate=0.0), closed(CHILD))
    score(store, Rules(WHOLE), closed(CHILD), shared=False)
    assert store.recorded == []
