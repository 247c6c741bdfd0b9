"""LLM connections in ClickHouse (`connections`): versioned rows, the latest per Id wins, names unique."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import yaml
from pydantic import ValidationError

from connectors.clickhouse.client import ClickHouse
from dataflow.errors import ConfigError
from dataflow.judging.connections import ConnectionSpec

_SELECT = "SELECT Spec, Version FROM connections FINAL WHERE Deleted = 0"


class ConnectionStore:
    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    def _load(self, where: str = "", params: dict[str, object] | None = None) -> list[ConnectionSpec]:
        out = []
        for spec, version in self._ch.query_rows(f"{_SELECT} {where} ORDER BY Name", params):
            data = orjson.loads(spec)
            data["version"] = int(version)
            out.append(ConnectionSpec.model_validate(data))
        return out

    def load(self) -> list[ConnectionSpec]:
        return self._load()

    def get(self, conn_id: str) -> ConnectionSpec | None:
        found = self._load("AND Id = {id:String}", {"id": conn_id})
        return found[0] if found else None

    def by_name(self, name: str) -> ConnectionSpec | None:
        found = self._load("AND Name = {n:String}", {"n": name})
        return found[0] if found else None

    def fingerprint(self) -> str:
        rows = self._ch.query_rows("SELECT count(), max(UpdatedAt), sum(Version) FROM connections")
        return "/".join(str(v) for v in rows[0])

    def save(self, spec: ConnectionSpec) -> ConnectionSpec:
        current = self.get(spec.id) if spec.id else None
        stored = spec.model_copy(
            update={"id": spec.id or uuid.uuid4().hex, "version": (current.version if current else 0) + 1}
        )
        self._write(stored, deleted=False)
        return stored

    def delete(self, spec: ConnectionSpec) -> None:
        self._write(spec.model_copy(update={"version": spec.version + 1}), deleted=True)

    def _write(self, spec: ConnectionSpec, deleted: bool) -> None:
        self._ch.command(
            "INSERT INTO connections (Id, Name, Version, Deleted, Spec, UpdatedAt) VALUES "
            "({id:String}, {n:String}, {v:UInt32}, {d:Bool}, {s:String}, now64(6))",
            {
                "id": spec.id,
                "n": spec.name,
                "v": spec.version,
                "d": deleted,
                "s": orjson.dumps(spec.model_dump(mode="json", exclude={"version"})).decode(),
            },
        )


def apply_connections_file(path: Path, store: ConnectionStore) -> list[tuple[str, ConnectionSpec]]:
    """Create or replace by name each connection of a YAML file (a list under `connections:`)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        msg = f"cannot read connections file {path}: {exc}"
        raise ConfigError(msg) from exc
    entries = (doc or {}).get("connections") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        msg = f"connections file {path}: expected a list under `connections:`"
        raise ConfigError(msg)
    specs = []
    for i, entry in enumerate(entries):
        try:
            specs.append(ConnectionSpec.model_validate({k: v for k, v in (entry or {}).items() if k != "id"}))
        except ValidationError as exc:
            msg = f"connections file {path}: connections[{i}]: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            raise ConfigError(msg) from exc
    done = []
    for spec in specs:
        existing = store.by_name(spec.name)
        if existing is None:
            done.append(("created", store.save(spec)))
            continue
        candidate = spec.model_copy(update={"id": existing.id, "version": existing.version})
        done.append(("unchanged", existing) if candidate == existing else ("updated", store.save(candidate)))
    return done
