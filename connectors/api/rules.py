"""Rules API: `GET/POST/PUT /api/v1/rules`, `GET/PATCH/DELETE /api/v1/rules/{id}`, `GET .../{id}/status`.

Semantics as Braintrust's project_score: POST returns the existing rule unchanged (200) when its name exists
in the project, 201 when it creates one; PUT creates or replaces by name; PATCH changes fields by id. Every
answer is the rule as stored, `id` and `version` included. A rule is validated and compiled before it is
stored; a bad one is answered 400 with the field (and, for filters, the position) at fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Body, Query, Request, Response

from connectors.api.access import projects_of, require_project, visible
from connectors.api.blocking import run
from connectors.api.errors import ApiError, error_responses
from connectors.api.job_models import JobView
from connectors.api.models import (
    Deleted,
    LiveCursor,
    ProcessStatus,
    RuleList,
    RulePreview,
    RuleStatus,
    StatusCounts,
)
from connectors.api.params import iso_ns, iso_us
from connectors.clickhouse.rules_store import RuleStore, StatusRow
from dataflow.errors import RuleCompileError
from dataflow.rules.checks import scorer_connection_problems
from dataflow.rules.model import RuleSpec, compile_rule, parse_rule
from dataflow.rules.status import COUNTERS

_SERVER_FIELDS = ("id", "version")


@dataclass(frozen=True)
class StatusExtras:
    """What a rule's status shows beyond its counts: its latest error and its re-scoring jobs."""

    last_error: str = ""
    last_error_at_us: int = 0
    jobs: list[JobView] = field(default_factory=list)


def _error(exc: RuleCompileError) -> ApiError:
    text = str(exc)
    field = text.split(":", 1)[0] if ":" in text else ""
    return ApiError(400, text, field)


def validated(data: Any, keep: RuleSpec | None = None) -> RuleSpec:
    """Parse and compile `data`; server-managed fields come from `keep` (or are cleared)."""
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object (a rule)")
    body = {k: v for k, v in data.items() if k not in _SERVER_FIELDS}
    if keep is not None:
        body["id"] = keep.id
        body["version"] = keep.version
    try:
        spec = parse_rule(body)
        compile_rule(spec)
    except RuleCompileError as exc:
        raise _error(exc) from exc
    return spec


def check_connections(spec: RuleSpec, connection: Callable[[str], Any]) -> None:
    """Refuse (400) a rule whose judge names a connection that does not exist or cannot run it."""
    if problems := scorer_connection_problems(spec, connection):
        field, problem = problems[0]
        raise ApiError(400, problem, field)


