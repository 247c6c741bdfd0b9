"""The web UI (issue 12): server-rendered pages on the API port, at `/` (the API stays under `/api/v1`).

Pages are Jinja2 templates (`connectors/ui/templates/`) filled from the same stores and queries as the API;
a small vendored htmx swaps parts of a page, and uPlot draws charts (`static/vendor/VENDORED.md`: versions and
licences). Nothing is fetched from the internet and nothing is built with node. Every list is paged and runs one
bounded ClickHouse query (a time range and a LIMIT; the next page starts after a cursor). Times are written as
`<time datetime=...>` in UTC and shown in the browser's time zone by `static/app.js`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from connectors.api.blocking import run
from connectors.api.errors import ApiError
from connectors.api.params import iso_ns, parse_time
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.migrate import SQL_DIR
from connectors.clickhouse.scores_store import decode_cursor, encode_cursor

UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"
TEMPLATES = Jinja2Templates(directory=UI_DIR / "templates")
PAGE_SIZE = 50
DEFAULT_DAYS = 7
SCORE_OPS = ("=", "!=", "<", "<=", ">", ">=", "passed", "failed")


def like_pattern(text: str) -> str:
    """`text` as a case-insensitive LIKE pattern of `lowerUTF8(column)`: lower-cased, wildcards escaped, between
    %: `50%_off` becomes `%50\\%\\_off%`."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _query(name: str) -> str:
    return (SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def _iso(ns: int) -> str:
    return iso_ns(ns)


TEMPLATES.env.filters["iso"] = _iso


@dataclass(frozen=True)
class TraceFilters:
    """The traces page's filters, as its form sends them (every field optional)."""

    project: str = ""
    since: str = ""
    until: str = ""
    name: str = ""
    text: str = ""
    errors: bool = False
    session_id: str = ""
    score_name: str = ""
    score_op: str = ""
    score_value: str = ""

    @classmethod
    def of(cls, request: Request) -> TraceFilters:
        q = request.query_params
        return cls(
            project=q.get("project", ""), since=q.get("since", ""), until=q.get("until", ""),
            name=q.get("name", ""), text=q.get("text", ""), errors=q.get("errors", "") in ("1", "on", "true"),
            session_id=q.get("session_id", ""), score_name=q.get("score_name", ""),
            score_op=q.get("score_op", ""), score_value=q.get("score_value", ""),
        )  # fmt: skip

    def since_ns(self) -> int:
        default = dt.datetime.now(dt.UTC) - dt.timedelta(days=DEFAULT_DAYS)
        return parse_time(self.since, "since") if self.since else int(default.timestamp()) * 10**9


def page_cursor(cursor: str) -> tuple[int, str]:
    """(start_ns, trace_id) of a traces-page cursor: the scores API's cursor format (`scores_store.encode_cursor`)."""
    if not cursor:
        return 0, ""
    try:
        return decode_cursor(cursor)
    except ValueError as exc:
        raise ApiError(400, "not a cursor this page made", "cursor") from exc


def trace_page(ch: ClickHouse, f: TraceFilters, cursor: str, limit: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of traces with their score chips, and the cursor of the next page (None: no more)."""
    since_ns = f.since_ns()
    score_ids: list[str] = []
    use_scores = bool(f.score_name and f.score_op)
    if use_scores:
        if f.score_op not in SCORE_OPS:
            raise ApiError(400, f"score comparison must be one of {' '.join(SCORE_OPS)}", "score_op")
        try:
            value = float(f.score_value) if f.score_op not in ("passed", "failed") else 0.0
        except ValueError as exc:
            raise ApiError(400, "score value must be a number", "score_value") from exc
        params = {
            "name": f.score_name,
            "op": f.score_op,
            "value": value,
            "since_ns": since_ns,
            "project": f.project,
        }
        score_ids = [r[0] for r in ch.query_rows(_query("ui_score_filter"), params)]
    cursor_ns, cursor_id = page_cursor(cursor)
    params = {
        "project": f.project, "since_ns": since_ns, "until_ns": parse_time(f.until, "until") if f.until else 0,
        "name": f.name, "text_like": like_pattern(f.text), "errors": int(f.errors), "session_id": f.session_id,
        "use_scores": int(use_scores), "score_trace_ids": score_ids, "cursor_ns": cursor_ns, "cursor_id": cursor_id,
        "limit": limit + 1,
    }  # fmt: skip
    sql = _query("ui_traces").replace("/*TEXT*/", _query("ui_traces_text") if f.text else "")
    ids = [(str(tid), int(start)) for tid, start in ch.query_rows(sql, params)]
    more = len(ids) > limit
    ids = ids[:limit]
    rows: list[dict[str, Any]] = []
    if ids:
        found = ch.query_arrow(
            _query("ui_traces_rows"), {"trace_ids": [t for t, _ in ids], "since_ns": since_ns}
        ).to_pylist()
        by_id = {r["trace_id"]: r for r in found}
        rows = [by_id[t] for t, _ in ids if t in by_id]
    chips: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if rows:
        for tid, span_id, name, value, string_value, passed, error, source in ch.query_rows(
            _query("ui_trace_scores"), {"trace_ids": [r["trace_id"] for r in rows]}
        ):
            chips[tid].append(
                {"span_id": span_id, "name": name, "value": value, "label": string_value, "passed": passed,
                 "error": error, "source": source}
            )  # fmt: skip
    last = ids[-1] if ids else None
    return {
        "traces": [{**r, "scores": chips.get(r["trace_id"], [])} for r in rows],
        "next_cursor": encode_cursor(last[1], last[0]) if more and last else None,
    }


def build_ui_router(reader: ClickHouse) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def home() -> RedirectResponse:
        return RedirectResponse("/traces", status_code=303)

    @router.get("/traces", response_class=HTMLResponse)
    async def traces(request: Request) -> HTMLResponse:
        f = TraceFilters.of(request)
        cursor = request.query_params.get("cursor", "")
        error = ""
        try:
            page = await run(trace_page, reader, f, cursor)
        except ApiError as exc:
            page, error = {"traces": [], "next_cursor": None}, exc.message
        following = page["next_cursor"]
        after = request.url.include_query_params(cursor=following) if following else None
        next_url = f"{after.path}?{after.query}" if after is not None else None
        context = {"active": "/traces", "f": f, "page": page, "error": error, "score_ops": SCORE_OPS,
                   "next_url": next_url}  # fmt: skip
        return TEMPLATES.TemplateResponse(request, "traces.html", context)

    return router
