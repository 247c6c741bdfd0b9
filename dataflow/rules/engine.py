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

from dataclasses import dataclass
from enum import StrEnum

from dataflow.model import Span, Trace
from dataflow.rules.model import CompiledRule, hash64

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


def evaluate(
    trace: Trace, rules: tuple[CompiledRule, ...], span_scope_only: frozenset[str] | None = None
) -> tuple[list[EvalTask], list[Decision]]:
    """Decide every rule for `trace`. With `span_scope_only`, span-scope rules consider only those span ids
    (a late trace: its earlier spans were scored when it first closed)."""
    tasks: list[EvalTask] = []
    decisions: list[Decision] = []
    spans = scorable_spans(trace)
    if not spans:
        return tasks, decisions
    span_candidates = (
        spans if span_scope_only is None else tuple(s for s in spans if s.span_id in span_scope_only)
    )
    trace_hash = hash64(trace.trace_id)
    for rule in rules:
        if not rule.sampled(trace.trace_id, trace_hash):
            decisions.append(Decision(rule, Outcome.SAMPLED_OUT))
            continue
        matches = rule.filter.matches
        if rule.spec.scope == "trace":
            if any(matches(s) for s in spans):
                tasks.append(EvalTask(rule, trace, None))
                decisions.append(Decision(rule, Outcome.SCORED, 1))
            else:
                decisions.append(Decision(rule, Outcome.FILTERED_OUT))
            continue
        # Targeting is a set lookup, the filter is not: filter only targeted spans, and look at the others
        # only to tell "not targeted" (some span passes the filter) from "filtered out".
        targets = rule.targets
        targeted = [s for s in span_candidates if targets(s) and matches(s)]
        if not targeted:
            passes = any(matches(s) for s in span_candidates if not targets(s))
            decisions.append(Decision(rule, Outcome.NOT_TARGETED if passes else Outcome.FILTERED_OUT))
            continue
        tasks.extend(EvalTask(rule, trace, s) for s in targeted)
        decisions.append(Decision(rule, Outcome.SCORED, len(targeted)))
    return tasks, decisions
