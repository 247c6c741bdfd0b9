"""Seed 003's trace eval rules: `POST` and `GET /api/v1/projects/{project}/trace-eval-rules`.

A trace eval rule is stored as an ordinary rule (it shows in `/api/v1/rules` and runs like any other):

    name, enabled          -> the rule's name and enabled flag; the path's project -> its project
    matchType SPAN_NAME    -> scope "span", span_names [matchValue] (trimmed, as the rules API trims names);
                              matchKey is ignored and answered as null
    matchType ATTRIBUTE    -> scope "span", filter attributes['matchKey'] = 'matchValue' (both exact, quotes
                              doubled, so no character of either has a meaning in the filter language)
    (both)                 -> `output != ''` in the filter: only spans with non-empty output are scored
    connectionId           -> a connection's id or name; the judge refers to it by name
    evaluatorName          -> the judge's score name (default: the rule's name)
    criteria, minScore, maxScore, threshold -> the one `llm_judge` scorer's fields

The rule's description starts with `MARKER`; GET lists the project's rules that carry it and still have
the shape above (a rule later changed through `/api/v1/rules` beyond what these fields express is left out,
and remains an ordinary rule). POST follows the rules API: an existing trace eval rule of the same name in
the project is answered unchanged (200), a new one 201 (with `Location: /api/v1/rules/{id}`); a name taken
by another kind of rule is 409. The seed defines no error body: refusals answer the API's one shape,
`{"error": {"code", "message", "field"}}` (`connectors/api/errors.py`), 400 `validation_error` with the
field named as the seed names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.api.access import project_in_path
from connectors.api.blocking import run
from connectors.api.errors import ApiError, error_responses
from connectors.api.models import MatchType, TraceEvalRuleView
from connectors.api.rules import validated
from connectors.clickhouse.connections_store import ConnectionStore
from connectors.clickhouse.rules_store import RuleStore
from dataflow.errors import RuleCompileError
from dataflow.judging.connections import ConnectionSpec
from dataflow.judging.judge import LlmJudgeSpec
from dataflow.rules.model import RuleSpec
from dataflow.rules.parser import Compare, Const, Logic, MapValue, field_label, parse

MARKER = "[trace-eval-rule]"
DESCRIPTION = (
    f"{MARKER} Created through POST /api/v1/projects/{{project}}/trace-eval-rules (seed 003): one LLM judge "
    "on matching spans with non-empty output."
)
OUTPUT_FILTER = "output != ''"
_SERVER_FIELDS = ("id", "projectId", "connectionName")
# Where a rule field's error comes from, in the seed's names (a fallback: the request is checked first).
_SEED_FIELDS = {
    "name": "name",
    "project": "project",
    "filter": "matchValue",
    "span_names": "matchValue",
    "scorers.0.llm_judge.name": "evaluatorName",
    "scorers.0.llm_judge.connection": "connectionId",
    "scorers.0.llm_judge.criteria": "criteria",
    "scorers.0.llm_judge.min_score": "minScore",
    "scorers.0.llm_judge.max_score": "maxScore",
    "scorers.0.llm_judge.threshold": "threshold",
}


class TraceEvalRuleError(RuleCompileError):
    """A trace eval rule the API refuses; `field` is the seed's name of the field at fault ("" for the body)."""

    def __init__(self, problem: str, field: str = "") -> None:
        super().__init__(problem)
        self.field = field


