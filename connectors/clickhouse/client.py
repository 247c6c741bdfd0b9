"""One ClickHouse client over two backends.

`chdb:///abs/dir` runs the embedded engine (chDB) in this process; `http(s)://...` talks to a ClickHouse
server. Both go through clickhouse-connect. On chDB the span insert takes a faster path measured here
(`INSERT ... SELECT ... FROM Python(arrow_table)` on a raw chDB connection, ~2x clickhouse-connect's
temp-file round trip); everything else uses the clickhouse-connect API on both backends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from connectors.clickhouse.readonly import ReadOnlyClient as ReadOnlyClient
from dataflow.config import ApiConfig
from dataflow.errors import QueryError, SinkError

logger = logging.getLogger(__name__)

_SAFE_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_:.")


def redact_dsn(dsn: str) -> str:
    """A DSN with its password replaced by ***."""
    parsed = urlparse(dsn)
    return dsn.replace(f":{parsed.password}@", ":***@") if parsed.password else dsn


def _quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class ClickHouse:
    """A connection to ClickHouse: commands, queries, Arrow inserts with deduplication tokens."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.embedded = dsn.startswith("chdb://")
        self._lock = threading.Lock()
        self._raw: Any = None
        try:
            if self.embedded:
                path = dsn[len("chdb://") :]
                if path not in ("", "memory") and not path.startswith("/"):
                    msg = f"clickhouse_dsn {dsn!r}: a chdb path must be absolute (chdb:///abs/dir)"
                    raise SinkError(msg)
                self.path = path
                self.client: Client = clickhouse_connect.get_client(dsn=dsn)
            else:
                parsed = urlparse(dsn)
                if not parsed.hostname:
                    msg = f"clickhouse_dsn {dsn!r} names no host"
                    raise SinkError(msg)
                self.path = ""
                self.client = clickhouse_connect.get_client(dsn=dsn, compress="lz4")
        except ClickHouseError as exc:
            msg = f"cannot connect to ClickHouse at {self.safe_dsn}: {exc}"
            raise SinkError(msg) from exc

    @property
    def safe_dsn(self) -> str:
        """The DSN without its password, for logs and errors."""
        return redact_dsn(self.dsn)

    def _raw_conn(self) -> Any:
        if self._raw is None:
            import chdb

            self._raw = chdb.connect(self.path)  # type: ignore[no-untyped-call]
        return self._raw

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            try:
                return self.client.command(sql, parameters=parameters)
            except ClickHouseError as exc:
                self._recover()
                raise SinkError(str(exc)) from exc

    def insert_rows(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: list[str],
        types: Sequence[str] | None = None,
        *,
        by_column: bool = False,
    ) -> None:
        """An insert of Python rows (status rows, API scores): clickhouse-connect's native insert. With the
        columns' ClickHouse `types` it skips the `DESCRIBE TABLE` clickhouse-connect otherwise makes first.
        `by_column`: `rows` are the columns' values, one sequence per column (no pivot of the rows)."""
        with self._lock:
            try:
                self.client.insert(
                    table, rows, column_names=columns, column_type_names=types, column_oriented=by_column
                )
            except ClickHouseError as exc:
                self._recover()
                raise SinkError(str(exc)) from exc

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return [tuple(r) for r in self.client.query(sql, parameters=parameters).result_rows]
            except ClickHouseError as exc:
                self._recover()
                raise QueryError(str(exc)) from exc

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        with self._lock:
            try:
                return self.client.query_arrow(sql, parameters=parameters)
            except (ClickHouseError, pa.ArrowException) as exc:
                self._recover()
                raise QueryError(str(exc)) from exc

    def _recover(self) -> None:
        """After a failed query chDB may hand its leftover rows to the next one: flush them out."""
        try:
            self.client.query("SELECT 1")
        except ClickHouseError:
            logger.debug("throwaway query after an error failed too", exc_info=True)

    def insert_arrow(self, table: str, data: pa.Table, token: str, columns: Sequence[str]) -> None:
        """Insert `data` as one block; a repeat with the same `token` is dropped by ClickHouse."""
        if not _SAFE_TOKEN.issuperset(token):
            msg = f"unsafe deduplication token {token!r}"
            raise SinkError(msg)
        settings = {
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }
        with self._lock:
            try:
                if self.embedded:
                    self._insert_chdb(table, data, token, columns)
                else:
                    self.client.insert_arrow(table, data, settings=settings)
            except ClickHouseError as exc:
                self._recover()
                raise SinkError(str(exc)) from exc
            except RuntimeError as exc:  # raw chDB raises RuntimeError
                self._recover_raw()
                raise SinkError(str(exc)) from exc

    def _insert_chdb(self, table: str, data: pa.Table, token: str, columns: Sequence[str]) -> None:
        cols = ", ".join(_quote_ident(c) for c in columns)
        sql = (
            f"INSERT INTO {_quote_ident(table)} ({cols}) "
            f"SETTINGS insert_deduplication_token='{token}', deduplicate_blocks_in_dependent_materialized_views=1 "
            f"SELECT {cols} FROM Python(tj_insert_data)"
        )
        tj_insert_data = data  # noqa: F841 -- chDB's Python() finds the table by this local name
        self._raw_conn().query(sql)

    def _recover_raw(self) -> None:
        try:
            self._raw_conn().query("SELECT 1")
        except RuntimeError:
            self._raw = None

    def readonly(self, config: ApiConfig) -> ReadOnlyClient:
        """The bounded, read-only query clients of the SQL endpoint, on this DSN."""
        return ReadOnlyClient(self.dsn, config)

    def close(self) -> None:
        with self._lock:
            try:
                self.client.close()
            except Exception:  # closing is best effort
                logger.debug("closing the ClickHouse client failed", exc_info=True)
            if self._raw is not None:
                try:
                    self._raw.close()
                except Exception:
                    logger.debug("closing the chDB connection failed", exc_info=True)
                self._raw = None
