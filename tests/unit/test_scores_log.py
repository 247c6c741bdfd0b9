"""The scores API's log (connectors/scores_log): records round-trip, reads wait for acknowledged scores, a full
log answers 503 with Retry-After, a failing insert is retried until it lands."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.api.errors import install_error_handlers
from connectors.api.scores import build_scores_router
from connectors.clickhouse.scores_store import ScoreFilter
from connectors.scores_log.batch import SCORES_LOG_SCHEMA, from_table, to_batch
from connectors.scores_log.logged import LoggedScores
from connectors.scores_log.writer import ScoreLogWriter
from connectors.wal.log import Wal
from dataflow import metrics
from dataflow.config import ScoresLogConfig, SinkConfig
from dataflow.errors import SinkError, WalFull
from tests.waiting import eventually
from tracejudge_client.validation import ValidScore, validate_score

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class FakeStore:
    """`ScoreStore`'s write and reads over a dict; a write waits for `release` and fails `failures` times."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.release = threading.Event()
        self.release.set()
        self.rows: dict[str, ValidScore] = {}
        self.writes = 0

    def write(self, scores: Sequence[ValidScore], now: datetime | None = None) -> list[str]:
        assert self.release.wait(30)
        self.writes += 1
        if self.failures:
            self.failures -= 1
            raise SinkError("ClickHouse is down")
        self.rows |= {s.score_id or "": s for s in scores}
        return [s.score_id or "" for s in scores]

    def page(
        self, where: ScoreFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return [{"score_id": i} for i in self.rows][:limit], None

    def get(self, score_id: str) -> dict[str, Any] | None:
        return {"score_id": score_id} if score_id in self.rows else None

    def delete(self, score_id: str) -> bool:
        return self.rows.pop(score_id, None) is not None


class Logged:
    """A scores log in a temporary directory, its writer (started or not) and the API's view of both."""

    def __init__(self, root: Path, store: FakeStore, start_writer: bool = True, **config: Any) -> None:
        cfg = ScoresLogConfig(**{"segment_max_age_s": 60.0, "read_wait_s": 10.0, **config})
        self.log = Wal(root, cfg.wal_config(), SCORES_LOG_SCHEMA, metrics.SCORES_LOG, "scores-log")
        self.stop = threading.Event()
        sink = SinkConfig(retry_initial_s=0.01, retry_max_s=0.05)
        self.writer = ScoreLogWriter(self.log, store, sink, self.stop)  # type: ignore[arg-type]
        self.scores = LoggedScores(self.log, self.writer, store, cfg.read_wait_s, cfg.retry_after_s)  # type: ignore[arg-type]
        self.log.start()
        if start_writer:
            self.writer.start()

    def close(self) -> None:
        self.log.close()
        self.stop.set()
        self.writer.join()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def logged(tmp_path: Path, store: FakeStore) -> Iterator[Logged]:
    it = Logged(tmp_path / "scores_wal", store)
    yield it
    store.release.set()
    it.close()


def _client(it: Logged) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_scores_router(it.scores))
    return TestClient(app)


def score(**doc: Any) -> ValidScore:
    return validate_score({"name": "n", "value": 1, "session_id": "s", **doc})


def test_a_logged_score_reads_back_as_it_was_stamped() -> None:
    given = [
        score(score_id="a", metadata={"k": [1, "x"]}, comment="c", timestamp="2026-01-02T03:04:05.678901Z"),
        score(value=True, trace_id="ab" * 16, observation_id="cd" * 8, project="p", source="ANNOTATION"),
        score(value="good", metadata="plain", config_id="cfg", dataset_run_id="run"),
    ]
    logged = from_table(pa.Table.from_batches([to_batch(given, NOW)]))
    assert logged[0].score_id == "a" and logged[0].timestamp == given[0].timestamp
    assert logged[1].score_id and logged[1].timestamp == NOW
    assert logged == [
        replace(s, score_id=t.score_id, timestamp=t.timestamp) for s, t in zip(given, logged, strict=True)
    ]


def test_a_read_right_after_a_post_waits_for_the_slow_writer(logged: Logged, store: FakeStore) -> None:
    store.release.clear()  # the writer is held in its insert
    ids = logged.scores.write([score(score_id="x"), score()])
    timer = threading.Timer(0.2, store.release.set)
    timer.start()
    rows, _ = logged.scores.page(ScoreFilter(), 10)
    assert [r["score_id"] for r in rows] == ids
    assert logged.scores.get("x") == {"score_id": "x"}
    timer.join()


def _delete_when_stored(it: Logged, score_id: str) -> bool:
    try:
        return it.scores.delete(score_id)
    except WalFull:
        return False


def test_a_read_that_cannot_wait_serves_what_is_stored_and_a_delete_is_refused(
    tmp_path: Path, store: FakeStore
) -> None:
    it = Logged(tmp_path / "scores_wal", store, read_wait_s=0.05, retry_after_s=3)
    try:
        store.release.clear()
        it.scores.write([score(score_id="x")])
        assert it.scores.page(ScoreFilter(), 10) == ([], None)
        with pytest.raises(WalFull) as refused:
            it.scores.delete("x")
        assert refused.value.retry_after_s == 3
        answer = _client(it).delete("/api/v1/scores/x")
        assert (answer.status_code, answer.headers["retry-after"]) == (503, "3")
        store.release.set()
        # Once stored, the delete runs after the insert (the writer may need longer than the 0.05-s wait to
        # store it on a loaded machine: until then the delete is refused again, as above).
        assert eventually(lambda: _delete_when_stored(it, "x"))
    finally:
        store.release.set()
        it.close()


def test_a_full_log_answers_503_with_retry_after(tmp_path: Path, store: FakeStore) -> None:
    it = Logged(
        tmp_path / "scores_wal",
        store,
        start_writer=False,
        max_bytes=1,
        retry_after_s=2,
        segment_max_age_s=0.05,
    )
    client = _client(it)
    assert client.post("/api/v1/scores", json={"name": "n", "value": 1, "session_id": "s"}).status_code == 201
    answer = client.post("/api/v1/scores", json=[{"name": "n", "value": 2, "session_id": "s"}])
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert "full" in answer.json()["error"]["message"]
    it.writer.start()  # the writer stores and deletes the segment: posts are taken again
    eventually(
        lambda: (
            client.post("/api/v1/scores", json={"name": "n", "value": 3, "session_id": "s"}).status_code
            == 201
        )
    )
    it.close()


def test_a_failing_insert_is_retried_until_it_lands(tmp_path: Path) -> None:
    store = FakeStore(failures=2)
    errors = metrics.SCORES_LOG_INSERT_ERRORS._value.get()
    it = Logged(tmp_path / "scores_wal", store)
    try:
        ids = it.scores.write([score(), score()])
        rows, _ = it.scores.page(ScoreFilter(), 10)
        assert [r["score_id"] for r in rows] == ids
        assert store.writes == 3
        assert metrics.SCORES_LOG_INSERT_ERRORS._value.get() - errors == 2
        eventually(lambda: it.log.partitions[0].sealed_segments() == [])  # stored, then deleted
    finally:
        it.close()
