"""Root-less trace parts that another process scored, seen from the process that holds the root (issue 14 item 2).

Several processes behind a trace-id router: a change of the router's ring can split an open trace between two
of them. The process whose part has no root completes it from ClickHouse (`ScoringStep`'s shared mode); if the
root is stored, it scores the whole trace. That misses one case: the root reaches process A only after process
B closed its root-less part (a trace still running one `windows.idle_gap_s` after the change). B found no root
and scored its part with the earliest span standing in; A, holding the root, would score only its own spans.

So while shared, B records each root-less part it scored with no root stored (`trace_fragments`, a small table
sorted by trace id), and A, before scoring, looks up the trace ids of its batch there (one query per batch):
each trace found is marked late, so the scoring step completes it from ClickHouse (a full fetch of those traces
alone) and scores it whole, with the same score ids, so B's trace-scope rows are replaced (`scores` is a
ReplacingMergeTree on the score id, keyed by rule and trace) and span-scope rules score A's spans only (B scored
its own). A first version asked `otel_traces` for the span ids of the batch's traces instead (no text column):
36-100 ms a batch against 6-12 ms (`bench/RESULTS.md`, "Scale-out"), since a batch's spans lie in a granule of
every (project, service, span name), read whole, and that grows with the span rate.

Which traces are looked up: those with their root, sampled by some rule, not late, that started at least half
an idle gap before they closed. In the case above, B's spans started after the root did and were acknowledged
at least `idle_gap_s` before the root arrived at A (B closed its part after that much quiet, and before the root
came), so the root started at least `idle_gap_s` before A closed the trace; the half left as margin covers clock
skew between the root's service and this process. A short trace is never looked up.

Why B's record and spans are in ClickHouse when A looks: B completes its root-less part only once its own spans
are stored (`ScoringStep._complete`, up to its fetch retries) and records it right after, before it scores; the
root reached A after that, so before A closed. When both parts are open at once, B's completion finds the root
if it is stored by then; if not, B records its part, and A finds the record if it closes after that. Where it
can still miss (said in the README): B read before the root was stored and recorded after A looked (the root
arrived within the insert lag, `wal.segment_max_age_s` plus the insert, of B's completion), or ClickHouse
refused the record or the look-up (logged); and since `scores` keeps the latest row per score id, a judge call
on B's part that answers after A's call on the whole trace leaves B's row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from dataflow import metrics
from dataflow.errors import QueryError, SinkError
from dataflow.model import Trace
from dataflow.rules.engine import sampled_by_any
from dataflow.rules.model import RuleSet

logger = logging.getLogger(__name__)

NS = 1_000_000_000
T = TypeVar("T")


class FragmentLog(Protocol):
    def record(self, fragments: list[tuple[str, str]]) -> None: ...

    def known(self, trace_ids: list[str]) -> set[str]: ...


@dataclass
class ForeignCheck:
    """Records root-less parts scored here; marks root-holding traces of which another process scored a part."""

    fragments: FragmentLog
    idle_gap_s: float
    _failing: bool = field(default=False, init=False)

    def mark(self, traces: list[Trace], ruleset: RuleSet) -> list[Trace]:
        """`traces` with those of which another process recorded a root-less part marked late (to be completed
        and scored whole); at most one query. If ClickHouse cannot answer, the traces are scored as they are."""
        min_age = int(self.idle_gap_s * NS / 2)
        asked = [i for i, t in enumerate(traces) if _may_be_split(t, min_age)]
        if asked:
            hit = sampled_by_any(
                ruleset.for_project, [traces[i].trace_id for i in asked], [traces[i].project for i in asked]
            )
            asked = [i for k, i in enumerate(asked) if hit is None or hit[k]]
        if not asked:
            return traces
        ids = [traces[i].trace_id for i in asked]
        none: set[str] = set()
        found = self._guarded("look-up", lambda: self.fragments.known(ids), none)
        out = list(traces)
        for i in asked:
            if traces[i].trace_id in found:
                metrics.SCORING_FOREIGN_FRAGMENTS.inc()
                out[i] = replace(traces[i], late=True)
        return out

    def record(self, traces: list[Trace]) -> None:
        """Record the root-less parts among `traces` (completed from ClickHouse, no root found): scored here with
        a stand-in root, to be scored whole by the process that gets the root."""
        rows = [(t.trace_id, t.project) for t in traces if _rootless_part(t)]
        if rows:
            self._guarded("record", lambda: self.fragments.record(rows), None)

    def _guarded(self, operation: str, call: Callable[[], T], default: T) -> T:
        try:
            with metrics.SCORING_FRAGMENT_QUERY_DURATION.labels(operation).time():
                result = call()
        except (QueryError, SinkError) as exc:
            if not self._failing:
                logger.warning("root-less trace parts (trace_fragments): the %s failed: %s", operation, exc)
            self._failing = True
            return default
        if self._failing:
            logger.info("root-less trace parts (trace_fragments): the %s works again", operation)
            self._failing = False
        return result


def _may_be_split(trace: Trace, min_age_ns: int) -> bool:
    root = trace.root
    if trace.late or not trace.complete or root is None or not root.is_root:
        return False
    return trace.closed_at_ns - root.start_ns >= min_age_ns


def _rootless_part(trace: Trace) -> bool:
    root = trace.root
    return not trace.late and bool(trace.new_span_ids) and root is not None and not root.is_root
