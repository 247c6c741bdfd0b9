"""Running a task's code scorers and turning their results into score rows.

Code scorers are cheap and run inline, one after another. Each result becomes a row, an error included;
nothing a scorer does can stop the flow.
"""

from __future__ import annotations

import time

from dataflow.model import CloseReason, ScoreRow
from dataflow.rules.engine import EvalTask
from dataflow.rules.model import score_id
from dataflow.scorers.code import CompiledScorer, ScoreResult


def score_row(
    task: EvalTask,
    scorer: CompiledScorer,
    result: ScoreResult,
    latency_ms: float,
    trace_start: int | None = None,
    now_ns: int | None = None,
) -> ScoreRow:
    rule = task.rule
    spec = rule.spec
    trace = task.trace
    span = task.span
    subject = span if span is not None else trace.root
    span_id = span.span_id if span is not None else ""
    if trace_start is None:
        trace_start = min((s.start_ns for s in trace.spans), default=0)
    extra = _META[(trace.close_reason.value, trace.late)]
    # Positional: this runs for every score row (~12 per trace in the rules benchmark).
    return ScoreRow(
        score_id(rule.id, trace.trace_id, span_id, scorer.name),
        spec.project,
        trace.trace_id,
        span_id,
        subject.session_id if subject is not None else "",
        scorer.name,
        result.value,
        result.string_value,
        result.data_type,
        result.comment,
        "EVAL",
        rule.id,
        spec.name,
        spec.version,
        scorer.kind,
        "",
        result.passed,
        result.error,
        latency_ms,
        0,
        0,
        0.0,
        {**result.metadata, **extra} if result.metadata else extra,
        trace_start,
        time.time_ns() if now_ns is None else now_ns,
    )


def _metadata(reason: str, late: bool) -> dict[str, str]:
    return {"close_reason": reason, **({"late": "true"} if late else {})}


# Shared, never mutated: most rows' metadata is just the close reason.
_META = {(r.value, late): _metadata(r.value, late) for r in CloseReason for late in (False, True)}


def run_code_scorers(
    task: EvalTask, trace_start: int | None = None, now_ns: int | None = None
) -> list[ScoreRow]:
    target = task.span if task.span is not None else task.trace
    if trace_start is None:
        trace_start = min((s.start_ns for s in task.trace.spans), default=0)
    rows = []
    clock = time.perf_counter
    for scorer in task.rule.scorers:
        started = clock()
        result = scorer.score(target)
        rows.append(score_row(task, scorer, result, (clock() - started) * 1000, trace_start, now_ns))
    return rows
