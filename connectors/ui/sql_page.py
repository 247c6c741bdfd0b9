"""The web UI's SQL page (issue 12, item 7) at `/sql`: a read-only query box over the same read-only clients as
`POST /api/v1/sql` (`ReadOnlyClient.query`: ClickHouse's readonly setting, row, time and memory limits, at most
`api.sql_max_concurrent` queries at once), after the same bounded wait for the scores already acknowledged to be
stored (so a score just posted is seen), its results table (a cut shown as such), the columns of the tables a
user queries listed beside it (one query of `system.columns`), and example queries as links that fill the box.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from connectors.api.blocking import run
from connectors.api.sql_query import query_outcome
from connectors.clickhouse.client import ClickHouse, ReadOnlyClient
from connectors.ui.pages import TEMPLATES
from dataflow import metrics
from dataflow.errors import QueryError

TABLES = ("otel_traces", "scores", "rules", "jobs")
MAX_QUERY_CHARS = 100_000
COLUMNS_SQL = """
SELECT table, name, type FROM system.columns
WHERE database = currentDatabase() AND table IN {tables:Array(String)}
ORDER BY indexOf({tables:Array(String)}, table), position
"""
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Pass rate by rule per day",
        "SELECT toDate(TraceStart) AS day, RuleName, Name AS scorer,\n"
        "       count() AS scores, round(avg(Passed), 3) AS pass_rate\n"
        "FROM scores FINAL\nWHERE Source = 'EVAL' AND Passed IS NOT NULL AND TraceStart >= now() - INTERVAL 30 DAY\n"
        "GROUP BY day, RuleName, scorer\nORDER BY day DESC, RuleName, scorer\nLIMIT 500",
    ),
    (
        "Slowest traces",
        "SELECT TraceId, any(Project) AS project, min(Timestamp) AS start,\n"
        "       round((max(toUnixTimestamp64Nano(Timestamp) + Duration) - min(toUnixTimestamp64Nano(Timestamp)))"
        " / 1e6, 1) AS duration_ms,\n       count() AS spans\n"
        "FROM otel_traces\nWHERE Timestamp >= now() - INTERVAL 1 DAY\n"
        "GROUP BY TraceId\nORDER BY duration_ms DESC\nLIMIT 20",
    ),
    (
        "Judge cost per model",
        "SELECT Model, count() AS calls, sum(InputTokens) AS input_tokens, sum(OutputTokens) AS output_tokens,\n"
        "       round(sum(CostUsd), 4) AS cost_usd, round(avg(LatencyMs)) AS mean_latency_ms\n"
        "FROM scores FINAL\nWHERE Model != ''\nGROUP BY Model\nORDER BY cost_usd DESC",
    ),
)


def cell(value: Any) -> str:
    """A result value as the table shows it."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def run_query(readonly: ReadOnlyClient, sql: str) -> dict[str, Any]:
    """The query's columns, types, rows (as text), cut flag and time; or its error, as POST /api/v1/sql would
    answer it (the readonly client's message). Blocking."""
    if len(sql) > MAX_QUERY_CHARS:
        return {"error": f"the query is longer than {MAX_QUERY_CHARS:,} characters"}
    started = time.perf_counter()
    try:
        columns, types, rows, truncated = readonly.query(sql)
    except QueryError as exc:
        metrics.API_SQL_QUERIES.labels(query_outcome(exc)).inc()
        return {"error": str(exc)}
    metrics.API_SQL_QUERIES.labels("ok").inc()
    return {
        "columns": list(zip(columns, types, strict=True)), "rows": [[cell(v) for v in r] for r in rows],
        "truncated": truncated, "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }  # fmt: skip


def table_columns(reader: ClickHouse) -> dict[str, list[tuple[str, str]]]:
    """Each queried table's (column, type) pairs, in table order. Blocking: one query."""
    out: dict[str, list[tuple[str, str]]] = {t: [] for t in TABLES}
    for table, name, type_ in reader.query_rows(COLUMNS_SQL, {"tables": list(TABLES)}):
        out[str(table)].append((str(name), str(type_)))
    return out


def build_sql_router(
    reader: ClickHouse, readonly: ReadOnlyClient, caught_up: Callable[[], object]
) -> APIRouter:
    """The page; `caught_up` (the scores access's) waits, bounded, until every acknowledged score is stored."""
    router = APIRouter(include_in_schema=False)
    examples = [(label, "/sql?" + urlencode({"query": sql}), sql) for label, sql in EXAMPLES]

    @router.get("/sql", response_class=HTMLResponse)
    async def sql_page(request: Request) -> HTMLResponse:
        query = request.query_params.get("query", "")
        result = None
        if query.strip():
            # as POST /api/v1/sql: a query of `scores` sees every score already acknowledged
            await run(caught_up)
            result = await run(run_query, readonly, query)
        columns = await run(table_columns, reader)
        context = {
            "active": "/sql",
            "query": query,
            "result": result,
            "tables": columns,
            "examples": examples,
        }
        return TEMPLATES.TemplateResponse(request, "sql.html", context, status_code=200)

    return router
