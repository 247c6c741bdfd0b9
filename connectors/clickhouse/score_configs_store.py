"""Score configs in ClickHouse (`score_configs`, migration 0009): versioned rows, the latest per Id wins (FINAL),
names unique among those not deleted. A config says what a score naming it (`config_id`) must be."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from connectors.clickhouse.client import ClickHouse

_SELECT = "SELECT Spec, Version FROM score_configs FINAL WHERE Deleted = 0"


class ScoreConfig(BaseModel):
    """A score config as the API takes and answers it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str = Field("", description="Given by the server.")
    name: str = Field(..., min_length=1, max_length=200)
    data_type: Literal["NUMERIC", "BOOLEAN", "CATEGORICAL"]
    min_value: float | None = Field(None, description="NUMERIC: the least value allowed; None: no bound.")
    max_value: float | None = Field(None, description="NUMERIC: the greatest value allowed; None: no bound.")
    categories: dict[str, float] | None = Field(
        None,
        validate_default=True,
        description="CATEGORICAL: label -> the value a score with that label gets; None otherwise.",
    )
    description: str = Field("", max_length=10_000)
    archived: bool = Field(False, description="An archived config is kept, but no score may name it.")
    version: int = Field(0, description="Given by the server: 1 when created, +1 at every change.")

    @field_validator("min_value", "max_value")
    @classmethod
    def _numeric_bounds(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return value
        if info.data.get("data_type") not in (None, "NUMERIC"):
            msg = "is for NUMERIC configs only"
            raise ValueError(msg)
        low = info.data.get("min_value")
        if info.field_name == "max_value" and low is not None and value < low:
            msg = "must not be below min_value"
            raise ValueError(msg)
        return value

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        data_type = info.data.get("data_type")
        if data_type is not None and (data_type == "CATEGORICAL") != (value is not None):
            msg = "(label -> value) are required for CATEGORICAL configs, and only for them"
            raise ValueError(msg)
        if value is not None and (not value or "" in value):
            msg = "must name at least one non-empty label"
            raise ValueError(msg)
        return value

    def out_of_range(self, value: float) -> str:
        """Why a NUMERIC value does not fit, or ''."""
        if self.min_value is not None and value < self.min_value:
            return f"must be at least {_num(self.min_value)} (score config {self.name!r})"
        if self.max_value is not None and value > self.max_value:
            return f"must be at most {_num(self.max_value)} (score config {self.name!r})"
        return ""


def _num(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else repr(x)


class ScoreConfigStore:
    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    def _load(self, where: str = "", params: dict[str, object] | None = None) -> list[ScoreConfig]:
        out = []
        for spec, version in self._ch.query_rows(f"{_SELECT} {where} ORDER BY Name", params):
            out.append(ScoreConfig.model_validate(orjson.loads(spec) | {"version": int(version)}))
        return out

    def load(self) -> list[ScoreConfig]:
        return self._load()

    def get(self, config_id: str) -> ScoreConfig | None:
        found = self._load("AND Id = {id:String}", {"id": config_id})
        return found[0] if found else None

    def by_ids(self, config_ids: Iterable[str]) -> dict[str, ScoreConfig]:
        ids = sorted(set(config_ids))
        return {c.id: c for c in self._load("AND Id IN {ids:Array(String)}", {"ids": ids})} if ids else {}

    def by_name(self, name: str) -> ScoreConfig | None:
        found = self._load("AND Name = {n:String}", {"n": name})
        return found[0] if found else None

    def save(self, config: ScoreConfig) -> ScoreConfig:
        """Create (no id) or change a config: a new row with the next version."""
        current = self.get(config.id) if config.id else None
        stored = config.model_copy(
            update={"id": config.id or uuid.uuid4().hex, "version": (current.version if current else 0) + 1}
        )
        self._write(stored, deleted=False)
        return stored

    def delete(self, config: ScoreConfig) -> None:
        self._write(config.model_copy(update={"version": config.version + 1}), deleted=True)

    def _write(self, config: ScoreConfig, deleted: bool) -> None:
        self._ch.command(
            "INSERT INTO score_configs (Id, Name, Version, Deleted, Spec, UpdatedAt) VALUES "
            "({id:String}, {n:String}, {v:UInt32}, {d:Bool}, {s:String}, now64(6))",
            {
                "id": config.id,
                "n": config.name,
                "v": config.version,
                "d": deleted,
                "s": orjson.dumps(config.model_dump(mode="json", exclude={"version"})).decode(),
            },
        )
