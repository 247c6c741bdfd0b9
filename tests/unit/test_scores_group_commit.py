"""The scores store's group commit: posts that arrive while a write is under way are written together, in one
look-up and one insert, in arrival order; each caller gets its own ids, or the group's error."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from connectors.clickhouse.scores_store import ScoreStore
from dataflow.errors import SinkError
from tests.waiting import eventually
from tracejudge_client.validation import ValidScore, validate_score


class HeldClickHouse:
    """A ClickHouse whose first insert waits for `release`; it records the inserts and the look-ups."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.inserting = threading.Event()
        self.release = threading.Event()
        self.inserts: list[list[list[Any]]] = []
        self.lookups = 0

    def query_rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.lookups += 1
        return []

    def command(self, sql: str, parameters: dict[str, Any]) -> None:
        raise AssertionError("no delete expected")

    def insert_rows(
        self,
        table: str,
        data: list[list[Any]],
        columns: list[str],
        types: Any = None,
        *,
        by_column: bool = False,
    ) -> None:
        rows = [list(row) for row in zip(*data, strict=True)] if by_column else data
        if not self.inserts:
            self.inserting.set()
            assert self.release.wait(30)
        self.inserts.append(rows)
        if self.fail and len(self.inserts) > 1:
            raise SinkError("insert failed")


def scores(*pairs: tuple[str, float]) -> list[ValidScore]:
    return [validate_score({"name": "n", "value": v, "session_id": "s", "score_id": i}) for i, v in pairs]


def held_writes(ch: HeldClickHouse, pool: ThreadPoolExecutor) -> tuple[ScoreStore, list[Future[list[str]]]]:
    """A first write held in its insert, then two more that queue behind it."""
    store = ScoreStore(ch)  # type: ignore[arg-type]
    first = pool.submit(store.write, scores(("a", 1)))
    assert ch.inserting.wait(30)
    later = [pool.submit(store.write, scores(("b", 2), ("c", 3))), pool.submit(store.write, scores(("b", 4)))]
    eventually(lambda: len(store._waiting) == 2)
    ch.release.set()
    return store, [first, *later]


def test_writes_that_wait_are_stored_together_in_arrival_order() -> None:
    ch = HeldClickHouse()
    with ThreadPoolExecutor(3) as pool:
        _, futures = held_writes(ch, pool)
        assert [f.result(30) for f in futures] == [["a"], ["b", "c"], ["b"]]
    assert [[(row[0], row[7]) for row in rows] for rows in ch.inserts] == [
        [("a", 1.0)],
        [("b", 4.0), ("c", 3.0)],
    ]
    assert ch.lookups == 2  # the stored rows of the given ids, once per group (no trace ids here)


def test_every_writer_of_a_failed_group_gets_the_error() -> None:
    ch = HeldClickHouse(fail=True)
    with ThreadPoolExecutor(3) as pool:
        _, (first, *later) = held_writes(ch, pool)
        assert first.result(30) == ["a"]
        for future in later:
            with pytest.raises(SinkError, match="insert failed"):
                future.result(30)
