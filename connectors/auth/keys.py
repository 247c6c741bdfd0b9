"""API keys: their format, their hash, the scopes they grant and the projects they are limited to.

A key reads `tj_<key_id>_<secret>`: the id (12 hex characters) names the row in the `keys` table, the secret
(`secrets.token_urlsafe(32)`, 256 random bits) is what proves it. Only sha256(secret) is stored: a key this
random cannot be guessed offline, so a slow KDF would buy nothing but latency on every request. A key string
is never logged, counted or echoed; only its id and name are.

Scopes: `ingest` (OTLP and `POST /api/v1/traces`), `read` (traces, scores, rules, status, jobs, SQL), `write`
(rules, connections, scores, jobs), `admin` (keys, SQL over every project, and everything the others grant).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCOPES = ("ingest", "read", "write", "admin")
PREFIX = "tj_"
_ID_LEN = 12
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ApiKey:
    """A key as stored (never its secret): who it is, what it may do, where."""

    key_id: str
    name: str
    hash: str
    scopes: frozenset[str]
    projects: frozenset[str]  # empty: every project
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def allows_project(self, project: str) -> bool:
        return not self.projects or project in self.projects

    @property
    def limited(self) -> bool:
        """Limited to some projects (an admin key never is: it may do anything anywhere)."""
        return bool(self.projects) and "admin" not in self.scopes

    def view(self) -> dict[str, object]:
        """What `keys list` and `GET /api/v1/keys` show: everything but the hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": sorted(self.scopes, key=SCOPES.index),
            "projects": sorted(self.projects),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """A fresh key: (key_id, the whole key to show once, the hash to store)."""
    key_id = secrets.token_hex(_ID_LEN // 2)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}{key_id}_{secret}", hash_secret(secret)


def split_key(token: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(key_id) != _ID_LEN or not _HEX.issuperset(key_id) or not secret:
        return None
    return key_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_scopes(text: str) -> frozenset[str]:
    """`ingest,read` -> the scopes; ValueError naming an unknown one."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        msg = f"scopes must be a comma-separated subset of {', '.join(SCOPES)} (got {text!r})"
        raise ValueError(msg)
    return scopes
