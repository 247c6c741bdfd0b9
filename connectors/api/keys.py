"""Keys API (admin scope): `GET/POST /api/v1/keys`, `DELETE /api/v1/keys/{key_id}` (revoke).

A created key is in the POST's answer once (`key`) and nowhere else, ever: the store keeps only its hash.
Creating or revoking refreshes this process's key ring at once; the others see it within their reload interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field, field_validator

from connectors.api.blocking import run
from connectors.api.errors import ApiError, error_responses
from connectors.auth.keys import SCOPES, ApiKey
from connectors.auth.ring import KeyRing
from connectors.auth.session import SessionSigner
from connectors.clickhouse.keys_store import KeyStore


@dataclass(frozen=True)
class AuthDeps:
    """What the API needs for keys: the store, this process's key ring, the UI's session signer."""

    store: KeyStore
    ring: KeyRing
    sessions: SessionSigner


class KeyView(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    projects: list[str] = Field(description="Empty: every project.")
    created_at: str
    revoked_at: str | None


class KeyCreated(KeyView):
    key: str = Field(description="The key itself: shown this once, never stored (only its hash is).")


class KeyList(BaseModel):
    keys: list[KeyView]


class NewKey(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, description=f"Any of {', '.join(SCOPES)}.")
    projects: list[str] = Field(default_factory=list, description="Only these projects; empty: all.")

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SCOPES))
        if unknown:
            msg = f"unknown scope(s) {', '.join(unknown)}; use {', '.join(SCOPES)}"
            raise ValueError(msg)
        return value


def _view(key: ApiKey) -> KeyView:
    return KeyView.model_validate(key.view())


def build_keys_router(store: KeyStore, ring: KeyRing) -> APIRouter:
    router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=error_responses(401, 403, 422))

    @router.get("", response_model=KeyList, summary="Every key, revoked ones too (never a key's secret)")
    async def list_keys() -> KeyList:
        return KeyList(keys=[_view(k) for k in await run(store.load)])

    @router.post(
        "", response_model=KeyCreated, status_code=201, summary="Create a key; the answer shows it once"
    )
    async def create_key(body: Annotated[NewKey, Body()]) -> KeyCreated:
        key, token = await run(store.create, body.name, frozenset(body.scopes), frozenset(body.projects))
        await run(ring.refresh, True)
        return KeyCreated(key=token, **_view(key).model_dump())

    @router.delete(
        "/{key_id}", response_model=KeyView, responses=error_responses(404), summary="Revoke a key"
    )
    async def revoke_key(key_id: str) -> KeyView:
        key = await run(store.revoke, key_id)
        if key is None:
            raise ApiError(404, f"no key {key_id}")
        await run(ring.refresh, True)
        return _view(key)

    return router
