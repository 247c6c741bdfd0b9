"""Fixtures shared by every test tier.

chDB allows one data directory per process (opening a second path, or `chdb://memory`, fails while the first
is open), so every test that needs the embedded engine in-process shares the one session-scoped `chdb_client`
below. Tests that need a directory of their own run chDB in a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.migrate import migrate


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouse]:
    """The project's ClickHouse wrapper over an in-process chDB, migrated; shared by the whole session.

    Use `.query_rows` / `.query_arrow` / `.command` / `.insert_arrow` (they flush chDB's leftover rows after
    a failed query), or `.client` for the raw clickhouse-connect client (then run `SELECT 1` after any
    error yourself). Tests share its tables: scope your rows, e.g. by a fresh TraceId.
    """
    directory = tmp_path_factory.mktemp("chdb").resolve()
    ch = ClickHouse(f"chdb://{directory}")
    migrate(ch)
    yield ch
    ch.close()
