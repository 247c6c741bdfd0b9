"""Spans of a trace that another process stored, seen from the process that holds the root (issue 14 item 2).

Several processes behind a trace-id router: a change of the router's ring can split an open trace between two
of them. The process whose part has no root completes it from ClickHouse (`ScoringStep`'s shared mode); if the
root is stored, it scores the whole trace. That misses one case: the root reaches process A only after process
B closed its root-less part (a trace still running one `windows.idle_gap_s` after the change). B found no root
and scored its part with the earliest span standing in; A, holding the root, would score only its own spans.

So while shared, before scoring, A asks ClickHouse which span ids are stored for such traces (one query per
batch, ids only: no text column is read) and marks each trace with stored spans its window does not have as
late: the scoring step then completes it from ClickHouse (a full fetch of those traces alone) and scores it
whole, with the same score ids, so B's trace-scope rows are replaced (`scores` is a ReplacingMergeTree on the
score id, keyed by rule and trace) and span-scope rules score A's spans only (B scored its own).

Which traces are asked about: those with their root, sampled by some rule, not late, that started at least
half an idle gap before they closed. In the case above, B's spans started after the root did and were
acknowledged at least `idle_gap_s` before the root arrived at A (B closed its part after that much quiet, and
before the root came), so the root started at least `idle_gap_s` before A closed the trace; the half left as
margin covers clock skew between the root's service and this process. A short trace is never asked about.

Why B's spans are in ClickHouse when A asks: B's completion of its root-less part waited until its own spans
were stored (`ScoringStep._complete`, up to its fetch retries), and B did that before the root reached A, so
before A closed. When both parts are open at once, whichever closes last sees the other (B's completion finds
the root if it is stored; A's check finds B's part if it is stored). Where it can still miss (said in the
README): span inserts lagging more than about half an idle gap (a ClickHouse outage); and the order of the
writes, since `scores` keeps the latest row per score id: B's fragment row wins if it is written after A's whole
one (B read before A's root was stored, i.e. the root arrived within the insert lag, `wal.segment_max_age_s`
plus the insert, before B closed, but scored after A; or B's judge call answered after A's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Protocol

from dataflow import metrics
from dataflow.errors import QueryError
from dataflow.model import Trace
from dataflow.rules.engine import sampled_by_any
from dataflow.rules.model import RuleSet

logger = logging.getLogger(__name__)

NS = 1_000_000_000
# Spans of one trace from another service may start this far outside the root's span (clock skew).
SKEW_NS = 5 * NS


class SpanIdSource(Protocol):
    def span_ids(
        self, trace_ids: list[str], projects: list[str], lo_ns: int, hi_ns: int
    ) -> dict[str, set[str]]: ...


@dataclass
class ForeignCheck:
    """Marks root-holding traces whose other spans another process stored (see the module docstring)."""

    source: SpanIdSource
    idle_gap_s: float
    _failing: bool = field(default=False, init=False)

    def mark(self, traces: list[Trace], ruleset: RuleSet) -> list[Trace]:
        """`traces` with those that have spans stored elsewhere marked late (to be completed and scored whole);
        at most one query. If ClickHouse cannot answer, the traces are scored as they are (logged)."""
        min_age = int(self.idle_gap_s * NS / 2)
        asked = [i for i, t in enumerate(traces) if _may_be_split(t, min_age)]
        if asked:
            hit = sampled_by_any(
                ruleset.for_project, [traces[i].trace_id for i in asked], [traces[i].project for i in asked]
            )
            asked = [i for k, i in enumerate(asked) if hit is None or hit[k]]
        if not asked:
            return traces
        stored = self._stored([traces[i] for i in asked])
        out = list(traces)
        for i in asked:
            trace = traces[i]
            if stored.get(trace.trace_id, set()) - {s.span_id for s in trace.spans}:
                metrics.SCORING_FOREIGN_FRAGMENTS.inc()
                out[i] = replace(trace, late=True)
        return out

    def _stored(self, traces: list[Trace]) -> dict[str, set[str]]:
        lo = min(t.spans[0].start_ns for t in traces) - SKEW_NS
        hi = max(_end_ns(t) for t in traces) + SKEW_NS
        projects = sorted({t.project for t in traces})
        try:
            with metrics.SCORING_SPAN_ID_QUERY_DURATION.time():
                stored = self.source.span_ids([t.trace_id for t in traces], projects, lo, hi)
        except QueryError as exc:
            if not self._failing:
                logger.warning("checking closed traces for spans another process stored failed: %s", exc)
            self._failing = True
            return {}
        if self._failing:
            logger.info("checking closed traces for spans another process stored works again")
            self._failing = False
        return stored


def _may_be_split(trace: Trace, min_age_ns: int) -> bool:
    root = trace.root
    if trace.late or not trace.complete or root is None or not root.is_root:
        return False
    return trace.closed_at_ns - root.start_ns >= min_age_ns


def _end_ns(trace: Trace) -> int:
    """The latest a span of the trace may start: the root's end, or a later span's start in the window."""
    root = trace.root
    root_end = root.start_ns + root.duration_ns if root is not None else 0
    return max(root_end, trace.spans[-1].start_ns)
