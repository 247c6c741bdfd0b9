"""Per-rule counts of this process: Prometheus counters now, status rows every few seconds.

Two feeds. The scoring step records its decisions per batch (`record_tally`). The score sink records every
score row once it is written (`record_rows`), code scorers and judges alike: the per-rule quality metrics
(outcome, verdict, value, errors by class, sheds by reason, judge latency, tokens, cost) and the status' error
and shed counts. Counts are cumulative across restarts: at start the process's last stored row seeds them.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from dataflow import metrics
from dataflow.model import ScoreRow
from dataflow.rules.engine import OUTCOMES, Tally

# Score rows of these scorer types come from judges (a code scorer's type is its function's name).
JUDGE_SCORERS = frozenset({"llm_judge", "autoevals"})
# The judge step writes a shed task's Error as "Shed(<reason>): <detail>"; every other error starts with its
# class: "JudgeTimeout: ...", "ValueError: ..." (possibly dotted: "pkg.mod.MyError: ...").
_SHED = re.compile(r"Shed\((\w+)\)")
_ERROR_CLASS = re.compile(r"(?:[A-Za-z_]\w*\.)*([A-Z]\w{0,63})\s*:")


def counter(column: str) -> Any:
    """A status counter of `RuleCounts`, stored in the `rule_status` column `column`."""
    return field(default=0, metadata={"column": column})


@dataclass
class RuleCounts:
    """One rule's counts. `scorer_errors` counts error rows of code scorers and judges (sheds excluded),
    `judge_errors` the judges' share of them; `shed_*` counts judge tasks shed, by reason.

    The fields made with `counter` are the status counters, declared here once: `COUNTERS`, the status
    rows and their `rule_status` columns, and the API's status answer all derive from them.
    """

    rule_version: int = 0
    traces_seen: int = counter("TracesSeen")
    filtered_out: int = counter("FilteredOut")
    not_targeted: int = counter("NotTargeted")
    sampled_out: int = counter("SampledOut")
    scored: int = counter("Scored")
    scorer_errors: int = counter("ScorerErrors")
    last_evaluated_ns: int = 0
    last_trace_ns: int = 0
    judge_errors: int = counter("JudgeErrors")
    shed_budget: int = counter("ShedBudget")
    shed_overload: int = counter("ShedOverload")
    shed_circuit_open: int = counter("ShedCircuitOpen")


# Status counter -> its `rule_status` column, in declaration order.
COUNTERS: dict[str, str] = {
    f.name: f.metadata["column"] for f in fields(RuleCounts) if "column" in f.metadata
}
# The reasons a judge task is shed, as the judge step writes them: one `shed_<reason>` counter each.
SHED_REASONS = tuple(name.removeprefix("shed_") for name in COUNTERS if name.startswith("shed_"))


def classify(row: ScoreRow) -> tuple[str, str]:
    """A score row's outcome and its detail: ("ok", ""), ("shed", reason) or ("error", error class)."""
    if not row.error:
        return "ok", ""
    shed = _SHED.match(row.error)
    if shed is not None:
        return "shed", shed.group(1)
    if row.scorer in JUDGE_SCORERS and row.metadata.get("shed"):
        return "shed", row.metadata["shed"]
    cls = _ERROR_CLASS.match(row.error)
    return "error", cls.group(1) if cls is not None else "other"


class RuleStats:
    """Thread-safe counters per rule id; `snapshot()` gives copies for the status writer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, RuleCounts] = {}
        self._dirty: set[str] = set()
        # Prometheus increments are batched: one `inc` per (labels) per `publish()`, not per decision.
        self._decisions: Counter[tuple[str, str]] = Counter()

    def seed(self, rule_id: str, counts: RuleCounts) -> None:
        with self._lock:
            self._counts[rule_id] = counts

    def record_tally(self, tally: Tally) -> None:
        """Count a batch's decisions (`dataflow.rules.engine.evaluate_batch`)."""
        now = time.time_ns()
        with self._lock:
            for rule, (filtered, not_targeted, sampled_out, scored) in zip(
                tally.rules, tally.counts, strict=True
            ):
                rid = rule.id
                c = self._counts.setdefault(rid, RuleCounts())
                c.rule_version = rule.spec.version
                c.traces_seen += filtered + not_targeted + sampled_out + scored
                c.filtered_out += filtered
                c.not_targeted += not_targeted
                c.sampled_out += sampled_out
                c.scored += scored
                c.last_evaluated_ns = now
                c.last_trace_ns = max(c.last_trace_ns, tally.latest_trace_ns)
                self._dirty.add(rid)
                name = rule.spec.name
                for outcome, n in zip(OUTCOMES, (filtered, not_targeted, sampled_out, scored), strict=True):
                    if n:
                        self._decisions[(name, outcome.value)] += n

    def record_rows(self, rows: Iterable[ScoreRow]) -> None:
        """Count score rows written to ClickHouse: the per-rule quality metrics and the status counts.

        Called once per successful insert, so a flush retried after an error counts its rows once.
        """
        tally = _RowTally()
        tally.add_many(rows)
        tally.publish()
        if not tally.status:
            return
        with self._lock:
            for rid, delta in tally.status.items():
                c = self._counts.setdefault(rid, RuleCounts())
                c.rule_version = c.rule_version or tally.versions[rid]
                for name, n in delta.items():
                    setattr(c, name, getattr(c, name) + n)
                self._dirty.add(rid)

    def publish(self) -> None:
        """Push the counts gathered since the last call to Prometheus."""
        with self._lock:
            decisions, self._decisions = self._decisions, Counter()
        for (rule, outcome), n in decisions.items():
            metrics.RULE_DECISIONS.labels(rule, outcome).inc(n)

    def take_dirty(self) -> dict[str, RuleCounts]:
        """Copies of the counts that changed since the last call."""
        with self._lock:
            out = {rid: RuleCounts(**vars(self._counts[rid])) for rid in self._dirty}
            self._dirty.clear()
        return out

    def mark_dirty(self, rule_ids: Iterable[str]) -> None:
        """Mark counts as changed again (their write failed): the next `take_dirty` returns them."""
        with self._lock:
            self._dirty.update(rule_ids)

    def get(self, rule_id: str) -> RuleCounts:
        with self._lock:
            return RuleCounts(**vars(self._counts.get(rule_id, RuleCounts())))


