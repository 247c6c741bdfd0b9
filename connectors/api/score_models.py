"""The scores API's answers (`/api/v1/scores`, `/api/v1/score-configs`) as pydantic models, snake_case."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from connectors.api.params import iso_ns, iso_us
from connectors.clickhouse.score_configs_store import ScoreConfig


class ScoreView(BaseModel):
    """One score of the `scores` table, whichever source wrote it (EVAL: a rule; API; ANNOTATION)."""

    score_id: str
    project: str
    name: str
    value: float | None = Field(
        description="NUMERIC: the number; BOOLEAN: 1 or 0; CATEGORICAL: a config's value."
    )
    string_value: str = Field(description="CATEGORICAL: the label; '' otherwise.")
    data_type: str = Field(description="NUMERIC, BOOLEAN or CATEGORICAL.")
    passed: bool | None = Field(description="BOOLEAN: the value; a rule's pass/fail; None otherwise.")
    comment: str
    source: str = Field(description="EVAL (a rule's scorer), API or ANNOTATION.")
    trace_id: str
    observation_id: str = Field(description="The scored span; '' for a trace, session or dataset run score.")
    session_id: str
    dataset_run_id: str
    config_id: str
    metadata: dict[str, str] = Field(description="Values that are not strings are kept as JSON text.")
    timestamp: str = Field(description="RFC 3339, UTC.")
    trace_start: str = Field(description="RFC 3339, UTC: the trace's start (the score's time when unknown).")
    rule_id: str
    rule_name: str
    rule_version: int
    scorer: str
    model: str
    error: str = Field(description="A rule scorer's error; '' otherwise.")
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float


class ScoreList(BaseModel):
    scores: list[ScoreView] = Field(description="Newest first (timestamp, then score_id).")
    count: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None: this is the last.")


class ItemError(BaseModel):
    index: int = Field(description="The item's position in the posted list (0 for a single object).")
    field: str = Field(description="The offending field (seed 002's snake_case name).")
    message: str


class ScoresPosted(BaseModel):
    """The answer to `POST /api/v1/scores`: 201 for one object; 200 for a list, 207 when any item was refused."""

    accepted: int
    score_ids: list[str] = Field(
        description="The stored scores' ids, in the order posted (generated if not given)."
    )
    errors: list[ItemError]


class ScoreConfigList(BaseModel):
    score_configs: list[ScoreConfig] = Field(description="By name.")
    count: int


def score_view(row: dict[str, Any]) -> ScoreView:
    """A row of `ScoreStore` (snake_case, times as integers) as the API answers it."""
    fields = {k: v for k, v in row.items() if k not in ("timestamp_us", "trace_start_ns")}
    return ScoreView(
        **fields, timestamp=iso_us(int(row["timestamp_us"])), trace_start=iso_ns(int(row["trace_start_ns"]))
    )
