"""Scoring one page of a job's traces through the live scoring path (issue 11).

The same functions as live traffic: `evaluate_batch` (the rule's current filter, targeting and sampling; the
Python filter decides, whatever the plan's SQL pre-selected), `run_code_scorers`, and the judge step's
`JudgeLogic` (connections, key checks, the rule's budgets shared with live traffic, the executor's retries and
breaker, judge spans), driven here outside Bytewax. Score ids are the live ones, so a re-run replaces rows.
`score_traces` jobs skip filter and sampling (the user chose the traces): every listed trace (or span) is a task.

A trace-scope rule whose scorers read only the root span (`reads_root_only`: built-in code scorers, which score
the root's input, output or name) is decided by the plan alone: its SQL filter is proven equal to the Python
filter (tests/integration/test_filter_differential.py) and the sample is the same hash, so only each trace's
root is read and becomes a Python span (`root_tasks`); reading and building every span was most of a rewind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataflow.jobs.model import Candidate, Progress
from dataflow.model import CloseReason, ScoreRow, Span, Trace
from dataflow.rules.engine import OUTCOMES, EvalTask, Outcome, evaluate_batch, scorable_spans
from dataflow.rules.model import CompiledRule
from dataflow.scoring.code_step import run_code_scorers
from dataflow.scoring.judge_step import JudgeContext, JudgeLogic, jobs_for

_POLL_S = 0.02


@dataclass
class PageResult:
    rows: list[ScoreRow]
    judge_spans: list[dict[str, Any]]
    complete: bool = True  # False: interrupted, judge calls cut short (their rows are missing)


def replayed(trace_id: str, spans: list[Span]) -> Trace:
    """A stored trace as the scoring path takes it (closed by replay, complete)."""
    now = time.time_ns()
    ordered = tuple(sorted(spans, key=lambda s: (s.start_ns, s.span_id)))
    return Trace(trace_id, ordered, CloseReason.REPLAY, now, now, now)


def planned(page: Sequence[Candidate], rule: CompiledRule, progress: Progress) -> list[Candidate]:
    """The page's traces the rule samples and whose plan matched something; the others are counted."""
    chosen = []
    for c in page:
        if not rule.sampled(c.trace_id):
            progress.sampled_out += 1
        elif c.tasks == 0:
            progress.filtered_out += 1
        else:
            chosen.append(c)
    return chosen


def reads_root_only(rule: CompiledRule) -> bool:
    """Whether scoring with `rule` reads no more of a trace than its root span: trace scope and built-in code
    scorers only (a user function receives the whole `Trace`, a judge's prompt may show every span)."""
    return rule.spec.scope == "trace" and not rule.judges and all(":" not in s.kind for s in rule.scorers)


def root_tasks(chosen: Sequence[Candidate], roots: Mapping[str, Span], rule: CompiledRule) -> list[EvalTask]:
    """A task per chosen trace whose root was read, the trace holding its root alone: the plan decided."""
    return [
        EvalTask(rule, replayed(c.trace_id, [roots[c.trace_id]]), None) for c in chosen if c.trace_id in roots
    ]


def rule_tasks(traces: list[Trace], rule: CompiledRule, progress: Progress) -> list[EvalTask]:
    """The rule's decision on each trace (counted into `progress`), and the tasks to score."""
    starts = [min((s.start_ns for s in t.spans), default=0) for t in traces]
    tasks, tally = evaluate_batch(traces, (rule,), starts)
    counts = dict(zip(OUTCOMES, tally.counts[0], strict=True)) if tally.counts else {}
    progress.filtered_out += counts.get(Outcome.FILTERED_OUT, 0) + counts.get(Outcome.NOT_TARGETED, 0)
    progress.sampled_out += counts.get(Outcome.SAMPLED_OUT, 0)
    progress.filtered_out += len(traces) - sum(counts.values())  # nothing scorable (judge spans only)
    return tasks


def chosen_tasks(
    traces: list[Trace], rule_of: Callable[[str], CompiledRule], scope: str, span_ids: frozenset[str]
) -> list[EvalTask]:
    """Every listed trace (trace scope) or listed span (span scope; every span when none is listed)."""
    tasks: list[EvalTask] = []
    for trace in traces:
        rule = rule_of(trace.project)
        if scope == "trace":
            tasks.append(EvalTask(rule, trace, None))
            continue
        for span in scorable_spans(trace):
            if not span_ids or span.span_id in span_ids:
                tasks.append(EvalTask(rule, trace, span))
    return tasks


def score_tasks(
    tasks: list[EvalTask],
    judges: JudgeContext | None,
    progress: Progress,
    stop: threading.Event,
    stopping: Callable[[], bool] = lambda: False,
    starts: Mapping[str, int] | None = None,
) -> PageResult:
    """Run the tasks' code scorers and judges; wait for the judges (until `stopping()` says to give up, when
    the calls still running are cancelled and their rows are not written: the page is redone on resume).
    `starts`: trace starts from the plan, for traces whose spans were not all read."""
    rows: list[ScoreRow] = []
    starts = starts or {}
    for task in tasks:
        if task.rule.scorers:
            rows.extend(run_code_scorers(task, starts.get(task.trace.trace_id)))
    spans: list[dict[str, Any]] = []
    judge_jobs = [job for task in tasks for job in jobs_for(task)]
    if judge_jobs and judges is not None:
        logic = JudgeLogic(judges, None)
        outputs = list(logic.on_batch(judge_jobs)[0])
        while logic.notify_at() is not None:
            if stopping():
                logic.abandon()
                return PageResult(_counted(rows, progress), [], complete=False)
            stop.wait(_POLL_S)
            outputs.extend(logic.on_notify()[0])
        for kind, item in outputs:
            (rows if kind == "scores" else spans).append(item)
        _count_judges([r for k, r in outputs if k == "scores"], progress)
    return PageResult(_counted(rows, progress), spans)


def _counted(rows: list[ScoreRow], progress: Progress) -> list[ScoreRow]:
    for row in rows:
        if row.error:
            progress.errors += 1
        else:
            progress.scored += 1
    return rows


def _count_judges(rows: list[ScoreRow], progress: Progress) -> None:
    for row in rows:
        shed = row.metadata.get("shed") if row.metadata else None
        if shed:
            progress.add_shed(shed)
        elif row.metadata.get("attempts", "0") != "0":
            progress.judge_calls += 1
        progress.cost_usd += row.cost_usd
