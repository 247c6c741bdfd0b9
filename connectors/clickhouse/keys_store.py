"""API keys in ClickHouse (`keys`, migration 0011): versioned rows, the latest per KeyId wins.

Revoking writes the key's row again with RevokedAt set and Version + 1, so every process that reloads sees
the key either valid or revoked, never half-changed.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from connectors.auth.keys import ApiKey, new_key
from connectors.clickhouse.client import ClickHouse

_COLUMNS = ["KeyId", "Name", "Hash", "Scopes", "Projects", "CreatedAt", "RevokedAt", "Version"]
_TYPES = [
    "String",
    "String",
    "String",
    "Array(LowCardinality(String))",
    "Array(String)",
    "DateTime64(6)",
    "Nullable(DateTime64(6))",
    "UInt64",
]
_SELECT = "SELECT KeyId, Name, Hash, Scopes, Projects, CreatedAt, RevokedAt, Version FROM keys FINAL"


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _key(row: tuple[Any, ...]) -> ApiKey:
    created = _utc(row[5])
    assert created is not None
    return ApiKey(row[0], row[1], row[2], frozenset(row[3]), frozenset(row[4]), created, _utc(row[6]))


class KeyStore:
    """Create, list and revoke keys; `load` is what every process's key ring polls."""

    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    def load(self) -> list[ApiKey]:
        return [_key(r) for r in self._ch.query_rows(f"{_SELECT} ORDER BY CreatedAt, KeyId")]

    def get(self, key_id: str) -> ApiKey | None:
        found = self._ch.query_rows(f"{_SELECT} WHERE KeyId = {{id:String}}", {"id": key_id})
        return _key(found[0]) if found else None

    def fingerprint(self) -> str:
        """Changes whenever a key is created or revoked: cheap to poll."""
        rows = self._ch.query_rows("SELECT count(), sum(Version) FROM keys")
        return "/".join(str(v) for v in rows[0])

    def create(self, name: str, scopes: frozenset[str], projects: frozenset[str]) -> tuple[ApiKey, str]:
        """A new key: the stored record and the key itself (shown once, never stored)."""
        key_id, token, digest = new_key()
        now = dt.datetime.now(dt.UTC)
        key = ApiKey(key_id, name, digest, scopes, projects, now)
        self._write(key)
        return key, token

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (again: a no-op); None when there is no such key."""
        key = self.get(key_id)
        if key is None or key.revoked_at is not None:
            return key
        revoked = ApiKey(
            key.key_id, key.name, key.hash, key.scopes, key.projects, key.created_at, dt.datetime.now(dt.UTC)
        )
        self._write(revoked)
        return revoked

    def _write(self, key: ApiKey) -> None:
        row = [
            key.key_id,
            key.name,
            key.hash,
            sorted(key.scopes),
            sorted(key.projects),
            key.created_at,
            key.revoked_at,
            time.time_ns(),
        ]
        self._ch.insert_rows("keys", [row], _COLUMNS, _TYPES)
