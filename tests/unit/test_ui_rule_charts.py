"""The rule page's chart series: hours of the shown period, the previous period aligned on them, histograms."""

from __future__ import annotations

from typing import Any

from connectors.ui.rule_charts import HOUR, rule_charts

NOW = 1_800_000_000 // HOUR * HOUR + 1234  # some time into an hour


class FakeClickHouse:
    """Answers the two chart queries with fixed rows, and keeps their parameters."""

    def __init__(self, hourly: list[tuple[Any, ...]], hist: list[tuple[Any, ...]]) -> None:
        self.hourly, self.hist = hourly, hist
        self.params: list[dict[str, Any]] = []

    def query_rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.params.append(params)
        return self.hist if "histogram" in sql else self.hourly


def test_the_previous_period_is_aligned_on_the_shown_hours() -> None:
    end = NOW // HOUR * HOUR
    day = 24 * HOUR
    ch = FakeClickHouse(
        hourly=[("paris", end, 1.0, 1.0, 3), ("paris", end - day, 0.5, float("nan"), 2),
                ("short", end - 3 * HOUR, 0.25, 0.0, 1)],
        hist=[("paris", [(0.0, 0.5, 2.0), (0.5, 1.0, 3.0)])],
    )  # fmt: skip
    doc = rule_charts(ch, "r1", "24h", now_s=NOW)  # type: ignore[arg-type]
    assert doc["period"] == "24h" and len(doc["x"]) == 24 and doc["x"][-1] == end
    assert [p["since_ns"] for p in ch.params] == [(end - 2 * day + HOUR) * 10**9, (end - day + HOUR) * 10**9]
    paris, short = doc["scorers"]
    assert paris["mean"][-1] == 1.0 and paris["mean_prev"][-1] == 0.5 and paris["pass_prev"][-1] is None
    assert paris["n"] == 3 and paris["hist"] == {"x": [0.25, 0.75], "y": [2.0, 3.0]}
    assert short["mean"][-4] == 0.25 and short["pass"][-4] == 0.0 and short["hist"] == {"x": [], "y": []}
    assert all(v is None for v in short["mean_prev"])


def test_an_unknown_period_is_24_hours() -> None:
    doc = rule_charts(FakeClickHouse([], []), "r1", "1y", now_s=NOW)  # type: ignore[arg-type]
    assert doc == {"period": "24h", "x": doc["x"], "scorers": []} and len(doc["x"]) == 24
