"""The API keys handed from the main process to the ingest workers through a file.

The main process's key ring loads from ClickHouse; `ExportingSource` wraps that source and, on every load,
rewrites `<data_dir>/ingest/keys.json` atomically (write, then rename) with the keys as stored (hashes, never
secrets). Each worker's key ring reads it through `FileKeySource`, polled like any source (its fingerprint is
the file's), so a key created or revoked reaches the workers within one reload interval of each process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from connectors.auth.keys import ApiKey
from connectors.auth.ring import KeyRing, KeySource


def _to_json(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "hash": key.hash,
        "scopes": sorted(key.scopes),
        "projects": sorted(key.projects),
        "created_at": key.created_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }


def _from_json(raw: dict[str, Any]) -> ApiKey:
    revoked = raw["revoked_at"]
    return ApiKey(
        raw["key_id"],
        raw["name"],
        raw["hash"],
        frozenset(raw["scopes"]),
        frozenset(raw["projects"]),
        dt.datetime.fromisoformat(raw["created_at"]),
        None if revoked is None else dt.datetime.fromisoformat(revoked),
    )


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([_to_json(k) for k in keys]))
    os.replace(tmp, path)


class ExportingSource:
    """A key source that writes every set it loads to `path` as well."""

    def __init__(self, source: KeySource, path: Path) -> None:
        self._source = source
        self.path = path

    def fingerprint(self) -> str:
        return self._source.fingerprint()

    def load(self) -> list[ApiKey]:
        keys = self._source.load()
        write_keys(self.path, keys)
        return keys


class FileKeySource:
    """The keys of the file the main process writes; no file yet: no keys."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def fingerprint(self) -> str:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return ""
        return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"

    def load(self) -> list[ApiKey]:
        try:
            raw = json.loads(self._path.read_text())
        except FileNotFoundError:
            return []
        return [_from_json(k) for k in raw]


class FileKeyRing(KeyRing):
    """A worker's key ring over `FileKeySource`: it looks at the file (one `stat`) before each question, so a key
    the main process created or revoked counts here from the next request on, as it does there."""

    @property
    def enabled(self) -> bool:
        self.refresh()
        return super().enabled

    def verify(self, token: str) -> ApiKey | None:
        self.refresh()
        return super().verify(token)
