"""The scores store inserts with the columns' types it names (no DESCRIBE per insert): they must be the
table's, as the migrations make it."""

from __future__ import annotations

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.scores_store import _COLUMN_TYPES


def test_the_insert_names_the_tables_column_types(chdb_client: ClickHouse) -> None:
    described = {name: type_ for name, type_, *_ in chdb_client.query_rows("DESCRIBE TABLE scores")}
    assert {name: described[name] for name in _COLUMN_TYPES} == _COLUMN_TYPES
