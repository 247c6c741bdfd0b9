"""Per-rule decision counts of this process: Prometheus counters now, status rows every few seconds.

Counts are cumulative across restarts: at start the process's last stored row seeds them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from dataflow import metrics
from dataflow.rules.engine import Decision, Outcome

_OUTCOMES = (Outcome.FILTERED_OUT, Outcome.NOT_TARGETED, Outcome.SAMPLED_OUT, Outcome.SCORED)
_INDEX = {o: i for i, o in enumerate(_OUTCOMES)}


@dataclass
class RuleCounts:
    rule_version: int = 0
    traces_seen: int = 0
    filtered_out: int = 0
    not_targeted: int = 0
    sampled_out: int = 0
    scored: int = 0
    scorer_errors: int = 0
    last_evaluated_ns: int = 0
    last_trace_ns: int = 0


class RuleStats:
    """Thread-safe counters per rule id; `snapshot()` gives copies for the status writer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, RuleCounts] = {}
        self._dirty: set[str] = set()
        # Prometheus increments are batched: one `inc` per (labels) per `publish()`, not per decision.
        self._decisions: Counter[tuple[str, str]] = Counter()
        self._scores: Counter[tuple[str, str, str]] = Counter()

    def seed(self, rule_id: str, counts: RuleCounts) -> None:
        with self._lock:
            self._counts[rule_id] = counts

    def record(self, decisions: list[Decision], trace_start_ns: int) -> None:
        """Count one trace's decisions (kept cheap: batch callers should prefer `record_many`)."""
        self.record_many([(decisions, trace_start_ns)])

    def record_many(self, batch: list[tuple[list[Decision], int]]) -> None:
        now = time.time_ns()
        tally: dict[str, list[int]] = {}
        latest: dict[str, int] = {}
        rules: dict[str, Decision] = {}
        for decisions, trace_start_ns in batch:
            for d in decisions:
                rid = d.rule.id
                t = tally.get(rid)
                if t is None:
                    t = tally[rid] = [0, 0, 0, 0]
                    rules[rid] = d
                t[_INDEX[d.outcome]] += 1
                if trace_start_ns > latest.get(rid, 0):
                    latest[rid] = trace_start_ns
        with self._lock:
            for rid, (filtered, not_targeted, sampled_out, scored) in tally.items():
                rule = rules[rid].rule
                c = self._counts.setdefault(rid, RuleCounts())
                c.rule_version = rule.spec.version
                c.traces_seen += filtered + not_targeted + sampled_out + scored
                c.filtered_out += filtered
                c.not_targeted += not_targeted
                c.sampled_out += sampled_out
                c.scored += scored
                c.last_evaluated_ns = now
                c.last_trace_ns = max(c.last_trace_ns, latest.get(rid, 0))
                self._dirty.add(rid)
                name = rule.spec.name
                for outcome, n in zip(_OUTCOMES, (filtered, not_targeted, sampled_out, scored), strict=True):
                    if n:
                        self._decisions[(name, outcome.value)] += n

    def record_score(self, rule_id: str, rule_name: str, scorer: str, error: bool) -> None:
        with self._lock:
            if error:
                self._counts.setdefault(rule_id, RuleCounts()).scorer_errors += 1
                self._dirty.add(rule_id)
            self._scores[(rule_name, scorer, "error" if error else "ok")] += 1

    def publish(self) -> None:
        """Push the counts gathered since the last call to Prometheus."""
        with self._lock:
            decisions, self._decisions = self._decisions, Counter()
            scores, self._scores = self._scores, Counter()
        for (rule, outcome), n in decisions.items():
            metrics.RULE_DECISIONS.labels(rule, outcome).inc(n)
        for (rule, scorer, outcome), n in scores.items():
            metrics.RULE_SCORES.labels(rule, scorer, outcome).inc(n)

    def take_dirty(self) -> dict[str, RuleCounts]:
        """Copies of the counts that changed since the last call."""
        with self._lock:
            out = {rid: RuleCounts(**vars(self._counts[rid])) for rid in self._dirty}
            self._dirty.clear()
        return out

    def get(self, rule_id: str) -> RuleCounts:
        with self._lock:
            return RuleCounts(**vars(self._counts.get(rule_id, RuleCounts())))
