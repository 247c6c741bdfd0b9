"""Per-rule judge budgets split by the number of live processes (issue 14): each admits its share."""

from __future__ import annotations

from typing import Any

from dataflow.scoring.judge_step import RuleBudgets


class _Job:
    def __init__(self, calls: float = 0.0, usd: float = 0.0) -> None:
        self.rule_id = "r"
        self.max_calls_per_minute = calls
        self.max_usd_per_hour = usd


def admitted(budgets: RuleBudgets, job: Any, n: int = 20) -> int:
    return sum(budgets.admit(job) for _ in range(n))


def test_calls_per_minute_are_split_by_live_processes_rounded_down() -> None:
    assert admitted(RuleBudgets(), _Job(calls=7)) == 7
    assert admitted(RuleBudgets(lambda: 2), _Job(calls=7)) == 3
    assert admitted(RuleBudgets(lambda: 3), _Job(calls=7)) == 2
    assert admitted(RuleBudgets(lambda: 10), _Job(calls=7)) == 1  # never nothing: at least one call each


def test_spend_per_hour_is_split_and_the_count_is_read_at_each_call() -> None:
    live = [1]
    budgets = RuleBudgets(lambda: live[0])
    job = _Job(usd=1.0)
    assert budgets.admit(job)
    budgets.spent("r", 0.6)
    assert budgets.admit(job)  # 0.6 < 1.0
    live[0] = 2
    assert not budgets.admit(job)  # 0.6 >= 1.0 / 2
