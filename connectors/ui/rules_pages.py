"""The web UI's rules (issue 12, items 4 and 5): the list, the form with validation as you type and Test rule,
enable/disable, delete with a confirmation, and the rule page (processing status, Rewind..., Score past traces,
the rule's jobs with a live progress bar, charts).

Everything goes through the rules API's own functions (`validated`, `check_connections`, `rule_status`) and the
service's Test rule and status functions, server-side. Rewind, Score past traces and Cancel are posted by
`static/rules.js` to the jobs API (`/api/v1/rules/{id}/rewind`, `.../backfill`, `/api/v1/jobs/{id}/cancel`);
the jobs list is an htmx fragment that polls itself every second while a job is queued or running, and the
Processing status one that polls itself every few seconds while the page is visible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from connectors.api.blocking import run
from connectors.api.errors import ApiError
from connectors.api.models import RuleStatus
from connectors.api.params import iso_us
from connectors.api.rules import StatusExtras, check_connections, rule_status, validated
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.connections_store import ConnectionStore
from connectors.clickhouse.rules_store import RuleStore, StatusRow
from connectors.ui.connections_page import build_connections_ui_router
from connectors.ui.forms import posted_form
from connectors.ui.lookup import found
from connectors.ui.pages import TEMPLATES
from connectors.ui.rule_charts import PERIODS, rule_charts
from connectors.ui.rule_form import (
    CODE_FUNCTIONS,
    SCORER_TYPES,
    FormProblem,
    blank_scorer,
    blank_values,
    filter_mark,
    form_values,
    marked,
    rule_body,
    spec_values,
)
from dataflow.rules.model import RuleSpec

TEST_LIMIT = 20


def duration(seconds: float) -> str:
    """A lag or an ETA for people: 0.4 s, 12 s, 3 min, 2.5 h, 4.1 d."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size * (1 if unit == "min" else 1.5):
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.0f} s"


TEMPLATES.env.filters["us_iso"] = iso_us
TEMPLATES.env.filters["duration"] = duration


@dataclass(frozen=True)
class RulesUi:
    """What the rules and connections pages need from the service (the same functions the API uses)."""

    reader: ClickHouse
    rules: RuleStore
    connections: ConnectionStore
    on_rules_change: Callable[[], object]
    on_connections_change: Callable[[], object]
    tester: Callable[[RuleSpec, dict[str, Any]], dict[str, Any]]
    status_extras: Callable[[str], StatusExtras]
    jobs: bool  # the jobs API is served: Rewind... and Score past traces


def rules_list(deps: RulesUi) -> list[dict[str, Any]]:
    """Every rule with its status: two queries (rules, status rows) and one for connections."""
    conns = {c.name: c for c in deps.connections.load()}
    rows: dict[str, list[StatusRow]] = defaultdict(list)
    for row in deps.rules.all_status():
        rows[row.rule_id].append(row)
    return [
        {"spec": spec, "status": rule_status(spec, rows[spec.id], StatusExtras(), conns.get)}
        for spec in deps.rules.load(None)
    ]


def saved_rule(deps: RulesUi, values: dict[str, Any], current: RuleSpec | None) -> RuleSpec:
    """Validate and store a rule from the form, as POST (new) or PATCH (edit) of the rules API would."""
    spec = validated(rule_body(values), keep=current)
    clash = deps.rules.by_name(spec.project, spec.name)
    if clash is not None and (current is None or clash.id != current.id):
        raise ApiError(409, f"a rule named {spec.name!r} exists in {spec.project!r}", "name")
    check_connections(spec, deps.connections.by_name)
    stored = deps.rules.save(spec)
    deps.on_rules_change()
    return stored


def checked(values: dict[str, Any]) -> dict[str, Any]:
    """The validation fragment's context: the rule model's first problem (and a filter error's position)."""
    try:
        spec = validated(rule_body(values))
    except FormProblem as exc:
        return {"problem": str(exc), "field": exc.field}
    except ApiError as exc:
        mark = filter_mark(exc.message, values.get("filter", "")) if exc.field == "filter" else None
        return {"problem": exc.message, "field": exc.field, "mark": marked(mark) if mark else None,
                "position": mark.position if mark else None}  # fmt: skip
    return {"problem": "", "spec": spec}