def build_rules_router(
    store: RuleStore,
    on_change: Callable[[], object],
    tester: Callable[[RuleSpec, dict[str, Any]], dict[str, Any]],
    connection: Callable[[str], Any],
    status_extras: Callable[[str], StatusExtras] | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/rules", tags=["rules"], responses=error_responses(422))

    async def saved(spec: RuleSpec) -> RuleSpec:
        await run(check_connections, spec, connection)
        stored: RuleSpec = await run(store.save, spec)
        await run(on_change)
        return stored

    @router.get("", response_model=RuleList, summary="List rules, optionally of one project")
    async def list_rules(request: Request, project: str | None = Query(None)) -> RuleList:
        if project:
            require_project(request, project)
        rules = [r for r in await run(store.load, project) if visible(request, r.project)]
        return RuleList(rules=rules, count=len(rules))

    @router.post(
        "",
        response_model=RuleSpec,
        responses=error_responses(400),
        summary="Create a rule; an existing name in the project is returned unchanged (200)",
    )
    async def create(request: Request, response: Response, body: Any = Body(...)) -> RuleSpec:  # noqa: B008
        spec = validated(body)
        require_project(request, spec.project)
        existing: RuleSpec | None = await run(store.by_name, spec.project, spec.name)
        if existing is not None:
            response.status_code = 200
            return existing
        response.status_code = 201
        return await saved(spec)

    @router.put(
        "",
        response_model=RuleSpec,
        responses=error_responses(400),
        summary="Create or replace a rule by project and name",
    )
    async def put(request: Request, response: Response, body: Any = Body(...)) -> RuleSpec:  # noqa: B008
        spec = validated(body)
        require_project(request, spec.project)
        existing: RuleSpec | None = await run(store.by_name, spec.project, spec.name)
        if existing is None:
            response.status_code = 201
            return await saved(spec)
        response.status_code = 200
        candidate = spec.model_copy(update={"id": existing.id, "version": existing.version})
        if candidate == existing:
            return existing  # idempotent: the same rule again is not a new version
        return await saved(candidate)

    @router.post(
        "/test",
        response_model=RulePreview,
        responses=error_responses(400),
        summary="Run an unsaved rule over stored traces (default: its project's 50 latest)",
    )
    async def test(request: Request, body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        rule = body.get("rule", body)
        window = body.get("window") or {}
        if not isinstance(window, dict):
            raise ApiError(400, "window must be an object", "window")
        keep_id = rule.get("id", "") if isinstance(rule, dict) else ""
        spec = validated(rule)
        if keep_id:
            spec = spec.model_copy(update={"id": str(keep_id)})
        require_project(request, spec.project)
        if projects_of(request) is not None and window.get("trace_ids") is not None:
            raise ApiError(
                403, "a key limited to projects tests rules on its project's traces", "window.trace_ids"
            )
        result: dict[str, Any] = await run(tester, spec, window)
        return {"rule": spec, **result}

    async def get_or_404(request: Request, rule_id: str) -> RuleSpec:
        spec: RuleSpec | None = await run(store.get, rule_id)
        if spec is None or not visible(request, spec.project):
            raise ApiError(404, f"rule {rule_id} not found")
        return spec

    @router.get("/{rule_id}", response_model=RuleSpec, responses=error_responses(404), summary="One rule")
    async def get(request: Request, rule_id: str) -> RuleSpec:
        return await get_or_404(request, rule_id)

    @router.patch(
        "/{rule_id}",
        response_model=RuleSpec,
        responses=error_responses(400, 404, 409),
        summary="Change some fields of a rule",
    )
    async def patch(request: Request, rule_id: str, body: Any = Body(...)) -> RuleSpec:  # noqa: B008
        current = await get_or_404(request, rule_id)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object (fields to change)")
        merged = {**current.model_dump(mode="json"), **body}
        spec = validated(merged, keep=current)
        require_project(request, spec.project)
        if (spec.project, spec.name) != (current.project, current.name):
            clash = await run(store.by_name, spec.project, spec.name)
            if clash is not None and clash.id != rule_id:
                raise ApiError(409, f"a rule named {spec.name!r} exists in {spec.project!r}", "name")
        return await saved(spec)

    @router.delete(
        "/{rule_id}", response_model=Deleted, responses=error_responses(404), summary="Delete a rule"
    )
    async def delete(request: Request, rule_id: str) -> Deleted:
        current = await get_or_404(request, rule_id)
        await run(store.delete, current)
        await run(on_change)
        return Deleted(deleted=rule_id)

    @router.get(
        "/{rule_id}/status",
        response_model=RuleStatus,
        responses=error_responses(404),
        summary="What the rule decided: counts summed over processes",
    )
    async def status(request: Request, rule_id: str) -> RuleStatus:
        spec = await get_or_404(request, rule_id)
        rows: list[StatusRow] = await run(store.status, rule_id)
        extras = await run(status_extras, rule_id) if status_extras is not None else StatusExtras()
        return rule_status(spec, rows, extras, connection)

    return router


def key_problems(spec: RuleSpec, connection: Callable[[str], Any]) -> list[str]:
    """The key problems of the connections the rule's judges use (their env var is not set)."""
    out = []
    for scorer in spec.scorers:
        name = getattr(scorer, "connection", None)
        conn = connection(name) if name else None
        if conn is not None and conn.key_problem():
            out.append(conn.key_problem())
    return out


def rule_status(
    spec: RuleSpec, rows: list[StatusRow], extras: StatusExtras, connection: Callable[[str], Any]
) -> RuleStatus:
    """A rule's status: its processes' counts summed, its live cursor and lag, its last error and jobs."""
    cursor_ns = max((r.counts.last_trace_ns for r in rows), default=0)
    return RuleStatus(
        id=spec.id,
        name=spec.name,
        version=spec.version,
        enabled=spec.enabled,
        counts=StatusCounts(**{n: sum(getattr(r.counts, n) for r in rows) for n in COUNTERS}),
        last_evaluated_at_us=max((r.counts.last_evaluated_ns // 1000 for r in rows), default=0),
        connection_problems=key_problems(spec, connection),
        processes=[_process_status(r) for r in rows],
        live_cursor=LiveCursor(
            last_trace_at=iso_ns(cursor_ns) if cursor_ns else None,
            lag_s=round(max(0.0, (time.time_ns() - cursor_ns) / 1e9), 3) if cursor_ns else None,
        ),
        last_error=extras.last_error,
        last_error_at=iso_us(extras.last_error_at_us) if extras.last_error_at_us else None,
        jobs=extras.jobs,
    )


def _process_status(row: StatusRow) -> ProcessStatus:
    c = row.counts
    return ProcessStatus(
        process=row.process,
        rule_version=c.rule_version,
        counts=StatusCounts(**{n: getattr(c, n) for n in COUNTERS}),
        last_evaluated_at_us=c.last_evaluated_ns // 1000,
        last_trace_at_ns=c.last_trace_ns,
    )
