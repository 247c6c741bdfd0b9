"""The web UI's trace view (issue 12, item 3) at `/traces/{trace_id}`, and its Add annotation form.

The trace is read as `GET /api/v1/traces/{trace_id}` reads it (`connectors/api/trace_doc.py`: the spans and the
scores store's page of the trace's scores) and shown as a waterfall (`trace_render.py`); a span's input, output,
attributes, resource, events and scores open under the waterfall on click or Enter (`static/trace.js`). An
annotation is a score with source ANNOTATION stored through `store_scores`, the path of `POST /api/v1/scores`.
The SQL page (`sql_page.py`) is included here, so `connectors/api/app.py` registers the two with one line.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from connectors.api.blocking import run
from connectors.api.errors import ApiError
from connectors.api.scores import ConfigCheck, store_scores
from connectors.api.trace_doc import load_trace
from connectors.clickhouse.client import ClickHouse, ReadOnlyClient
from connectors.clickhouse.scores_store import ScoreAccess
from connectors.ui.forms import posted_form
from connectors.ui.pages import TEMPLATES
from connectors.ui.sql_page import build_sql_router
from connectors.ui.trace_render import trace_sql, waterfall

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
MAX_SPANS = 2000  # spans shown (with their details) of a trace; the rest are a SQL query away


def annotation_value(text: str) -> float | bool | str:
    """A form's value as a score takes it: a number, true/false (BOOLEAN), or a label (CATEGORICAL)."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def annotation_doc(trace_id: str, form: dict[str, str]) -> dict[str, Any]:
    """The score object (as POST /api/v1/scores takes it) of the Add annotation form."""
    doc: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "trace_id": trace_id,
        "comment": form.get("comment", ""),
        "source": "ANNOTATION",
    }
    if form.get("value", "").strip():
        doc["value"] = annotation_value(form["value"])
    span_id = form.get("span_id", "")
    if span_id:
        if _SPAN_ID.fullmatch(span_id) is None:
            raise ApiError(400, "span_id must be 16 hex digits", "span_id")
        doc["observation_id"] = span_id
    return doc


def build_trace_ui_router(
    reader: ClickHouse, readonly: ReadOnlyClient, scores: ScoreAccess, check_configs: ConfigCheck
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def page(
        request: Request, trace_id: str, form: dict[str, str], error: str, status: int
    ) -> Response:
        tid = trace_id.lower()
        doc = await run(load_trace, reader, scores, tid) if _TRACE_ID.fullmatch(tid) else None
        if doc is None:
            missing = {"active": "/traces", "trace_id": trace_id}
            return TEMPLATES.TemplateResponse(request, "trace_missing.html", missing, status_code=404)
        rows, total_ms = waterfall(doc)
        shown = rows[:MAX_SPANS]
        context: dict[str, Any] = {
            "active": "/traces", "doc": doc, "rows": shown, "hidden_spans": len(rows) - len(shown),
            "total_ms": total_ms, "form": form, "error": error,
            "trace_scores": [s for s in doc["scores"] if not s["observation_id"]],
            "sql_url": "/sql?" + urlencode({"query": trace_sql(tid)}),
            "added": request.query_params.get("added", ""),
        }  # fmt: skip
        return TEMPLATES.TemplateResponse(request, "trace.html", context, status_code=status)

    @router.get("/traces/{trace_id}", response_class=HTMLResponse)
    async def trace(request: Request, trace_id: str) -> Response:
        return await page(request, trace_id, {}, "", 200)

    @router.post("/traces/{trace_id}/annotations", response_class=HTMLResponse)
    async def annotate(request: Request, trace_id: str) -> Response:
        tid = trace_id.lower()
        form: dict[str, str] = {}
        try:
            form = await posted_form(request)
            if _TRACE_ID.fullmatch(tid) is None:
                raise ApiError(400, "trace_id must be 32 hex characters", "trace_id")
            doc = annotation_doc(tid, form)
            ids, _ = await store_scores([doc], scores, check_configs, single=True)
        except ApiError as exc:
            return await page(request, tid, form, exc.message, exc.status_code)
        anchor = f"span-{doc['observation_id']}" if "observation_id" in doc else "scores"
        return RedirectResponse(f"/traces/{tid}?{urlencode({'added': ids[0]})}#{anchor}", status_code=303)

    router.include_router(build_sql_router(reader, readonly, scores.caught_up))
    return router