def build_rules_ui_router(deps: RulesUi) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        context = {"active": "/rules", "jobs_api": deps.jobs, **context}
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status)

    async def get_or_404(rule_id: str) -> RuleSpec:
        spec: RuleSpec | None = await run(deps.rules.get, rule_id)
        if spec is None:
            raise ApiError(404, f"rule {rule_id} not found")
        return spec

    def status_of(spec: RuleSpec) -> RuleStatus:
        """The rule's processing status, as GET /api/v1/rules/{id}/status answers it. Blocking."""
        extras = deps.status_extras(spec.id)
        return rule_status(spec, deps.rules.status(spec.id), extras, deps.connections.by_name)

    def form_page(request: Request, values: dict[str, Any], spec: RuleSpec | None, error: str = "",
                  status: int = 200) -> HTMLResponse:  # fmt: skip
        conns = [c.name for c in deps.connections.load()]
        context = {"values": values, "spec": spec, "error": error, "scorer_types": SCORER_TYPES,
                   "functions": CODE_FUNCTIONS, "connection_names": conns, "check": {"problem": ""}}  # fmt: skip
        if error:
            context["check"] = checked(values)
        return page(request, "rule_form.html", context, status)

    async def posted(request: Request) -> dict[str, Any]:
        return form_values(await posted_form(request))

    async def save(request: Request, current: RuleSpec | None) -> Response:
        values = await posted(request)
        if (await posted_form(request)).get("action") == "add_scorer":
            values["scorers"].append(blank_scorer())
            added: HTMLResponse = await run(form_page, request, values, current)
            return added
        try:
            stored = await run(saved_rule, deps, values, current)
        except (ApiError, FormProblem) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            refused: HTMLResponse = await run(form_page, request, values, current, message, 400)
            return refused
        return RedirectResponse(f"/rules/{stored.id}", status_code=303)

    @router.get("/rules", response_class=HTMLResponse)
    async def rules(request: Request) -> HTMLResponse:
        return page(request, "rules.html", {"rules": await run(rules_list, deps)})

    @router.get("/rules/new", response_class=HTMLResponse)
    async def new_rule(request: Request) -> HTMLResponse:
        values = blank_values(request.query_params.get("project", ""))
        shown: HTMLResponse = await run(form_page, request, values, None)
        return shown

    @router.post("/rules/new", response_class=HTMLResponse)
    async def create_rule(request: Request) -> Response:
        return await save(request, None)

    @router.post("/rules/check", response_class=HTMLResponse)
    async def check(request: Request) -> HTMLResponse:
        return page(request, "_rule_check.html", {"check": checked(await posted(request))})

    @router.post("/rules/test", response_class=HTMLResponse)
    async def test(request: Request) -> HTMLResponse:
        form = await posted_form(request)
        context = checked(form_values(form))
        spec = context.get("spec")
        if spec is not None:
            rule_id = str(form.get("rule_id", ""))
            spec = spec.model_copy(update={"id": rule_id}) if rule_id else spec
            try:
                context["result"] = await run(deps.tester, spec, {"limit": TEST_LIMIT})
            except ApiError as exc:
                context["problem"] = exc.message
        return page(request, "_rule_test.html", {"check": context, **context})

    @router.get("/rules/{rule_id}", response_class=HTMLResponse)
    async def rule_page(request: Request, rule_id: str) -> HTMLResponse:
        spec = await found(request, deps.rules.get, rule_id, "rule", "/rules")
        if isinstance(spec, HTMLResponse):
            return spec
        period = request.query_params.get("period", "24h")
        status = await run(status_of, spec)
        charts = await run(rule_charts, deps.reader, rule_id, period)
        context = {"spec": spec, "status": status, "charts": charts, "periods": list(PERIODS)}
        return page(request, "rule.html", context)

    @router.get("/rules/{rule_id}/status", response_class=HTMLResponse)
    async def rule_status_part(request: Request, rule_id: str) -> HTMLResponse:
        """The rule page's Processing status alone: the page polls it while it is visible."""
        spec = await get_or_404(rule_id)
        return page(request, "_rule_status.html", {"status": await run(status_of, spec), "rule_id": rule_id})

    @router.get("/rules/{rule_id}/jobs", response_class=HTMLResponse)
    async def rule_jobs(request: Request, rule_id: str) -> HTMLResponse:
        extras = await run(deps.status_extras, rule_id)
        return page(request, "_rule_jobs.html", {"jobs": extras.jobs, "rule_id": rule_id})

    @router.get("/rules/{rule_id}/edit", response_class=HTMLResponse)
    async def edit_rule(request: Request, rule_id: str) -> HTMLResponse:
        spec = await found(request, deps.rules.get, rule_id, "rule", "/rules")
        if isinstance(spec, HTMLResponse):
            return spec
        values = spec_values(spec)
        values["scorers"].append(blank_scorer())
        shown: HTMLResponse = await run(form_page, request, values, spec)
        return shown

    @router.post("/rules/{rule_id}/edit", response_class=HTMLResponse)
    async def update_rule(request: Request, rule_id: str) -> Response:
        return await save(request, await get_or_404(rule_id))

    @router.post("/rules/{rule_id}/enabled")
    async def enable(request: Request, rule_id: str) -> RedirectResponse:
        spec = await get_or_404(rule_id)
        form = await posted_form(request)
        enabled = form.get("enabled") == "1"
        if enabled != spec.enabled:
            await run(deps.rules.save, spec.model_copy(update={"enabled": enabled}))
            await run(deps.on_rules_change)
        back = form.get("back", "/rules")
        return RedirectResponse(back if back.startswith("/rules") else "/rules", status_code=303)

    @router.get("/rules/{rule_id}/delete", response_class=HTMLResponse)
    async def confirm_delete(request: Request, rule_id: str) -> HTMLResponse:
        spec = await found(request, deps.rules.get, rule_id, "rule", "/rules")
        if isinstance(spec, HTMLResponse):
            return spec
        context = {"title": f"Delete rule {spec.name}?", "action": f"/rules/{rule_id}/delete",
                   "cancel": f"/rules/{rule_id}", "what": f"rule {spec.name!r} of project {spec.project!r}",
                   "note": "Its scores stay in the scores table."}  # fmt: skip
        return page(request, "confirm_delete.html", context)

    @router.post("/rules/{rule_id}/delete")
    async def delete(rule_id: str) -> RedirectResponse:
        spec = await get_or_404(rule_id)
        await run(deps.rules.delete, spec)
        await run(deps.on_rules_change)
        return RedirectResponse("/rules", status_code=303)

    router.include_router(
        build_connections_ui_router(deps.connections, deps.rules, deps.on_connections_change)
    )
    return router
