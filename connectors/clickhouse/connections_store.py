"""LLM connections in ClickHouse (`connections`): versioned rows, the latest per Id wins, names unique."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from connectors.clickhouse.versioned import VersionedStore
from dataflow.errors import ConfigError
from dataflow.judging.connections import ConnectionSpec


class ConnectionStore(VersionedStore[ConnectionSpec]):
    table = "connections"
    model = ConnectionSpec

    def fingerprint(self) -> str:
        rows = self._ch.query_rows("SELECT count(), max(UpdatedAt), sum(Version) FROM connections")
        return "/".join(str(v) for v in rows[0])


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
