"""Scores API: `POST/GET /api/v1/scores`, `GET/DELETE /api/v1/scores/{score_id}` (issue 10).

A score comes from an application or a person: one object or a list of up to 1,000, validated by the same
code as the Python client's (`tracejudge_client.validation`, seed 002's snake_case fields). One object: 201, or
a 400 naming the field. A list: the valid items are stored and the answer is 200, or 207 when any item was
refused, with `{"accepted", "score_ids", "errors": [{"index", "field", "message"}]}`. A score with `config_id`
is checked against that score config. The valid scores of a request get their ids and timestamps and are
appended to the scores log; the answer means they are durable on disk (`connectors/scores_log/logged.py`), and
they are in ClickHouse ~0.2 s later, written many requests to one insert (`connectors/clickhouse/scores_store.py`
explains idempotency by `score_id` and deletes). Reads and deletes first wait until every score answered before
them is stored. A full log (or a failed write) is a 503 with `Retry-After`, which the client retries.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from connectors.api.access import in_key_projects, projects_of, require_project, visible
from connectors.api.blocking import run
from connectors.api.errors import ApiError, error_responses
from connectors.api.models import Deleted
from connectors.api.orjson_body import OrjsonRoute
from connectors.api.params import parse_time
from connectors.api.score_models import ItemError, ScoreList, ScoresPosted, ScoreView, score_view
from connectors.clickhouse.scores_store import ScoreAccess, ScoreFilter
from dataflow import metrics
from dataflow.errors import QueryError, SinkError, WalError, WalFull
from tracejudge_client.validation import (
    DATA_TYPES,
    MAX_BATCH,
    SOURCES,
    ScoreInvalid,
    ValidScore,
    validate_score,
)

# Checks scores (with the object each came from) that name a config against it: each score as it is to be
# stored, or why it is refused (connectors/api/score_configs.py).
ConfigCheck = Callable[[Sequence[tuple[Mapping[str, Any], ValidScore]]], list[ValidScore | ScoreInvalid]]
DEFAULT_LIMIT = 100
_RETRY_AFTER_S = 1.0
_HEX_DIGITS = {"trace_id": 32, "observation_id": 16}


def unchecked_configs(
    items: Sequence[tuple[Mapping[str, Any], ValidScore]],
) -> list[ValidScore | ScoreInvalid]:
    return [score for _, score in items]


def _labels(doc: Any, score: ValidScore | None) -> tuple[str, str]:
    if score is not None:
        return score.source, score.data_type
    raw = doc if isinstance(doc, dict) else {}
    source = raw.get("source", "API")
    data_type = raw.get("data_type")
    return (source if source in SOURCES else "unknown", data_type if data_type in DATA_TYPES else "unknown")


def _hex_param(value: str, field: str) -> str:
    digits = _HEX_DIGITS[field]
    if value and re.fullmatch(f"[0-9a-fA-F]{{{digits}}}", value) is None:
        raise ApiError(400, f"{field} must be {digits} hex digits", field)
    return value.lower()


def build_scores_router(store: ScoreAccess, check_configs: ConfigCheck = unchecked_configs) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/scores", tags=["scores"], responses=error_responses(422), route_class=OrjsonRoute
    )

    @router.post(
        "",
        response_model=ScoresPosted,
        status_code=201,
        responses={
            200: {"model": ScoresPosted, "description": "A list, every item stored."},
            207: {"model": ScoresPosted, "description": "A list, some (or all) items refused: see errors."},
            **error_responses(400, 503),
        },
        summary="Store one score (201) or a list of up to 1,000 (200, or 207 when some are refused)",
    )
    async def post_scores(request: Request, body: Any = Body(...)) -> JSONResponse:  # noqa: B008
        if not isinstance(body, dict | list):
            raise ApiError(400, "the body must be a score (a JSON object) or a list of scores", "body")
        items = body if isinstance(body, list) else [body]
        if len(items) > MAX_BATCH:
            raise ApiError(400, f"at most {MAX_BATCH} scores per request, not {len(items)}", "body")
        items = in_key_projects(request, items)
        ids, errors = await store_scores(items, store, check_configs, single=isinstance(body, dict))
        status = 201 if isinstance(body, dict) else 207 if errors else 200
        answer = ScoresPosted(accepted=len(ids), score_ids=ids, errors=errors)
        return JSONResponse(answer.model_dump(mode="json"), status_code=status)

    @router.get("", response_model=ScoreList, responses=error_responses(400), summary="Scores, newest first")
    async def list_scores(
        request: Request,
        project: Annotated[str, Query(description="Only this project.")] = "",
        trace_id: Annotated[str, Query(description="Only this trace's scores (32 hex digits).")] = "",
        observation_id: Annotated[str, Query(description="Only this span's scores (16 hex digits).")] = "",
        session_id: Annotated[str, Query(description="Only this session's scores.")] = "",
        name: Annotated[str, Query(description="Only scores of this name.")] = "",
        source: Annotated[str, Query(description="Only EVAL (rules), API or ANNOTATION.")] = "",
        rule_id: Annotated[str, Query(description="Only this rule's scores.")] = "",
        since: Annotated[
            str | None, Query(description="ISO 8601 or Unix seconds; timestamp at or after.")
        ] = None,
        until: Annotated[str | None, Query(description="ISO 8601 or Unix seconds; timestamp before.")] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_BATCH, description="Most scores to return.")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(description="The next_cursor of the previous page.")] = None,
    ) -> ScoreList:
        allowed = projects_of(request)
        if project:
            require_project(request, project)
        elif allowed is not None and len(allowed) == 1:
            project = next(iter(allowed))
        where = ScoreFilter(
            project=project,
            trace_id=_hex_param(trace_id, "trace_id"),
            span_id=_hex_param(observation_id, "observation_id"),
            session_id=session_id,
            name=name,
            source=source,
            rule_id=rule_id,
            since_us=parse_time(since, "since") // 1000,
            until_us=parse_time(until, "until") // 1000,
        )
        try:
            rows, next_cursor = await run(store.page, where, limit, cursor)
        except ValueError as exc:
            raise ApiError(400, f"cursor: {exc}", "cursor") from exc
        rows = [r for r in rows if visible(request, r["project"])]  # a key of several projects: its own only
        return ScoreList(scores=[score_view(r) for r in rows], count=len(rows), next_cursor=next_cursor)

    @router.get("/{score_id}", response_model=ScoreView, responses=error_responses(404), summary="One score")
    async def get_score(request: Request, score_id: str) -> ScoreView:
        row = await run(store.get, score_id)
        if row is None or not visible(request, row["project"]):
            raise ApiError(404, f"score {score_id} not found")
        return score_view(row)

    @router.delete(
        "/{score_id}",
        response_model=Deleted,
        responses=error_responses(404, 503),
        summary="Delete a score (all rows)",
    )
    async def delete_score(request: Request, score_id: str) -> Deleted:
        if projects_of(request) is not None:
            row = await run(store.get, score_id)
            if row is None or not visible(request, row["project"]):
                raise ApiError(404, f"score {score_id} not found")
        try:
            deleted = await run(store.delete, score_id)
        except WalFull as exc:  # scores posted before it are not stored yet
            raise _unavailable(str(exc), exc.retry_after_s) from exc
        if not deleted:
            raise ApiError(404, f"score {score_id} not found")
        return Deleted(deleted=score_id)

    return router


async def store_scores(
    items: list[Any], store: ScoreAccess, check_configs: ConfigCheck, *, single: bool = False
) -> tuple[list[str], list[ItemError]]:
    """Validate score objects (snake_case, as `POST /api/v1/scores` takes them), write the valid ones (durable
    when this returns), count them; their ids and the errors of the others. `single`: an invalid item is a 400.
    A full log or a failed write is a 503 with Retry-After. Every route that takes scores writes through here."""

    checked, errors = await _validated(items, run, check_configs)
    if single and errors:
        raise ApiError(400, f"{errors[0].field}: {errors[0].message}", errors[0].field)
    try:
        ids = await store.write_async([s for _, s in checked])
    except (SinkError, QueryError, WalError) as exc:  # the log's append, or a direct write and its look-ups
        for doc, score in ((items[i], s) for i, s in checked):
            metrics.API_SCORES.labels(*_labels(doc, score), "failed").inc()
        retry_after = exc.retry_after_s if isinstance(exc, WalFull) else _RETRY_AFTER_S
        msg = f"storing the scores failed, retry: {exc}"
        raise _unavailable(msg, retry_after) from exc
    for (source, data_type), count in Counter((s.source, s.data_type) for _, s in checked).items():
        metrics.API_SCORES.labels(source, data_type, "accepted").inc(count)
    return ids, errors


def _unavailable(message: str, retry_after_s: float) -> ApiError:
    unavailable = ApiError(503, message)
    unavailable.headers = {"Retry-After": str(max(1, round(retry_after_s)))}
    return unavailable


async def _validated(
    items: list[Any], run: Callable[..., Any], check_configs: ConfigCheck
) -> tuple[list[tuple[int, ValidScore]], list[ItemError]]:
    """The valid items (index, score) and the errors of the others, in order."""
    valid: list[tuple[int, ValidScore]] = []
    errors: list[ItemError] = []
    for i, doc in enumerate(items):
        try:
            valid.append((i, validate_score(doc)))
        except ScoreInvalid as exc:
            errors.append(ItemError(index=i, field=exc.field, message=exc.message))
            metrics.API_SCORES.labels(*_labels(doc, None), "invalid").inc()
    if any(s.config_id for _, s in valid):
        outcomes = await run(check_configs, [(items[i], s) for i, s in valid])
        kept = []
        for (i, score), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, ScoreInvalid):
                errors.append(ItemError(index=i, field=outcome.field, message=outcome.message))
                metrics.API_SCORES.labels(score.source, score.data_type, "invalid").inc()
            else:
                kept.append((i, outcome))
        valid = kept
        errors.sort(key=lambda e: e.index)
    return valid, errors
