"""Deciding what to score: a closed trace and the project's rules in, evaluation tasks and decisions out.

Per rule, in this order (the cheapest test first, so 10% sampling costs 10% of the filtering):
  sampled_out    the trace's deterministic sample (rule id, trace id) is outside the rate;
  filtered_out   trace scope: no span passes the filter; span scope: no span passes it;
  not_targeted   span scope: spans pass the filter, but none is a root span or a listed name;
  scored         trace scope: one task for the trace; span scope: one task per span passing both.
Spans written by tracejudge's own judges (attribute `tracejudge.judge`) never trigger a rule.
This module knows nothing of how scoring is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from dataflow.model import Span, Trace
from dataflow.rules.matching import matcher, rules_tag
from dataflow.rules.model import CompiledRule, hash64
from dataflow.rules.sampling import sample_matrix

JUDGE_ATTRIBUTE = "tracejudge.judge"


class Outcome(StrEnum):
    SAMPLED_OUT = "sampled_out"
    FILTERED_OUT = "filtered_out"
    NOT_TARGETED = "not_targeted"
    SCORED = "scored"


@dataclass(frozen=True)
class EvalTask:
    """Score `trace` (trace scope, `span` None) or one of its spans with `rule`'s scorers."""

    rule: CompiledRule
    trace: Trace
    span: Span | None


@dataclass(frozen=True)
class Decision:
    rule: CompiledRule
    outcome: Outcome
    tasks: int = 0


def scorable_spans(trace: Trace) -> tuple[Span, ...]:
    return tuple(s for s in trace.spans if JUDGE_ATTRIBUTE not in s.attributes)


def decide(
    rule: CompiledRule,
    trace: Trace,
    spans: tuple[Span, ...],
    candidates: tuple[Span, ...],
    matches: Callable[[Span], bool] | None = None,
) -> tuple[Outcome, list[EvalTask]]:
    """The decision for one rule whose sample includes the trace: filter, then (span scope) targeting.
    `matches` is the rule's filter (default: its predicate; the flow passes `matching.matcher`)."""
    matches = matches or rule.filter.matches
    if rule.spec.scope == "trace":
        if any(matches(s) for s in spans):
            return Outcome.SCORED, [EvalTask(rule, trace, None)]
        return Outcome.FILTERED_OUT, []
    # Targeting is a set lookup, the filter is not: filter only targeted spans, and look at the others
    # only to tell "not targeted" (some span passes the filter) from "filtered out".
    targets = rule.targets
    targeted = [s for s in candidates if targets(s) and matches(s)]
    if not targeted:
        passes = any(matches(s) for s in candidates if not targets(s))
        return (Outcome.NOT_TARGETED if passes else Outcome.FILTERED_OUT), []
    return Outcome.SCORED, [EvalTask(rule, trace, s) for s in targeted]


def evaluate(
    trace: Trace, rules: tuple[CompiledRule, ...], span_scope_only: frozenset[str] | None = None
) -> tuple[list[EvalTask], list[Decision]]:
    """Decide every rule for one `trace`. With `span_scope_only`, span-scope rules consider only those span
    ids (a late trace: its earlier spans were scored when it first closed)."""
    tasks: list[EvalTask] = []
    decisions: list[Decision] = []
    spans = scorable_spans(trace)
    if not spans:
        return tasks, decisions
    candidates = _candidates(spans, span_scope_only)
    trace_hash = hash64(trace.trace_id)
    for rule in rules:
        if not rule.sampled(trace.trace_id, trace_hash):
            decisions.append(Decision(rule, Outcome.SAMPLED_OUT))
            continue
        outcome, found = decide(rule, trace, spans, candidates)
        tasks.extend(found)
        decisions.append(Decision(rule, outcome, len(found)))
    return tasks, decisions


def _candidates(spans: tuple[Span, ...], only: frozenset[str] | None) -> tuple[Span, ...]:
    return spans if only is None else tuple(s for s in spans if s.span_id in only)


