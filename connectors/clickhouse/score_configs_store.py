"""Score configs in ClickHouse (`score_configs`, migration 0009), versioned like connections
(`connectors/clickhouse/versioned.py`). A config says what a score naming it (`config_id`) must be."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from connectors.clickhouse.versioned import VersionedStore


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


class ScoreConfigStore(VersionedStore[ScoreConfig]):
    table = "score_configs"
    model = ScoreConfig

    def by_ids(self, config_ids: Iterable[str]) -> dict[str, ScoreConfig]:
        ids = sorted(set(config_ids))
        return {c.id: c for c in self._load("AND Id IN {ids:Array(String)}", {"ids": ids})} if ids else {}
