"""Score configs API: `GET/POST /api/v1/score-configs`, `GET/PATCH/DELETE /api/v1/score-configs/{config_id}`,
and the check of a posted score against the config it names (`config_checker`).

A score with `config_id` must name a config that exists and is not archived (else a 400 naming `config_id`),
have its data type (a score that gave no `data_type` is read as the config's type), lie in a NUMERIC config's
`min_value`..`max_value`, and carry one of a CATEGORICAL config's labels, whose value becomes the score's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from fastapi import APIRouter, Body
from pydantic import ValidationError

from connectors.api.blocking import run
from connectors.api.errors import ApiError, error_responses, invalid
from connectors.api.models import Deleted
from connectors.api.score_models import ScoreConfigList
from connectors.clickhouse.score_configs_store import ScoreConfig, ScoreConfigStore
from tracejudge_client.validation import ScoreInvalid, ValidScore, validate_score

_SERVER_FIELDS = ("id", "version")


def parse_config(data: Any, keep: ScoreConfig | None = None) -> ScoreConfig:
    """The config of a body; an invalid one is a 400 naming the field."""
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object (a score config)", "body")
    body = {k: v for k, v in data.items() if k not in _SERVER_FIELDS}
    if keep is not None:
        body["id"], body["version"] = keep.id, keep.version
    try:
        return ScoreConfig.model_validate(body)
    except ValidationError as exc:
        raise invalid(exc) from exc


def _refuse(field: str, message: str) -> NoReturn:
    raise ScoreInvalid(field, message)


def check_score(doc: Mapping[str, Any], score: ValidScore, config: ScoreConfig | None) -> ValidScore:
    """`score` as it is to be stored under `config` (a CATEGORICAL label's value); ScoreInvalid if it does not fit."""
    if config is None:
        _refuse("config_id", f"no score config {score.config_id}")
    if config.archived:
        _refuse("config_id", f"score config {score.config_id} ({config.name!r}) is archived")
    if score.data_type != config.data_type:
        if doc.get("data_type") is not None:
            _refuse("data_type", f"score config {config.name!r} is {config.data_type}, not {score.data_type}")
        score = validate_score({**doc, "data_type": config.data_type})
    if config.data_type == "NUMERIC" and score.value is not None:
        problem = config.out_of_range(score.value)
        if problem:
            _refuse("value", problem)
    if config.categories is not None:
        if score.string_value not in config.categories:
            labels = ", ".join(config.categories)
            _refuse("value", f"must be one of {labels} (score config {config.name!r})")
        score = dataclasses.replace(score, value=config.categories[score.string_value])
    return score


def config_checker(
    store: ScoreConfigStore,
) -> Callable[[Sequence[tuple[Mapping[str, Any], ValidScore]]], list[ValidScore | ScoreInvalid]]:
    """The check the scores API runs (in a worker thread) on the valid scores of a request."""

    def check(items: Sequence[tuple[Mapping[str, Any], ValidScore]]) -> list[ValidScore | ScoreInvalid]:
        configs = store.by_ids(s.config_id for _, s in items if s.config_id)
        out: list[ValidScore | ScoreInvalid] = []
        for doc, score in items:
            try:
                out.append(
                    check_score(doc, score, configs.get(score.config_id)) if score.config_id else score
                )
            except ScoreInvalid as exc:
                out.append(exc)
        return out

    return check


def build_score_configs_router(store: ScoreConfigStore) -> APIRouter:
    router = APIRouter(prefix="/api/v1/score-configs", tags=["score configs"], responses=error_responses(422))

    async def get_or_404(config_id: str) -> ScoreConfig:
        config: ScoreConfig | None = await run(store.get, config_id)
        if config is None:
            raise ApiError(404, f"score config {config_id} not found")
        return config

    async def name_free(config: ScoreConfig) -> None:
        other: ScoreConfig | None = await run(store.by_name, config.name)
        if other is not None and other.id != config.id:
            raise ApiError(409, f"a score config named {config.name!r} exists", "name")

    @router.get("", response_model=ScoreConfigList, summary="List score configs (archived ones too)")
    async def list_configs() -> ScoreConfigList:
        configs = await run(store.load)
        return ScoreConfigList(score_configs=configs, count=len(configs))

    @router.post(
        "",
        response_model=ScoreConfig,
        status_code=201,
        responses=error_responses(400, 409),
        summary="Create a score config",
    )
    async def create(body: Any = Body(...)) -> ScoreConfig:  # noqa: B008
        config = parse_config(body)
        await name_free(config)
        stored: ScoreConfig = await run(store.save, config)
        return stored

    @router.get(
        "/{config_id}", response_model=ScoreConfig, responses=error_responses(404), summary="One config"
    )
    async def get(config_id: str) -> ScoreConfig:
        return await get_or_404(config_id)

    @router.patch(
        "/{config_id}",
        response_model=ScoreConfig,
        responses=error_responses(400, 404, 409),
        summary='Change some fields of a score config (archive it: {"archived": true})',
    )
    async def patch(config_id: str, body: Any = Body(...)) -> ScoreConfig:  # noqa: B008
        current = await get_or_404(config_id)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", "body")
        config = parse_config({**current.model_dump(mode="json"), **body}, keep=current)
        await name_free(config)
        stored: ScoreConfig = await run(store.save, config)
        return stored

    @router.delete(
        "/{config_id}",
        response_model=Deleted,
        responses=error_responses(404),
        summary="Delete a score config",
    )
    async def delete(config_id: str) -> Deleted:
        await run(store.delete, await get_or_404(config_id))
        return Deleted(deleted=config_id)

    return router
