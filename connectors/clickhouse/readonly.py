"""The read-only query path of `POST /api/v1/sql` and the UI's SQL page: a small pool of clients whose every
query is read-only at the ClickHouse level and bounded (rows, time, memory, spill-to-disk thresholds).

One clickhouse-connect client is serialised (on chDB too), so one client made every reader wait behind the
slowest query; several clients on the same chDB path run in parallel. `sql_max_concurrent` clients are made
up front; a query takes a free one, waiting at most `sql_queue_wait_s`, else `QueryBusy` (answered 429).
`readonly=1` also stops a query's own `SETTINGS` from lifting the limits.
"""

from __future__ import annotations

import logging
import queue
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from dataflow.config import ApiConfig
from dataflow.errors import QueryBusy, QueryError

logger = logging.getLogger(__name__)

BUSY_RETRY_AFTER_S = 1.0
# A ClickHouse setting named in an error -> the config key that sets it, so a refusal names what to change.
_LIMIT_KEYS = {
    "MEMORY_LIMIT_EXCEEDED": "api.sql_max_memory_bytes",
    "TIMEOUT_EXCEEDED": "api.sql_max_execution_s",
}


def query_settings(config: ApiConfig) -> dict[str, Any]:
    """The settings of every read-only query; limits first, then readonly (after it the engine refuses to
    change settings)."""
    return {
        "max_execution_time": config.sql_max_execution_s,
        "max_result_rows": config.sql_max_rows + 1,
        "result_overflow_mode": "break",
        "max_memory_usage": config.sql_max_memory_bytes,
        "max_bytes_before_external_group_by": config.sql_max_bytes_before_external_group_by,
        "max_bytes_before_external_sort": config.sql_max_bytes_before_external_sort,
        "readonly": 1,
    }


class ReadOnlyClient:
    """`sql_max_concurrent` read-only clients; `query` runs on a free one. Thread-safe."""

    def __init__(self, dsn: str, config: ApiConfig) -> None:
        self.max_rows = config.sql_max_rows
        self._wait_s = config.sql_queue_wait_s
        self._all: list[Client] = []
        self._free: queue.SimpleQueue[Client] = queue.SimpleQueue()
        settings = query_settings(config)
        for _ in range(config.sql_max_concurrent):
            client = clickhouse_connect.get_client(dsn=dsn, settings=settings)
            self._all.append(client)
            self._free.put(client)

    def query(self, sql: str) -> tuple[list[str], list[str], list[tuple[Any, ...]], bool]:
        """Columns, type names, rows (at most max_rows) and whether rows were cut. Raises QueryBusy when no
        client came free in time, QueryError when the query fails."""
        try:
            client = self._free.get(timeout=self._wait_s) if self._wait_s else self._free.get_nowait()
        except queue.Empty:
            n = len(self._all)
            msg = f"all {n} read-only query slot{'s' if n != 1 else ''} are busy (api.sql_max_concurrent); retry"
            raise QueryBusy(msg, BUSY_RETRY_AFTER_S) from None
        try:
            result = client.query(sql)
        except ClickHouseError as exc:
            _flush(client)
            raise QueryError(_named(short_error(str(exc)))) from exc
        finally:
            self._free.put(client)
        rows = [tuple(r) for r in result.result_rows]
        truncated = len(rows) > self.max_rows
        types = [str(t.name) for t in result.column_types]
        return list(result.column_names), types, rows[: self.max_rows], truncated

    def close(self) -> None:
        for client in self._all:
            client.close()


def _flush(client: Client) -> None:
    """After a failed query chDB hands its leftover rows to the next one on that client: flush them out."""
    try:
        client.query("SELECT 1")
    except ClickHouseError:
        logger.debug("throwaway query after an error failed too", exc_info=True)


def _named(message: str) -> str:
    for code, key in _LIMIT_KEYS.items():
        if code in message:
            return f"{message} [the limit is {key}]"
    return message


def short_error(text: str) -> str:
    """ClickHouse's message without the stack trace and HTTP preamble."""
    text = text.strip()
    marker = "DB::Exception:"
    if marker in text:
        text = text[text.index(marker) + len(marker) :].strip()
    for cut in ("Stack trace:", "(version "):
        if cut in text:
            text = text[: text.index(cut)].strip()
    return text[:2000]
