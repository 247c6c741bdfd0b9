"""A job's dry run: what it would score and an estimate of its judge calls' tokens and cost (issue 11).

Counts come from the job's plan with the rule's sample applied, the same decisions the run makes (the plan's
SQL filter is proven equal to the Python one), so the dry run's traces, spans and judge calls are what the run
then scores. Input tokens are estimated as characters / 4 of each call's prompt: the judge's template (its
request built on an empty span) plus the stored input and output it would read; output tokens as
`OUTPUT_TOKENS` a call. Cost uses the connections' prices (0 where a price is not set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dataflow.jobs.model import Candidate
from dataflow.jobs.scoring import replayed
from dataflow.judging.connections import ConnectionSpec
from dataflow.model import Span
from dataflow.rules.model import CompiledRule

OUTPUT_TOKENS = 100
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Estimate:
    traces: int
    spans: int
    judge_calls: int
    estimated_input_tokens: int
    estimated_cost_usd: float


def selected(plan: Sequence[Candidate], rule: CompiledRule | None) -> list[Candidate]:
    """The candidates a run scores: sampled by the rule and matching something (all, without a rule)."""
    if rule is None:
        return [c for c in plan if c.tasks > 0]
    return [c for c in plan if c.tasks > 0 and rule.sampled(c.trace_id)]


def estimate(
    plan: Sequence[Candidate],
    rules: Sequence[CompiledRule],
    sampling_rule: CompiledRule | None,
    connection: Callable[[str], ConnectionSpec | None],
) -> Estimate:
    """`rules`: the rule(s) whose scorers run (one per project for manual scorers; their judges are alike)."""
    chosen = selected(plan, sampling_rule)
    trace_scope = (sampling_rule or rules[0]).spec.scope == "trace" if rules else True
    tasks = sum(c.tasks for c in chosen)
    judges = rules[0].judges if rules else ()
    io_chars = sum(c.io_chars for c in chosen)
    input_tokens = 0
    cost = 0.0
    for judge in judges:
        template = _template_chars(judge)
        tokens = (template * tasks + io_chars) // CHARS_PER_TOKEN
        input_tokens += tokens
        conn = connection(judge.connection)
        if conn is not None:
            cost += conn.cost_usd(tokens, OUTPUT_TOKENS * tasks)
    spans = sum(c.spans for c in chosen) if trace_scope else tasks
    return Estimate(len(chosen), spans, tasks * len(judges), input_tokens, round(cost, 6))


def _template_chars(judge: object) -> int:
    empty = Span("0" * 32, "0" * 16, "", "", "", "", "", "", "", "", 0, 0, "", "")
    try:
        request = judge.build_request(replayed("0" * 32, [empty]), empty)  # type: ignore[attr-defined]
    except Exception:  # an estimate: a template that cannot be built on an empty span counts as nothing
        return 0
    return len(request.system) + len(request.prompt)
