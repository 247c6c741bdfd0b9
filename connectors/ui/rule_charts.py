"""The rule page's charts: each scorer's mean and pass rate per hour over 24 h or 7 d, with the previous period
beside it (drawn dashed), and the distribution of its values. Two bounded queries over `scores FINAL` (one rule,
traces started since the previous period began): `ui_rule_hourly` and `ui_rule_histogram`. The series go to
the page as JSON; `static/rules.js` draws them with uPlot.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.migrate import SQL_DIR

PERIODS = {"24h": 24 * 3600, "7d": 7 * 24 * 3600}
HOUR = 3600


def _query(name: str) -> str:
    return (SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 6)


def rule_charts(ch: ClickHouse, rule_id: str, period: str, now_s: float | None = None) -> dict[str, Any]:
    """{"period", "x": hour starts (Unix s) of the shown period, "scorers": [{"name", "mean", "mean_prev",
    "pass", "pass_prev", "n", "hist": {"x", "y"}}]}: the previous period's values aligned on the shown hours."""
    span = PERIODS.get(period, PERIODS["24h"])
    end = int(now_s if now_s is not None else time.time()) // HOUR * HOUR
    first = end - span + HOUR
    since_ns = (first - span) * 10**9
    params = {"rule_id": rule_id, "since_ns": since_ns}
    hours = list(range(first, end + HOUR, HOUR))
    by_name: dict[str, dict[int, tuple[float | None, float | None, int]]] = defaultdict(dict)
    for name, hour, mean, pass_rate, n in ch.query_rows(_query("ui_rule_hourly"), params):
        by_name[str(name)][int(hour)] = (_num(mean), _num(pass_rate), int(n))
    hist = {
        str(name): {"x": [_num((lo + hi) / 2) for lo, hi, _ in bins], "y": [_num(h) for _, _, h in bins]}
        for name, bins in ch.query_rows(_query("ui_rule_histogram"), {**params, "since_ns": first * 10**9})
    }
    scorers = []
    for name in sorted(set(by_name) | set(hist)):
        cells = by_name.get(name, {})

        def series(index: int, shift: int, cells: dict[int, tuple[Any, ...]] = cells) -> list[Any]:
            return [cells.get(h - shift, (None, None, 0))[index] for h in hours]

        scorers.append({
            "name": name, "mean": series(0, 0), "mean_prev": series(0, span), "pass": series(1, 0),
            "pass_prev": series(1, span), "n": sum(series(2, 0)), "hist": hist.get(name, {"x": [], "y": []}),
        })  # fmt: skip
    return {"period": period if period in PERIODS else "24h", "x": hours, "scorers": scorers}
