"""The dashboards' ClickHouse-plugin panels (issue 14.6): Grafana cannot run here, so each panel's SQL runs against
chDB with rows in range, its macros expanded as the grafana-clickhouse-datasource plugin expands them, and the
result is checked for what the panel maps: rows, the time and value columns of a time series, the columns a
table's overrides name, and the numbers for the rows this test wrote.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.clickhouse.client import ClickHouse

DASHBOARDS = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "dashboards"
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
SPANS = [("t1", "q", "a"), ("t1", "", ""), ("t2", "q", "")]  # (trace, input, output)
SCORES = [(1.0, True, ""), (0.0, False, ""), (None, None, "Shed(budget)"), (None, None, "judge timed out")]


def clickhouse_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                if (target.get("datasource") or panel["datasource"])["type"] == CLICKHOUSE_PLUGIN:
                    found.append((f"{path.name}: {panel['title']}", panel, target))
    return found


def expand_macros(sql: str, start: float, end: float) -> str:
    """The plugin's macros over the range [start, end] (Unix seconds), as its query editor documents them."""
    lo, hi = int(start), int(end)
    lo_ms, hi_ms = int(start * 1000), int(end * 1000)
    sql = re.sub(
        r"\$__timeFilter_ms\((\w+)\)",
        rf"\1 >= fromUnixTimestamp64Milli({lo_ms}) AND \1 <= fromUnixTimestamp64Milli({hi_ms})",
        sql,
    )
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({lo}) AND \1 <= toDateTime({hi})", sql)
    sql = re.sub(r"\$__dateFilter\((\w+)\)", rf"\1 >= toDate({lo}) AND \1 <= toDate({hi})", sql)
    sql = sql.replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({lo_ms})").replace(
        "$__toTime_ms", f"fromUnixTimestamp64Milli({hi_ms})"
    )
    sql = sql.replace("$__fromTime", f"toDateTime({lo})").replace("$__toTime", f"toDateTime({hi})")
    sql = sql.replace("$__interval_s", str(max(1, (hi - lo) // 1000)))
    assert "$" not in sql, f"a macro or variable this test does not expand: {sql}"
    return sql


def mapped_columns(panel: dict[str, Any]) -> set[str]:
    """Columns a panel names: field overrides matched by name, a table's sort, organize transformations."""
    names = {
        o["matcher"]["options"]
        for o in panel.get("fieldConfig", {}).get("overrides", [])
        if o["matcher"]["id"] == "byName"
    }
    names |= {s["displayName"] for s in panel.get("options", {}).get("sortBy", [])}
    for t in panel.get("transformations", []):
        names |= set(t.get("options", {}).get("indexByName", {}))
    return names


@pytest.fixture(scope="module")
def project(chdb_client: ClickHouse) -> str:
    name = f"grafana-{uuid.uuid4().hex[:8]}"
    for trace, inp, out in SPANS:
        chdb_client.command(
            "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, Project, Input, Output, "
            "IngestedAt) VALUES (now64(9), {t:String}, {s:String}, 'llm.call', 'svc', {p:String}, {i:String}, "
            "{o:String}, now64(9))",
            parameters={"t": f"{name}-{trace}", "s": uuid.uuid4().hex[:16], "p": name, "i": inp, "o": out},
        )
    for i, (value, passed, error) in enumerate(SCORES):
        chdb_client.command(
            "INSERT INTO scores (ScoreId, Project, TraceId, Name, Value, Passed, Error, Source, RuleName, CostUsd, "
            "TraceStart, Timestamp) VALUES ({id:String}, {p:String}, {t:String}, 'helpfulness', {v:Nullable(Float64)}, "
            "{ok:Nullable(Bool)}, {e:String}, 'EVAL', 'helpful', 0.25, now64(9), now64(6))",
            parameters={
                "id": f"{name}-{i}",
                "p": name,
                "t": f"{name}-t1",
                "v": value,
                "ok": passed,
                "e": error,
            },
        )
    return name


def run_panel(ch: ClickHouse, target: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The panel's columns with their ClickHouse types (as the plugin reads them), and its rows."""
    now = time.time()
    sql = expand_macros(target["rawSql"], now - 3600, now + 60)
    types = {str(r[0]): str(r[1]) for r in ch.query_rows(f"DESCRIBE ({sql})")}
    rows = [dict(zip(types, row, strict=True)) for row in ch.query_rows(sql)]
    return types, rows


def test_every_clickhouse_panel_is_checked() -> None:
    assert {where.split(": ", 1)[1] for where, _, _ in clickhouse_targets()} == {
        "Scores per rule and scorer in range",
        "Spans per minute by project",
        "Projects in range",
    }


@pytest.mark.parametrize(
    ("where", "panel", "target"), clickhouse_targets(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_panel_sql_returns_what_the_panel_maps(
    chdb_client: ClickHouse, project: str, where: str, panel: dict[str, Any], target: dict[str, Any]
) -> None:
    types, result = run_panel(chdb_client, target)
    assert result, where
    assert mapped_columns(panel) <= set(types), where
    if target["queryType"] == "timeseries" or target.get("format") == 0:
        assert panel["type"] == "timeseries"
        times = [name for name, t in types.items() if t.startswith(("DateTime", "Date"))]
        assert times == ["time"], f"{where}: a time series needs one time column named time, got {types}"
        assert any(re.match(r"U?(Int|Float)", t) for t in types.values()), (
            f"{where}: no value column in {types}"
        )
        stamps = [r["time"] for r in result]
        assert stamps == sorted(stamps), f"{where}: a time series must be ordered by time"
    else:
        assert panel["type"] == "table", where
    rows = [r for r in result if r.get("Project") == project]
    assert rows, f"{where}: the rows this test wrote are not in range"
    EXPECTED[panel["title"]](rows)


def _spans_per_minute(rows: list[dict[str, Any]]) -> None:
    assert sum(r["spans"] for r in rows) == len(SPANS)


def _projects(rows: list[dict[str, Any]]) -> None:
    (row,) = rows
    assert (row["spans"], row["traces"], row["spans_with_io"]) == (3, 2, 2)
    assert row["last_ingested"] is not None


def _scores(rows: list[dict[str, Any]]) -> None:
    (row,) = rows
    assert (row["RuleName"], row["scorer"], row["rows"], row["ok"], row["shed"], row["errors"]) == (
        "helpful", "helpfulness", 4, 2, 1, 1
    )  # fmt: skip
    assert (row["mean_value"], row["pass_rate"], row["cost_usd"]) == (0.5, 0.5, 1.0)


EXPECTED = {
    "Spans per minute by project": _spans_per_minute,
    "Projects in range": _projects,
    "Scores per rule and scorer in range": _scores,
}


def test_macro_expansion() -> None:
    sql = expand_macros("WHERE $__timeFilter(T) AND $__timeFilter_ms(U) AND x > $__fromTime", 10.5, 20.25)
    assert sql == (
        "WHERE T >= toDateTime(10) AND T <= toDateTime(20) AND U >= fromUnixTimestamp64Milli(10500) "
        "AND U <= fromUnixTimestamp64Milli(20250) AND x > toDateTime(10)"
    )
    with pytest.raises(AssertionError, match="does not expand"):
        expand_macros("WHERE $__timeInterval(T)", 0, 1)
