"""The scores store's pure parts (cursor, metadata, when a row replaces another) and the scores API's answer to
a failed write (503 with Retry-After, counted as failed), with a store that fails."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.api.errors import install_error_handlers
from connectors.api.scores import build_scores_router
from connectors.clickhouse.scores_store import _replaces, _Stored, decode_cursor, encode_cursor, metadata_map
from dataflow import metrics
from dataflow.errors import QueryError, SinkError


@pytest.mark.parametrize(("ts", "score_id"), [(1767225600123456, "s-1:a.b"), (0, ""), (5, "with:colons:too")])
def test_a_cursor_round_trips(ts: int, score_id: str) -> None:
    cursor = encode_cursor(ts, score_id)
    assert "=" not in cursor and decode_cursor(cursor) == (ts, score_id)


@pytest.mark.parametrize("cursor", ["x", "bm90LWEtY3Vyc29y", "!!!", "MTI6"[:-1] + "z"])
def test_a_foreign_cursor_is_a_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor this API returned"):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("metadata", "stored"),
    [
        (None, {}),
        ({"a": "b", "n": 1, "x": None, "l": [1, "2"], "o": {"k": True}},
         {"a": "b", "n": "1", "x": "null", "l": '[1,"2"]', "o": '{"k":true}'}),
        ("text", {"value": "text"}),
        ([1, 2], {"value": "[1,2]"}),
        (3.5, {"value": "3.5"}),
    ],
)  # fmt: skip
def test_metadata_as_a_map_of_strings(metadata: Any, stored: dict[str, str]) -> None:
    assert metadata_map(metadata) == stored


OLD = _Stored(project="p", name="n", trace_start_ns=1_000, timestamp_us=50)


@pytest.mark.parametrize(
    ("project", "name", "start", "ts", "replaces"),
    [
        ("p", "n", 1_000, 50, True),  # equal version: the last inserted wins
        ("p", "n", 1_000, 60, True),
        ("p", "n", 1_000, 40, False),  # an older version would lose
        ("q", "n", 1_000, 60, False),  # another sort key
        ("p", "m", 1_000, 60, False),
        ("p", "n", 2_000, 60, False),  # another TraceStart: maybe another partition
    ],
)
def test_when_a_new_row_replaces_the_stored_one(
    project: str, name: str, start: int, ts: int, replaces: bool
) -> None:
    row = ["id", project, "", "", "", "", name, 1.0, "", "NUMERIC", "", "API", "", None, {}, start, ts]
    assert _replaces(row, OLD) is replaces


class FailingStore:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def write(self, scores: Any) -> list[str]:
        raise self.exc

    async def write_async(self, scores: Any, now: Any = None) -> list[str]:
        raise self.exc


@pytest.mark.parametrize("exc", [SinkError("insert failed"), QueryError("look-up failed")])
def test_a_failed_write_is_a_503_with_retry_after(exc: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_scores_router(FailingStore(exc)))  # type: ignore[arg-type]
    labels = {"source": "ANNOTATION", "data_type": "NUMERIC", "outcome": "failed"}
    before = metrics.REGISTRY.get_sample_value("tracejudge_api_scores_total", labels) or 0
    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/scores", json=[{"name": "n", "value": 1, "session_id": "s", "source": "ANNOTATION"}]
        )
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "1")
    assert answer.json()["error"]["code"] == "unavailable"
    assert metrics.REGISTRY.get_sample_value("tracejudge_api_scores_total", labels) == before + 1
