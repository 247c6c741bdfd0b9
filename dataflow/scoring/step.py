"""The scoring step: closed traces in, score rows out.

For each trace: the live rule set of its project; a late trace (spans after it closed) or one resumed from a
slim snapshot is completed from ClickHouse first; then `evaluate` decides, code scorers run, and every
result (an error included) becomes a score row. Decisions are counted per rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from dataflow import metrics
from dataflow.model import ScoreRow, Span, Trace
from dataflow.rules.engine import evaluate_batch, sampled_by_any
from dataflow.rules.matching import settled_unmatched
from dataflow.rules.model import RuleSet
from dataflow.rules.status import RuleStats
from dataflow.scoring.code_step import run_code_scorers
from dataflow.scoring.foreign import ForeignCheck
from dataflow.scoring.judge_step import jobs_for

logger = logging.getLogger(__name__)


class SpanSource(Protocol):
    def fetch(self, trace_ids: list[str]) -> dict[str, list[Span]]: ...


class RuleSetSource(Protocol):
    @property
    def current(self) -> RuleSet: ...


class ScoringStep:
    def __init__(
        self,
        rules: RuleSetSource,
        stats: RuleStats,
        fetcher: SpanSource | None,
        late_spans: str = "rescore",
        fetch_retries: int = 20,
        fetch_wait_s: float = 0.5,
        shared: Callable[[], bool] | None = None,
        foreign: ForeignCheck | None = None,
    ) -> None:
        """`shared`: True while other processes are live on the same ClickHouse behind a trace-id router. A
        trace's spans may then have reached two of them (the router's ring changed). A closed trace with no
        root span that some rule samples is completed from ClickHouse before it is scored; if the root is there
        (another process holds it, and has scored what it had), the whole trace is scored again here as a late
        one, with the same score ids, so the stored scores are the whole trace's. A trace with its root is
        scored as it is, unless `foreign` finds that another process scored a root-less part of it (one look-up
        per batch, for long enough traces: `dataflow.scoring.foreign`); then it is completed and scored whole."""
        self._rules = rules
        self._stats = stats
        self._fetcher = fetcher
        self._late = late_spans
        self._retries = fetch_retries
        self._wait = fetch_wait_s
        self._shared = shared
        self._foreign = foreign

    def __call__(self, traces: list[Trace]) -> list[tuple[str, Any]]:
        """Score a batch of closed traces: one ("scores", [rows]) item for all its code-scorer rows, and one
        ("judge", job) per judge call."""
        ruleset = self._rules.current
        todo = [t for t in traces if ruleset.for_project(t.project)]
        if self._late == "ignore":
            todo = [t for t in todo if not t.late]
        if self._shared is not None and self._shared():
            todo = self._complete_shared(todo, ruleset)
        else:
            todo = self._complete(todo, ruleset, skip_unmatched=True)
        by_project: dict[str, list[Trace]] = {}
        for trace in todo:
            by_project.setdefault(trace.project, []).append(trace)
        rows: list[ScoreRow] = []
        jobs: list[tuple[str, Any]] = []
        now = time.time_ns()
        for project, group in by_project.items():
            starts = [min((s.start_ns for s in t.spans), default=0) for t in group]
            only = [
                (t.new_span_ids or frozenset(s.span_id for s in t.spans)) if t.late else None for t in group
            ]
            tasks, tally = evaluate_batch(group, ruleset.for_project(project), starts, only)
            self._stats.record_tally(tally)
            trace_start = {t.trace_id: st for t, st in zip(group, starts, strict=True)}
            for task in tasks:
                if task.rule.scorers:
                    rows.extend(run_code_scorers(task, trace_start[task.trace.trace_id], now))
                if task.rule.judges:
                    jobs.extend(("judge", job) for job in jobs_for(task))
        self._stats.publish()
        return [("scores", rows), *jobs] if rows else jobs

    def _complete_shared(self, traces: list[Trace], ruleset: RuleSet) -> list[Trace]:
        """`_complete` with other processes live: root-less traces too; root-holding ones another process
        recorded a part of; root-less parts with no root stored recorded (`dataflow.scoring.foreign`)."""
        todo = [_partial(t) for t in traces]
        if self._foreign is not None:
            todo = self._foreign.mark(todo, ruleset)
        todo = self._complete(todo, ruleset)
        if self._foreign is not None:
            self._foreign.record(todo)
        return [_as_late_if_foreign(t) for t in todo]

    def _complete(self, traces: list[Trace], ruleset: RuleSet, skip_unmatched: bool = False) -> list[Trace]:
        """Fill in late, resumed and partial traces that some rule samples from ClickHouse (blocking; rare: late
        spans, restarts, a trace that matched a rule only after some of its spans arrived). `skip_unmatched`:
        not a trace whose spans' match bits say no rule matched (`settled_unmatched`: nothing to score)."""
        maybe = [
            t
            for t in traces
            if t.late
            or not (
                t.complete or (skip_unmatched and settled_unmatched(t.spans, ruleset.for_project(t.project)))
            )
        ]
        if not maybe:
            return traces
        hit = sampled_by_any(ruleset.for_project, [t.trace_id for t in maybe], [t.project for t in maybe])
        need = {t.trace_id: t for i, t in enumerate(maybe) if hit is None or hit[i]}
        if not need or self._fetcher is None:
            return traces
        fetched: dict[str, list[Span]] = {}
        for attempt in range(self._retries + 1):
            fetched = self._fetcher.fetch(list(need))
            missing = [t for t in need.values() if not _covers(fetched.get(t.trace_id, []), t)]
            if not missing:
                break
            if attempt < self._retries:
                time.sleep(self._wait)  # the spans' segment is not inserted yet
        out = []
        for trace in traces:
            if trace.trace_id not in need:
                out.append(trace)
                continue
            stored = {s.span_id: s for s in fetched.get(trace.trace_id, [])}
            window = {s.span_id: s for s in trace.spans}
            complete = all(sid in stored for sid in window if not trace.complete)
            if not complete:
                metrics.SCORING_INCOMPLETE_TRACES.inc()
                logger.warning("trace %s: some resumed spans were not found in ClickHouse", trace.trace_id)
            merged = {
                **stored,
                **{sid: s for sid, s in window.items() if trace.complete or sid not in stored},
            }
            spans = tuple(sorted(merged.values(), key=lambda s: (s.start_ns, s.span_id)))
            out.append(replace(trace, spans=spans, complete=complete, new_span_ids=frozenset(window)))
        return out


def _partial(trace: Trace) -> Trace:
    """A root-less window's trace marked for completion from ClickHouse (a late one is completed anyway)."""
    if trace.late or not trace.complete or any(s.is_root for s in trace.spans):
        return trace
    return replace(trace, complete=False)


def _as_late_if_foreign(trace: Trace) -> Trace:
    """A completed fragment whose root arrived at another process: scored as late spans of that trace (span
    scope: this fragment's spans; trace scope: the whole trace again), counted."""
    root = trace.root
    if trace.late or not trace.new_span_ids or root is None or root.span_id in trace.new_span_ids:
        return trace
    if not root.is_root:
        return trace  # no root anywhere yet: the earliest span stands in, as on one process
    metrics.SCORING_FOREIGN_FRAGMENTS.inc()
    return replace(trace, late=True)


def _covers(stored: list[Span], trace: Trace) -> bool:
    """Stored spans cover what the window holds only slim copies of (resumed) or, for late traces, anything."""
    if trace.complete:
        return bool(stored) or not trace.late
    have = {s.span_id for s in stored}
    return all(s.span_id in have for s in trace.spans)
