"""Connections API: `GET/POST/PUT /api/v1/connections`, `GET/PATCH/DELETE /api/v1/connections/{id}`.

Keys are never taken or returned: a connection names the environment variable holding its key, and every
answer says whether that variable is set in this process (`key_status`). POST creates (409 when the name is
taken), PUT creates or replaces by name, PATCH changes fields by id, DELETE refuses while a rule uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Response
from pydantic import ValidationError

from connectors.api.blocking import run
from connectors.api.errors import ApiError, error_responses, invalid
from connectors.api.models import ConnectionList, ConnectionView, Deleted
from connectors.clickhouse.connections_store import ConnectionStore
from connectors.clickhouse.rules_store import RuleStore
from dataflow.judging.connections import ConnectionSpec

_SERVER_FIELDS = ("id", "version", "key_status", "keyStatus")


def connection_doc(spec: ConnectionSpec) -> ConnectionView:
    problem = spec.key_problem()
    return ConnectionView(**dict(spec), key_status="set" if not problem else f"missing: {problem}")


def parse_connection(data: Any, keep: ConnectionSpec | None = None) -> ConnectionSpec:
    """The connection of a body; an invalid one is a 400 `validation_error` naming the field."""
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object (a connection)")
    if "api_key" in data or "apiKey" in data:
        msg = "keys are never stored: set api_key_env to the name of the env var"
        raise ApiError(400, msg, "api_key")
    body = {k: v for k, v in data.items() if k not in _SERVER_FIELDS}
    if keep is not None:
        body["id"], body["version"] = keep.id, keep.version
    try:
        return ConnectionSpec.model_validate(body)
    except ValidationError as exc:
        raise invalid(exc) from exc


def build_connections_router(
    store: ConnectionStore, rules: RuleStore, on_change: Callable[[], object]
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/connections", tags=["connections"], responses=error_responses(422))

    async def saved(spec: ConnectionSpec) -> ConnectionView:
        stored = await run(store.save, spec)
        await run(on_change)
        return connection_doc(stored)

    async def get_or_404(conn_id: str) -> ConnectionSpec:
        spec: ConnectionSpec | None = await run(store.get, conn_id)
        if spec is None:
            raise ApiError(404, f"connection {conn_id} not found")
        return spec

    @router.get("", response_model=ConnectionList, summary="List connections (with whether each key is set)")
    async def list_connections() -> ConnectionList:
        conns = await run(store.load)
        return ConnectionList(connections=[connection_doc(c) for c in conns], count=len(conns))

    @router.post(
        "",
        response_model=ConnectionView,
        responses=error_responses(400, 409),
        summary="Create a connection",
        status_code=201,
    )
    async def create(body: Any = Body(...)) -> ConnectionView:  # noqa: B008
        spec = parse_connection(body)
        if await run(store.by_name, spec.name) is not None:
            raise ApiError(409, f"a connection named {spec.name!r} exists", "name")
        return await saved(spec)

    @router.put(
        "",
        response_model=ConnectionView,
        responses=error_responses(400),
        summary="Create or replace a connection by name",
    )
    async def put(response: Response, body: Any = Body(...)) -> ConnectionView:  # noqa: B008
        spec = parse_connection(body)
        existing = await run(store.by_name, spec.name)
        if existing is None:
            response.status_code = 201
            return await saved(spec)
        candidate = spec.model_copy(update={"id": existing.id, "version": existing.version})
        return connection_doc(existing) if candidate == existing else await saved(candidate)

    @router.get(
        "/{conn_id}", response_model=ConnectionView, responses=error_responses(404), summary="One connection"
    )
    async def get(conn_id: str) -> ConnectionView:
        return connection_doc(await get_or_404(conn_id))

    @router.patch(
        "/{conn_id}",
        response_model=ConnectionView,
        responses=error_responses(400, 404, 409),
        summary="Change some fields of a connection",
    )
    async def patch(conn_id: str, body: Any = Body(...)) -> ConnectionView:  # noqa: B008
        current = await get_or_404(conn_id)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        spec = parse_connection({**current.model_dump(mode="json"), **body}, keep=current)
        if spec.name != current.name and await run(store.by_name, spec.name) is not None:
            raise ApiError(409, f"a connection named {spec.name!r} exists", "name")
        return await saved(spec)

    @router.delete(
        "/{conn_id}",
        response_model=Deleted,
        responses=error_responses(404, 409),
        summary="Delete a connection no rule uses",
    )
    async def delete(conn_id: str) -> Deleted:
        current = await get_or_404(conn_id)
        users = [r.name for r in await run(rules.load, None) if current.name in _connections_of(r)]
        if users:
            raise ApiError(409, f"connection {current.name!r} is used by rules: {', '.join(users)}")
        await run(store.delete, current)
        await run(on_change)
        return Deleted(deleted=conn_id)

    return router


def _connections_of(rule: Any) -> set[str]:
    return {getattr(s, "connection", "") for s in rule.scorers} - {""}
