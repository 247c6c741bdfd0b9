"""The HTTP API: seed-compatible span ingest, trace reads, scores, read-only SQL, health and metrics.

OpenAPI docs are served at `/docs` (and the schema at `/openapi.json`). Every JSON route declares its answer
(`connectors/api/models.py`); every error has the one shape of `connectors/api/errors.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import ipaddress
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from connectors.api.access import api_deny, api_scope, limited_may, projects_of, require_project, visible
from connectors.api.blocking import run
from connectors.api.compat import build_compat_router
from connectors.api.connections import build_connections_router
from connectors.api.errors import ApiError, error_responses, install_error_handlers
from connectors.api.jobs import JobsDeps, build_jobs_router, job_view
from connectors.api.keys import AuthDeps, build_keys_router
from connectors.api.models import IngestResponse, SqlRequest, SqlResponse, TraceList, TraceView
from connectors.api.params import iso_ns, parse_time
from connectors.api.rules import StatusExtras, build_rules_router
from connectors.api.score_configs import build_score_configs_router, config_checker
from connectors.api.scores import build_scores_router
from connectors.api.sql_query import sql_answer
from connectors.api.trace_doc import load_trace
from connectors.api.trace_eval_rules import build_trace_eval_rules_router
from connectors.auth.middleware import AuthMiddleware
from connectors.auth.sql_scope import SqlRefused, confine
from connectors.clickhouse.client import ClickHouse, ReadOnlyClient
from connectors.clickhouse.connections_store import ConnectionStore
from connectors.clickhouse.migrate import SQL_DIR
from connectors.clickhouse.replay import SpanFetcher
from connectors.clickhouse.rules_store import RuleStore
from connectors.clickhouse.score_configs_store import ScoreConfigStore
from connectors.clickhouse.scores_store import ScoreAccess
from connectors.otlp.http import JSON, handle_export
from connectors.otlp.ingest import Encoding, ExportResult, Ingestor
from connectors.ui.login import build_login_router
from connectors.ui.pages import STATIC_DIR, build_ui_router
from connectors.ui.rules_pages import RulesUi, build_rules_ui_router
from connectors.ui.trace_view import build_trace_ui_router
from dataflow import metrics
from dataflow.config import ApiConfig, CompatConfig
from dataflow.health import HEALTH
from dataflow.model import CloseReason, Trace
from dataflow.rules.model import RuleSpec, compile_rule
from dataflow.scoring.preview import preview

_HEX = frozenset("0123456789abcdef")


def _query(name: str) -> str:
    return (SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(type(value).__name__)


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(doc, default=_json_default, option=orjson.OPT_NON_STR_KEYS), status, media_type=JSON
    )


@dataclass
class ApiState:
    """What the API needs from the running service."""

    ingestor: Ingestor
    reader: ClickHouse
    readonly: ReadOnlyClient
    config: ApiConfig
    is_ready: Callable[[], bool]
    rules: RuleStore
    on_rules_change: Callable[[], object]
    connections: ConnectionStore
    on_connections_change: Callable[[], object]
    scores: ScoreAccess
    score_configs: ScoreConfigStore
    compat: CompatConfig = field(default_factory=CompatConfig)
    jobs: JobsDeps | None = None
    auth: AuthDeps | None = None


def _ingest_success(encoding: Encoding, result: ExportResult) -> Response:
    doc: dict[str, Any] = {
        "acceptedSpans": result.accepted,
        "rejectedSpans": result.rejected,
        "traces": result.traces,
    }
    if result.rejected:
        doc["partialSuccess"] = {"rejectedSpans": str(result.rejected), "errorMessage": result.message}
    return json_response(doc)


def build_api_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="tracejudge API",
        version="0.1.0",
        description="Span ingest (OTLP/HTTP, seed-compatible answer), trace reads, scores, read-only SQL, health.",
    )

    @app.post(
        "/api/v1/traces",
        response_model=IngestResponse,
        summary="Ingest an OTLP ExportTraceServiceRequest (protobuf or JSON, gzip/deflate)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def ingest(request: Request) -> Response:
        return await handle_export(
            request, state.ingestor, "api", _ingest_success, allowed=projects_of(request)
        )

    @app.get(
        "/api/v1/traces/{trace_id}",
        response_model=TraceView,
        responses=error_responses(400, 404, 422),
        summary="One trace's spans with project, input, output, attributes",
    )
    async def get_trace(request: Request, trace_id: str) -> Response:
        tid = trace_id.lower()
        if len(tid) != 32 or not _HEX.issuperset(tid):
            raise ApiError(400, "trace_id must be 32 hex characters", "trace_id")
        doc = await run(load_trace, state.reader, state.scores, tid)
        if doc is None or not visible(request, doc["project"]):
            raise ApiError(404, f"trace {tid} not found")
        return json_response(doc)

    @app.get(
        "/api/v1/traces",
        response_model=TraceList,
        responses=error_responses(400, 422),
        summary="Recent traces, newest first",
    )
    async def list_traces(
        request: Request,
        project: Annotated[str, Query(description="Only this project; empty for all.")] = "",
        since: Annotated[
            str | None, Query(description="ISO 8601 time or Unix seconds; traces starting at or after.")
        ] = None,
        limit: Annotated[int | None, Query(ge=1, description="Most traces to return.")] = None,
    ) -> Response:
        lim = min(limit or state.config.traces_default_limit, state.config.traces_max_limit)
        if project:
            require_project(request, project)
        allowed = sorted(projects_of(request) or ())
        params = {"project": project, "projects": allowed, "since_ns": parse_time(since), "limit": lim}
        table = await run(lambda: state.reader.query_arrow(_query("traces_list"), params))
        traces = [
            {
                "trace_id": r["trace_id"],
                "project": r["project"],
                "start_time": iso_ns(int(r["start_ns"])),
                "duration_ms": int(r["duration_ns"]) / 1e6,
                "spans": int(r["spans"]),
                "root_name": r["root_name"],
                "input": r["root_input"],
                "output": r["root_output"],
                "error_spans": int(r["error_spans"]),
            }
            for r in table.to_pylist()
        ]
        return json_response({"traces": traces, "count": len(traces)})

    @app.post(
        "/api/v1/sql",
        response_model=SqlResponse,
        responses=error_responses(400, 422, 429),
        summary="Run one read-only query",
    )
    async def sql(request: Request, body: SqlRequest) -> Response:
        query, allowed = body.query, projects_of(request)
        try:
            query = confine(query, allowed) if allowed is not None else query
        except SqlRefused as exc:
            raise ApiError(403, str(exc), "query", code="forbidden") from exc
        started = time.perf_counter()
        await run(state.scores.caught_up)  # a query of `scores` sees every score already acknowledged
        columns, types, rows, truncated = await run(sql_answer, state.readonly, query)
        return json_response(
            {
                "columns": columns,
                "types": types,
                "data": [list(r) for r in rows],
                "rows": len(rows),
                "truncated": truncated,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )

    @app.get("/healthz", summary="Liveness", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/readyz", summary="Ready to accept spans")
    async def readyz() -> Response:
        """200 while spans are accepted, 503 when not (starting, stopping, the log full or failing); the body
        names every current problem (dataflow.health), e.g. ClickHouse unavailable while the log buffers."""
        problems = HEALTH.problems()
        ready = state.is_ready() and not any(p.blocking for p in problems)
        lines = ["ready" if ready else "not ready", *(p.message for p in problems)]
        return PlainTextResponse("\n".join(lines), status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prom() -> Response:
        await asyncio.to_thread(metrics.before_scrape)  # waits for the ingest workers' counts: off the loop
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    def test_rule(spec: RuleSpec, window: dict[str, Any]) -> dict[str, Any]:
        try:
            limit = int(window.get("limit", 50))
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "window.limit must be a number", "window.limit") from exc
        if not 1 <= limit <= 1000:
            raise ApiError(400, "window.limit must be 1..1000", "window.limit")
        ids = window.get("trace_ids")
        if ids is None:
            params = {"project": spec.project, "since_ns": parse_time(window.get("since")), "limit": limit}
            ids = [r[0] for r in state.reader.query_rows(_query("recent_trace_ids"), params)]
        fetched = SpanFetcher(state.reader).fetch([str(i).lower() for i in ids][:limit])
        traces = [
            Trace(tid, tuple(spans), CloseReason.REPLAY, 0, 0, 0)
            for tid, spans in sorted(fetched.items(), key=lambda kv: -max(s.start_ns for s in kv[1]))
        ]
        return preview(compile_rule(spec), traces)

    def status_extras(rule_id: str) -> StatusExtras:
        found = state.reader.query_rows(_query("rule_last_error"), {"rule_id": rule_id})
        error, at_us = (str(found[0][0]), int(found[0][1])) if found else ("", 0)
        jobs = [job_view(j) for j in state.jobs.store.jobs(rule_id, "", 20)] if state.jobs is not None else []
        return StatusExtras(error, at_us, jobs)

    app.include_router(
        build_rules_router(
            state.rules, state.on_rules_change, test_rule, state.connections.by_name, status_extras
        )
    )
    app.include_router(build_connections_router(state.connections, state.rules, state.on_connections_change))
    app.include_router(build_trace_eval_rules_router(state.rules, state.connections, state.on_rules_change))
    check_configs = config_checker(state.score_configs)
    app.include_router(build_scores_router(state.scores, check_configs))
    app.include_router(build_score_configs_router(state.score_configs))
    if state.jobs is not None:
        app.include_router(build_jobs_router(state.jobs))
    # Last: its catch-all routes answer whatever /api/public/... and /api/platform/... nothing else serves.
    app.include_router(build_compat_router(state.ingestor, state.scores, check_configs, state.compat))

    app.include_router(build_ui_router(state.reader))
    app.include_router(build_trace_ui_router(state.reader, state.readonly, state.scores, check_configs))
    app.include_router(build_rules_ui_router(RulesUi(state.reader, state.rules, state.connections, state.on_rules_change, state.on_connections_change, test_rule, status_extras, state.jobs is not None)))  # fmt: skip
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if state.auth is not None:
        app.include_router(build_keys_router(state.auth.store, state.auth.ring))
        app.include_router(build_login_router(state.auth.ring, state.auth.sessions))
        app.add_middleware(
            AuthMiddleware,
            ring=state.auth.ring,
            listener="api",
            scope_of=api_scope,
            deny=api_deny,
            sessions=state.auth.sessions,
            limited_may=limited_may,
        )
    install_error_handlers(app)
    return app