class _RowTally:
    """One batch of score rows summed per label set, so counters get one `inc` per series per batch."""

    def __init__(self) -> None:
        self.scores: Counter[tuple[str, str, str]] = Counter()
        self.verdicts: Counter[tuple[str, str, str]] = Counter()
        self.errors: Counter[tuple[str, str, str]] = Counter()
        self.shed: Counter[tuple[str, str, str]] = Counter()
        self.tokens: Counter[tuple[str, str, str]] = Counter()
        self.cost: dict[tuple[str, str], float] = {}
        self.values: list[tuple[str, str, float, int]] = []  # (rule, score, value, how many times)
        self.latencies: list[tuple[str, str, float]] = []
        # rule id -> status counter (scorer_errors, judge_errors, shed_<reason>) -> how many
        self.status: dict[str, Counter[str]] = {}
        self.versions: dict[str, int] = {}

    def add_many(self, rows: Iterable[ScoreRow]) -> None:
        """The common row (a code scorer's, no error) is only counted here, by (rule, score, value, verdict):
        a batch of thousands of boolean scores makes a few keys, not thousands of metric updates."""
        plain: Counter[tuple[str, str, float | None, bool | None]] = Counter()
        for row in rows:
            if (
                row.error
                or row.scorer in JUDGE_SCORERS
                or row.input_tokens
                or row.output_tokens
                or row.cost_usd
            ):
                self.add(row)
            else:
                plain[(row.rule_name, row.name, row.value, row.passed)] += 1
        for (rule, name, value, passed), n in plain.items():
            self.scores[(rule, name, "ok")] += n
            if value is not None:
                self.values.append((rule, name, value, n))
            if passed is not None:
                self.verdicts[(rule, name, "pass" if passed else "fail")] += n

    def add(self, row: ScoreRow) -> None:
        key = (row.rule_name, row.name)
        outcome, detail = classify(row)
        judge = row.scorer in JUDGE_SCORERS
        self.scores[(*key, outcome)] += 1
        if outcome == "ok":
            if row.value is not None:
                self.values.append((*key, row.value, 1))
            if row.passed is not None:
                self.verdicts[(*key, "pass" if row.passed else "fail")] += 1
        elif outcome == "error":
            self.errors[(*key, detail)] += 1
            delta = self._status(row)
            delta["scorer_errors"] += 1
            delta["judge_errors"] += int(judge)
        else:
            self.shed[(*key, detail)] += 1
            if detail in SHED_REASONS:
                self._status(row)[f"shed_{detail}"] += 1
        if judge and outcome != "shed" and row.latency_ms > 0:
            self.latencies.append((*key, row.latency_ms / 1000))
        if row.input_tokens:
            self.tokens[(*key, "input")] += row.input_tokens
        if row.output_tokens:
            self.tokens[(*key, "output")] += row.output_tokens
        if row.cost_usd:
            self.cost[key] = self.cost.get(key, 0.0) + row.cost_usd

    def _status(self, row: ScoreRow) -> Counter[str]:
        self.versions[row.rule_id] = row.rule_version
        return self.status.setdefault(row.rule_id, Counter())

    def publish(self) -> None:
        for counter, counts in (
            (metrics.RULE_SCORES, self.scores),
            (metrics.RULE_VERDICTS, self.verdicts),
            (metrics.RULE_SCORE_ERRORS, self.errors),
            (metrics.RULE_SHED, self.shed),
            (metrics.JUDGE_TOKENS, self.tokens),
        ):
            for labels, n in counts.items():
                counter.labels(*labels).inc(n)
        for (rule, scorer), usd in self.cost.items():
            metrics.JUDGE_COST.labels(rule, scorer).inc(usd)
        children: dict[tuple[str, str], Any] = {}
        for rule, scorer, value, times in self.values:
            child = children.get((rule, scorer))
            if child is None:
                child = children[(rule, scorer)] = metrics.RULE_SCORE_VALUES.labels(rule, scorer)
            for _ in range(times):
                child.observe(value)
        for rule, scorer, seconds in self.latencies:
            metrics.JUDGE_DURATION.labels(rule, scorer).observe(seconds)
