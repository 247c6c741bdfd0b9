""" "Test rule": what a rule would decide and score on stored traces, writing nothing.

Each trace gets: whether the rule's filter and targeting match it (and why not), whether its deterministic
sample includes it, and the scores its scorers give. Matching is decided as if the rate were 1, so a trace
outside the sample still shows whether it would match; `would_write` says whether the live rule writes them.
A preview of an unsaved rule samples with the id it is given (the id of a saved rule, to preview that
rule's sample exactly), or "preview".
"""

from __future__ import annotations

from typing import Any

from dataflow.model import Trace
from dataflow.rules.engine import Outcome, evaluate
from dataflow.rules.model import CompiledRule, compile_rule, sampled
from dataflow.scoring.code_step import run_code_scorers


def preview(rule: CompiledRule, traces: list[Trace]) -> dict[str, Any]:
    unsampled = compile_rule(rule.spec.model_copy(update={"sampling_rate": 1.0, "id": rule.id or "preview"}))
    sample_id = rule.id or "preview"
    results = []
    counts = {o.value: 0 for o in Outcome}
    for trace in traces:
        tasks, decisions = evaluate(trace, (unsampled,))
        outcome = decisions[0].outcome if decisions else Outcome.FILTERED_OUT
        in_sample = sampled(sample_id, trace.trace_id, rule.spec.sampling_rate)
        scores = []
        for task in tasks:
            for row in run_code_scorers(task):
                scores.append(
                    {
                        "span_id": row.span_id,
                        "name": row.name,
                        "value": row.value,
                        "string_value": row.string_value,
                        "data_type": row.data_type,
                        "passed": row.passed,
                        "comment": row.comment,
                        "error": row.error,
                    }
                )
        matched = outcome == Outcome.SCORED
        counts[(outcome if not matched or in_sample else Outcome.SAMPLED_OUT).value] += 1
        root = trace.root
        results.append(
            {
                "trace_id": trace.trace_id,
                "root_name": root.name if root else "",
                "spans": len(trace.spans),
                "matched": matched,
                "reason": outcome.value,
                "sampled": in_sample,
                "would_write": matched and in_sample,
                "scores": scores,
            }
        )
    return {"traces": results, "summary": {"traces": len(traces), **counts}}
