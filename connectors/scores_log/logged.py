"""The scores the API serves: posts answered once durable in the scores log, reads that see every post answered.

`LoggedScores` has `ScoreStore`'s methods (`ScoreAccess`). `write` (and `write_async`, the API's) gives each score its id and timestamp, appends
the request's scores to the log (`<data_dir>/scores_wal/`, group-committed fsync) and returns once they are
durable; the writer thread (`writer.py`) stores them in ClickHouse when their segment is sealed (~0.2 s). Over
the log's bound `write` raises WalFull (the API answers 503 with Retry-After).

Read-your-writes: `page`, `get` and `delete` first wait (a barrier) until every score acknowledged before them is
stored: they note the last segment holding an acknowledged score, ask the log to seal it now rather than at its
age, and wait for the writer to store it, for up to `read_wait_s`. Past that a read serves what is stored and a
delete raises WalFull (503 with Retry-After): a delete must never run before a logged insert of the same id, or the
score would come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from connectors.clickhouse.scores_store import ScoreFilter, ScoreStore
from connectors.scores_log.batch import to_batch
from connectors.scores_log.writer import ScoreLogWriter
from connectors.wal.log import Wal
from dataflow.errors import WalFull
from tracejudge_client.validation import ValidScore


class LoggedScores:
    """`ScoreStore`'s methods over the scores log and its writer."""

    def __init__(
        self, log: Wal, writer: ScoreLogWriter, store: ScoreStore, read_wait_s: float, retry_after_s: float
    ) -> None:
        self._log = log
        self._part = log.partitions[0]
        self._writer = writer
        self._store = store
        self._read_wait_s = read_wait_s
        self._retry_after_s = retry_after_s

    def write(self, scores: Sequence[ValidScore], now: datetime | None = None) -> list[str]:
        """Log validated scores; their ids in order, once durable. WalFull over the log's bound."""
        ids, durable = self._append(scores, now)
        durable.result()
        return ids

    async def write_async(self, scores: Sequence[ValidScore], now: datetime | None = None) -> list[str]:
        """`write` from the event loop: the append does not block, and the loop waits for the fsync without a
        worker thread (one thread hand-over less per request)."""
        ids, durable = self._append(scores, now)
        await asyncio.wrap_future(durable)
        return ids

    def _append(self, scores: Sequence[ValidScore], now: datetime | None) -> tuple[list[str], Future[None]]:
        if not scores:
            done: Future[None] = Future()
            done.set_result(None)
            return [], done
        batch = to_batch(scores, now or datetime.now(UTC))
        durable = self._log.append(batch)
        ids: list[str] = batch.column(0).to_pylist()
        return ids, durable

    def caught_up(self) -> bool:
        """Wait until every score acknowledged so far is stored (up to `read_wait_s`); whether it is."""
        if self._writer.stored_seq >= self._part.last_seq:
            return True
        return self._writer.wait_stored(self._part.seal_soon(), self._read_wait_s)

    def page(
        self, where: ScoreFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        self.caught_up()
        return self._store.page(where, limit, cursor)

    def get(self, score_id: str) -> dict[str, Any] | None:
        self.caught_up()
        return self._store.get(score_id)

    def delete(self, score_id: str) -> bool:
        if not self.caught_up():
            msg = "scores posted before this delete are not stored yet; retry"
            raise WalFull(msg, self._retry_after_s)
        return self._store.delete(score_id)