class TraceEvalRuleRequest(BaseModel):
    """The body of a POST, field for field as seed 003 names them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200, description="Unique within the project.")
    enabled: bool | None = Field(None, description="None: enabled.")
    matchType: MatchType
    matchKey: str | None = Field(None, max_length=1_000, description="ATTRIBUTE: the attribute's key.")
    matchValue: str = Field(..., min_length=1, max_length=10_000)
    connectionId: str = Field(..., min_length=1, max_length=200, description="A connection's id or name.")
    evaluatorName: str | None = Field(None, max_length=200, description="The score's name; None: `name`.")
    criteria: str = Field(..., min_length=1, max_length=20_000)
    minScore: float = Field(0.0, allow_inf_nan=False)
    maxScore: float = Field(1.0, allow_inf_nan=False)
    threshold: float | None = Field(None, allow_inf_nan=False, description="Passed when score >= it.")


def _problem(req: TraceEvalRuleRequest) -> tuple[str, str] | None:
    for field in ("name", "matchValue", "criteria", "evaluatorName"):
        value = getattr(req, field)
        if value is not None and not value.strip():
            return field, "must not be blank"
    if req.matchType == "ATTRIBUTE" and not (req.matchKey or "").strip():
        return "matchKey", "is required when matchType is ATTRIBUTE"
    if req.maxScore <= req.minScore:
        return "maxScore", "must be greater than minScore"
    if req.threshold is not None and not req.minScore <= req.threshold <= req.maxScore:
        return "threshold", "must lie within [minScore, maxScore]"
    return None


def parse_request(data: object) -> TraceEvalRuleRequest:
    """Validate a POST body; raise TraceEvalRuleError naming the (first) field at fault."""
    if not isinstance(data, dict):
        msg = "the body must be a JSON object (a trace eval rule)"
        raise TraceEvalRuleError(msg)
    try:
        req = TraceEvalRuleRequest.model_validate({k: v for k, v in data.items() if k not in _SERVER_FIELDS})
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(rule)'}: {e['msg']}" for e in errors)
        raise TraceEvalRuleError(problems, ".".join(map(str, errors[0]["loc"]))) from exc
    problem = _problem(req)
    if problem is not None:
        field, text = problem
        msg = f"{field}: {text}"
        raise TraceEvalRuleError(msg, field)
    return req


def sql_string(text: str) -> str:
    """A filter-language string literal: single quotes doubled, every other character as it is."""
    return "'" + text.replace("'", "''") + "'"


def attribute_filter(key: str, value: str) -> str:
    """`attributes['key'] = 'value' AND output != ''`: the span attribute equals the value exactly."""
    return f"{field_label('attributes', key)} = {sql_string(value)} AND {OUTPUT_FILTER}"


def rule_data(project: str, req: TraceEvalRuleRequest, connection: str) -> dict[str, Any]:
    """The rules API's body for `req` in `project`, its judge using the connection named `connection`."""
    judge = {
        "type": "llm_judge",
        "name": req.evaluatorName or req.name,
        "connection": connection,
        "criteria": req.criteria,
        "min_score": req.minScore,
        "max_score": req.maxScore,
        "threshold": req.threshold,
    }
    by_name = req.matchType == "SPAN_NAME"
    return {
        "name": req.name,
        "project": project,
        "description": DESCRIPTION,
        "enabled": True if req.enabled is None else req.enabled,
        "scope": "span",
        "span_names": [req.matchValue] if by_name else [],
        "filter": OUTPUT_FILTER if by_name else attribute_filter(req.matchKey or "", req.matchValue),
        "scorers": [judge],
    }


def seed_field(rule_field: str) -> str:
    """The seed's name for a rule field that an error names ('' when there is none)."""
    for prefix, field in sorted(_SEED_FIELDS.items(), key=lambda kv: -len(kv[0])):
        if rule_field == prefix or rule_field.startswith(prefix + "."):
            return field
    return ""


def to_rule_spec(project: str, req: TraceEvalRuleRequest, connection: str) -> RuleSpec:
    """The rule, validated and compiled as the rules API does it; errors name the seed's field."""
    try:
        return validated(rule_data(project, req, connection))
    except ApiError as exc:
        field = seed_field(exc.field or "")
        msg = f"{field}: {exc.message}" if field else exc.message
        raise TraceEvalRuleError(msg, field) from exc


