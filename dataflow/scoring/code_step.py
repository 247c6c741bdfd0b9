"""Running a task's code scorers and turning their results into score rows.

Code scorers are cheap and run inline, one after another. Each result becomes a row, an error included;
nothing a scorer does can stop the flow.
"""

from __future__ import annotations

import time

from dataflow.model import ScoreRow
from dataflow.rules.engine import EvalTask
from dataflow.rules.model import score_id
from dataflow.scorers.code import CompiledScorer, ScoreResult


def score_row(
    task: EvalTask,
    scorer: CompiledScorer,
    result: ScoreResult,
    latency_ms: float,
    trace_start: int | None = None,
) -> ScoreRow:
    rule = task.rule
    trace = task.trace
    span = task.span
    subject = span if span is not None else trace.root
    span_id = span.span_id if span is not None else ""
    if trace_start is None:
        trace_start = min((s.start_ns for s in trace.spans), default=0)
    return ScoreRow(
        score_id=score_id(rule.id, trace.trace_id, span_id, scorer.name),
        project=rule.spec.project,
        trace_id=trace.trace_id,
        span_id=span_id,
        session_id=subject.session_id if subject is not None else "",
        name=scorer.name,
        value=result.value,
        string_value=result.string_value,
        data_type=result.data_type,
        comment=result.comment,
        source="EVAL",
        rule_id=rule.id,
        rule_name=rule.spec.name,
        rule_version=rule.spec.version,
        scorer=scorer.kind,
        model="",
        passed=result.passed,
        error=result.error,
        latency_ms=latency_ms,
        input_tokens=0,
        output_tokens=0,
        cost_usd=0.0,
        metadata={
            **result.metadata,
            "close_reason": trace.close_reason.value,
            **({"late": "true"} if trace.late else {}),
        },
        trace_start_ns=trace_start,
        timestamp_ns=time.time_ns(),
    )


def run_code_scorers(task: EvalTask) -> list[ScoreRow]:
    target = task.span if task.span is not None else task.trace
    rows = []
    trace_start = min((s.start_ns for s in task.trace.spans), default=0)
    for scorer in task.rule.scorers:
        started = time.perf_counter()
        result = scorer.score(target)
        rows.append(score_row(task, scorer, result, (time.perf_counter() - started) * 1000, trace_start))
    return rows
