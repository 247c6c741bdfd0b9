"""Rule filters per batch in the spans step decide exactly what the per-span predicates decide.

The same spans, split over two log batches so that many traces match a rule only in their second batch, go
through the flow's spans step with batch filters (`shard_batches` with `MatchedTraces`) and without, then the
windows and the scoring step (a fake ClickHouse completes partial traces). Decisions per rule and score rows
must be identical, with fewer spans built in full and fetches only for traces that matched late.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

import pyarrow as pa

from dataflow.config import WindowConfig
from dataflow.flow import shard_batches
from dataflow.model import CloseReason, Span, SpanRecords
from dataflow.rules.engine import Tally
from dataflow.rules.matching import MatchedTraces, match_batch, matcher, rules_tag, settled_unmatched
from dataflow.rules.model import CompiledRule, RuleSet, compile_rule, parse_rule
from dataflow.rules.status import RuleStats
from dataflow.scoring.step import ScoringStep
from dataflow.windowing.trace_window import WindowShard
from tests import builders
from tests.unit.test_scoring_batch import _rules, _span


class _Stats(RuleStats):
    def __init__(self) -> None:
        super().__init__()
        self.decisions: Counter[tuple[str, int]] = Counter()

    def record_tally(self, tally: Tally) -> None:
        super().record_tally(tally)
        for rule, counts in zip(tally.rules, tally.counts, strict=True):
            for i, n in enumerate(counts):
                self.decisions[(rule.id, i)] += n


class _Fetcher:
    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans
        self.asked: list[str] = []

    def fetch(self, trace_ids: list[str]) -> dict[str, list[Span]]:
        self.asked += trace_ids
        out: dict[str, list[Span]] = {}
        for s in self.spans:
            if s.trace_id in trace_ids:
                out.setdefault(s.trace_id, []).append(s)
        return out


class _Rules:
    def __init__(self, ruleset: RuleSet) -> None:
        self.current = ruleset


def _spans(seed: int, traces: int) -> list[Span]:
    rng = random.Random(seed)
    out = []
    for _ in range(traces):
        tid = os.urandom(16).hex()
        out.append(_span(rng, tid, "s0", ""))
        out += [_span(rng, tid, f"s{i}", "s0") for i in range(1, rng.randrange(2, 8))]
    return out


def _run(spans: list[Span], ruleset: RuleSet, recent: MatchedTraces | None) -> tuple[Any, ...]:
    first = [s for i, s in enumerate(spans) if i % 2 == 0]
    second = [s for i, s in enumerate(spans) if i % 2 == 1]
    records = [
        SpanRecords(0, 0, i, builders.span_table(b, starts=True).to_batches()[0])
        for i, b in enumerate((first, second))
    ]
    built: list[Span] = []
    for i in range(2):  # one flow item per log batch, as the service's spans step sees them
        built += [s for _, group in shard_batches(records[i : i + 1], ruleset, 16, recent) for s in group]
    shard = WindowShard.create(WindowConfig(shards=1))  # one shard holds them all: none evicted
    shard.add(built, 0)
    closed = shard.close_all(CloseReason.SHUTDOWN, 1)
    stats, fetcher = _Stats(), _Fetcher(spans)
    out = ScoringStep(_Rules(ruleset), stats, fetcher)(closed)
    rows = sorted((r.score_id, r.value, r.string_value) for kind, b in out if kind == "scores" for r in b)
    return rows, stats.decisions, fetcher.asked, sum(not s.partial for s in built)


def test_batch_filters_decide_as_the_predicates() -> None:
    spans = _spans(5, 400)
    for rate in (0.1, 1.0):
        ruleset = RuleSet.of(_rules(50, rate))
        rows, decisions, asked, full = _run(spans, ruleset, MatchedTraces())
        want_rows, want_decisions, want_asked, want_full = _run(spans, ruleset, None)
        assert decisions == want_decisions
        assert rows == want_rows and rows
        assert want_asked == []  # the reference: spans of sampled traces are all built in full
        if rate < 1.0:
            # Fewer spans in full; completed from ClickHouse: the few traces that matched only in their second
            # batch, after a partial first one.
            assert full < want_full
            assert 0 < len(asked) < 40
        else:
            assert full == want_full and asked == []


def test_matching_bits_agree_with_each_predicate() -> None:
    spans = _spans(6, 200)
    rules = _rules(70, 0.5)  # more than 64 rules: bits beyond one machine word
    table = builders.span_table(spans, starts=True)
    tags, bits = match_batch(table, lambda _p: rules)
    tag = rules_tag(rules)
    assert set(tags) == {tag}
    for span, b in zip(spans, bits, strict=True):
        for r, rule in enumerate(rules):
            want = rule.sampled(span.trace_id) and rule.filter.matches(span)
            assert bool(b >> r & 1) == want, (rule.filter.text, span.span_id)
            tagged = span._replace(rules_tag=tag, matched=b)
            if rule.sampled(span.trace_id):
                assert matcher(rule, r, tag)(tagged) == rule.filter.matches(span)


def test_stale_or_missing_bits_fall_back_to_the_predicate() -> None:
    rules = _rules(3, 1.0)
    span = builders.span(name="ChatCompletion")
    other: tuple[CompiledRule, ...] = (compile_rule(parse_rule({**builders.rule(), "id": "x"})),)
    for r, rule in enumerate(rules):
        want = rule.filter.matches(span)
        assert matcher(rule, r, rules_tag(rules))(span) == want  # no tag: the predicate
        stale = span._replace(rules_tag=rules_tag(other), matched=0 if want else -1)
        assert matcher(rule, r, rules_tag(rules))(stale) == want
    unmatched = (span._replace(rules_tag=rules_tag(rules)),)
    assert settled_unmatched(unmatched, rules)
    assert not settled_unmatched(unmatched, other)
    assert not settled_unmatched((span,), rules)


def test_rules_tag_names_the_rules_by_content() -> None:
    a, b = _rules(5, 0.1), _rules(5, 0.1)
    assert a is not b and rules_tag(a) == rules_tag(b)
    assert rules_tag(a) != rules_tag(a[:4]) and rules_tag(a) != 0


def test_matched_traces_is_bounded_and_remembers_the_newest() -> None:
    recent = MatchedTraces(limit=2)
    assert recent.full_rows(["a", "b", "a"], [0, 1, 0]) == [False, True, False]
    assert recent.full_rows(["c", "d", "b"], [1, 1, 0]) == [True, True, False]  # b forgotten, c and d kept
    assert recent.full_rows(["c", "x"], [0, 0]) == [True, False]


def test_a_rule_arrow_cannot_run_is_decided_span_by_span() -> None:
    rules = _rules(2, 1.0)
    rule = rules[0]
    flt = rule.filter
    arrow = flt._arrow
    object.__setattr__(flt, "_arrow", None)  # as when Arrow refuses the filter at compile time
    try:
        spans = _spans(7, 5)
        tags, bits = match_batch(builders.span_table(spans), lambda _p: rules)
        assert all(b & 1 for b in bits)  # every sampled row counts as matched: built in full
        assert matcher(rule, 0, tags[0]) == flt.matches
    finally:
        object.__setattr__(flt, "_arrow", arrow)


def test_an_item_of_several_batches_is_one_table() -> None:
    spans = _spans(8, 30)
    ruleset = RuleSet.of(_rules(10, 1.0))
    batch = builders.span_table(spans, starts=True).to_batches()[0]
    halves = [SpanRecords(0, 0, i, batch.slice(i * 50, 50)) for i in range(2)]
    together = shard_batches(halves, ruleset, 4, MatchedTraces())
    apart = [g for r in halves for g in shard_batches([r], ruleset, 4, MatchedTraces())]
    key = lambda s: (s.trace_id, s.span_id)  # noqa: E731
    got = sorted((s for _, g in together for s in g), key=key)
    assert got == sorted((s for _, g in apart for s in g), key=key) and len(got) == 100


def test_a_batch_arrow_fails_on_is_built_in_full_and_decided_span_by_span() -> None:
    rules = _rules(2, 1.0)
    flt = rules[0].filter
    arrow = flt._arrow

    def fail(batch: Any, memo: Any = None) -> Any:
        msg = "boom"
        raise pa.ArrowInvalid(msg)

    object.__setattr__(flt, "_arrow", fail)
    try:
        spans = _spans(9, 3)
        tags, bits = match_batch(builders.span_table(spans), lambda _p: rules)
        assert tags == [0] * len(spans) and bits == [-1] * len(spans)
        assert MatchedTraces().full_rows([s.trace_id for s in spans], bits) == [True] * len(spans)
    finally:
        object.__setattr__(flt, "_arrow", arrow)