def match_of(spec: RuleSpec) -> tuple[MatchType, str | None, str] | None:
    """(matchType, matchKey, matchValue) when the rule has a trace eval rule's shape, else None."""
    if spec.scope != "span" or spec.root_spans:
        return None
    if len(spec.span_names) == 1:
        return ("SPAN_NAME", None, spec.span_names[0]) if spec.filter == OUTPUT_FILTER else None
    if spec.span_names:
        return None
    try:
        tree = parse(spec.filter).tree
    except RuleCompileError:
        return None
    if not (isinstance(tree, Logic) and tree.op == "AND" and len(tree.items) == 2):
        return None
    first = tree.items[0]
    if not (isinstance(first, Compare) and first.op == "=" and isinstance(first.left, MapValue)):
        return None
    if first.left.map != "attributes" or not isinstance(first.right, Const):
        return None
    key, value = first.left.key, first.right.value
    if not isinstance(value, str) or spec.filter != attribute_filter(key, value):
        return None
    return "ATTRIBUTE", key, value


def to_view(spec: RuleSpec, connection_ids: dict[str, str]) -> TraceEvalRuleView | None:
    """The rule in the seed's shape, or None when it is not a trace eval rule (no marker, or reshaped)."""
    judges = [s for s in spec.scorers if isinstance(s, LlmJudgeSpec)]
    match = match_of(spec)
    if not spec.description.startswith(MARKER) or match is None or len(spec.scorers) != 1 or not judges:
        return None
    judge = judges[0]
    match_type, key, value = match
    return TraceEvalRuleView(
        id=spec.id,
        projectId=spec.project,
        name=spec.name,
        enabled=spec.enabled,
        matchType=match_type,
        matchKey=key,
        matchValue=value,
        connectionId=connection_ids.get(judge.connection, judge.connection),
        connectionName=judge.connection,
        evaluatorName=judge.name,
        criteria=judge.criteria,
        minScore=judge.min_score,
        maxScore=judge.max_score,
        threshold=judge.threshold,
    )


def _bad_request(exc: TraceEvalRuleError) -> ApiError:
    return ApiError(400, str(exc), exc.field)


def build_trace_eval_rules_router(
    rules: RuleStore, connections: ConnectionStore, on_change: Callable[[], object]
) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/projects/{project}/trace-eval-rules",
        tags=["trace eval rules"],
        responses=error_responses(422),
        dependencies=[Depends(project_in_path)],
    )

    def resolve(ref: str) -> ConnectionSpec:
        conn = connections.get(ref) or connections.by_name(ref)
        if conn is None:
            msg = f"connectionId: no connection with id or name {ref!r}"
            raise _bad_request(TraceEvalRuleError(msg, "connectionId"))
        return conn

    def ids() -> dict[str, str]:
        return {c.name: c.id for c in connections.load()}

    @router.get(
        "",
        response_model=list[TraceEvalRuleView],
        summary="The project's trace eval rules (seed 003's shape), by name",
    )
    async def list_rules(project: str) -> list[TraceEvalRuleView]:
        specs: list[RuleSpec] = await run(rules.load, project)
        by_name: dict[str, str] = await run(ids)
        views = (to_view(s, by_name) for s in specs if s.project == project)
        return [v for v in views if v is not None]

    @router.post(
        "",
        response_model=TraceEvalRuleView,
        responses=error_responses(400, 409),
        summary="Create a trace eval rule; an existing one of that name is returned (200)",
    )
    async def create(project: str, response: Response, body: Any = Body(...)) -> TraceEvalRuleView:  # noqa: B008
        try:
            req = parse_request(body)
            to_rule_spec(project, req, req.connectionId)  # every field checked before anything is read
        except TraceEvalRuleError as exc:
            raise _bad_request(exc) from exc
        existing: RuleSpec | None = await run(rules.by_name, project, req.name)
        if existing is not None:
            view = to_view(existing, await run(ids))
            if view is None:
                msg = f"name: a rule named {req.name!r} exists in {project!r} and is not a trace eval rule"
                raise ApiError(409, msg, "name")
            response.status_code = 200
            return view
        conn: ConnectionSpec = await run(resolve, req.connectionId)
        stored: RuleSpec = await run(rules.save, to_rule_spec(project, req, conn.name))
        await run(on_change)
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/rules/{stored.id}"
        view = to_view(stored, {conn.name: conn.id})
        if view is None:  # to_rule_spec builds exactly the shape to_view reads; a bug if not
            msg = f"the stored rule {stored.id} does not read back as a trace eval rule"
            raise RuntimeError(msg)
        return view

    return router
