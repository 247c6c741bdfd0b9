"""A table of versioned specs (`connections`, `score_configs`): every change writes a new row with Version + 1,
the latest row per Id (FINAL) is the spec, a deleted one keeps a row with Deleted = 1; Spec holds the pydantic
model as JSON (without its version, which is the row's). Names are unique among those not deleted (the API
checks that before it saves)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import orjson

from connectors.clickhouse.client import ClickHouse


class Spec(Protocol):
    """What a versioned spec has: an id ('' before it is first saved), a name and a version."""

    id: str
    name: str
    version: int

    @classmethod
    def model_validate(cls, obj: Any) -> Self: ...

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Self: ...

    def model_dump(self, *, mode: str, exclude: set[str]) -> dict[str, Any]: ...


S = TypeVar("S", bound=Spec)


class VersionedStore(Generic[S]):
    """Read and write the specs of `table` (a constant of the subclass, never input) as `model`."""

    table: ClassVar[str]
    model: type[S]

    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    def _load(self, where: str = "", params: dict[str, object] | None = None) -> list[S]:
        select = f"SELECT Spec, Version FROM {self.table} FINAL WHERE Deleted = 0 {where} ORDER BY Name"
        return [
            self.model.model_validate(orjson.loads(spec) | {"version": int(version)})
            for spec, version in self._ch.query_rows(select, params)
        ]

    def load(self) -> list[S]:
        return self._load()

    def get(self, spec_id: str) -> S | None:
        found = self._load("AND Id = {id:String}", {"id": spec_id})
        return found[0] if found else None

    def by_name(self, name: str) -> S | None:
        found = self._load("AND Name = {n:String}", {"n": name})
        return found[0] if found else None

    def save(self, spec: S) -> S:
        """Create (no id yet) or change a spec: a new row with the next version."""
        current = self.get(spec.id) if spec.id else None
        stored = spec.model_copy(
            update={"id": spec.id or uuid.uuid4().hex, "version": (current.version if current else 0) + 1}
        )
        self._write(stored, deleted=False)
        return stored

    def delete(self, spec: S) -> None:
        self._write(spec.model_copy(update={"version": spec.version + 1}), deleted=True)

    def _write(self, spec: S, deleted: bool) -> None:
        self._ch.command(
            f"INSERT INTO {self.table} (Id, Name, Version, Deleted, Spec, UpdatedAt) VALUES "
            "({id:String}, {n:String}, {v:UInt32}, {d:Bool}, {s:String}, now64(6))",
            {
                "id": spec.id,
                "n": spec.name,
                "v": spec.version,
                "d": deleted,
                "s": orjson.dumps(spec.model_dump(mode="json", exclude={"version"})).decode(),
            },
        )