@dataclass
class Tally:
    """A batch's decisions per rule (`counts[i]` by `OUTCOMES` order, for `rules[i]`), and the latest start
    of the traces it saw."""

    rules: tuple[CompiledRule, ...]
    counts: list[list[int]]
    latest_trace_ns: int


OUTCOMES = (Outcome.FILTERED_OUT, Outcome.NOT_TARGETED, Outcome.SAMPLED_OUT, Outcome.SCORED)
_INDEX = {o: i for i, o in enumerate(OUTCOMES)}


def evaluate_batch(
    traces: list[Trace],
    rules: tuple[CompiledRule, ...],
    trace_starts: list[int],
    span_scope_only: list[frozenset[str] | None] | None = None,
) -> tuple[list[EvalTask], Tally]:
    """`evaluate` for many traces of one project at once, counted rather than listed: the samples of all
    (trace, rule) pairs come from one vectorised computation, and only sampled pairs are looked at. A span's
    filter result is read from its match bits when they were computed for these rules."""
    counts = [[0, 0, 0, 0] for _ in rules]
    tasks: list[EvalTask] = []
    seen = [(i, t, scorable_spans(t)) for i, t in enumerate(traces)]
    seen = [x for x in seen if x[2]]
    latest = max((trace_starts[i] for i, _, _ in seen), default=0)
    if not seen or not rules:
        return tasks, Tally(rules, counts, latest)
    chosen = sample_matrix([hash64(t.trace_id) for _, t, _ in seen], rules)
    sampled_in = chosen.sum(axis=0).tolist()
    sampled_out = _INDEX[Outcome.SAMPLED_OUT]
    for r, n in enumerate(sampled_in):
        counts[r][sampled_out] = len(seen) - n
    # Match bits exist only when the flow's spans step computed them (`rules.batch_filters`); without any, the
    # predicates are called directly (no per-call check of a tag on the per-span path).
    if any(s.rules_tag for _, _, spans_ in seen for s in spans_):
        tag = rules_tag(rules)
        matchers = [matcher(rule, r, tag) for r, rule in enumerate(rules)]
    else:
        matchers = [rule.filter.matches for rule in rules]
    rows, cols = chosen.nonzero()
    current = -1
    spans: tuple[Span, ...] = ()
    candidates: tuple[Span, ...] = ()
    trace = traces[0]
    for row, r in zip(rows.tolist(), cols.tolist(), strict=True):
        if row != current:
            current = row
            i, trace, spans = seen[row]
            candidates = _candidates(spans, span_scope_only[i] if span_scope_only else None)
        outcome, found = decide(rules[r], trace, spans, candidates, matchers[r])
        counts[r][_INDEX[outcome]] += 1
        if found:
            tasks.extend(found)
    return tasks, Tally(rules, counts, latest)


def sampled_by_any(
    rules_of: Callable[[str], tuple[CompiledRule, ...]], trace_ids: list[str], projects: list[str]
) -> list[bool] | None:
    """Per row (a span's trace id and project): does some rule of the project sample the trace? None when
    all do. Sampling depends on the trace id alone, so this is known as soon as a span arrives."""
    project_of: dict[str, str] = {}
    for tid, project in zip(trace_ids, projects, strict=True):
        project_of.setdefault(tid, project)
    by_project: dict[str, list[str]] = {}
    for tid, project in project_of.items():
        by_project.setdefault(project, []).append(tid)
    verdict: dict[str, bool] = {}
    for project, tids in by_project.items():
        rules = rules_of(project)
        if any(r.spec.sampling_rate >= 1.0 for r in rules):
            verdict.update(dict.fromkeys(tids, True))
            continue
        if not rules:
            verdict.update(dict.fromkeys(tids, False))
            continue
        hits = sample_matrix([hash64(t) for t in tids], rules).any(axis=1).tolist()
        verdict.update(zip(tids, hits, strict=True))
    if all(verdict.values()):
        return None
    return [verdict[t] for t in trace_ids]
