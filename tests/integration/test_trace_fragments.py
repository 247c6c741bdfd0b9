"""`FragmentStore` on chDB (`trace_fragments`, migration 0013): root-less trace parts recorded by one process are
found by trace id by any process (in chunks of ids), once each however often recorded."""

from __future__ import annotations

import secrets

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.fragments_store import FragmentStore


def test_recorded_parts_are_found_by_trace_id(chdb_client: ClickHouse) -> None:
    t, u, never = (secrets.token_hex(16) for _ in range(3))
    b, a = FragmentStore(chdb_client, "proc-b"), FragmentStore(chdb_client, "proc-a", chunk=1)
    b.record([(t, "p"), (u, "q")])
    b.record([(t, "p")])  # a second part of the same trace
    assert a.known([t, never]) == {t}
    assert a.known([u, t]) == {t, u}
    assert a.known([never]) == set()
    rows = chdb_client.query_rows(
        "SELECT Project, Process FROM trace_fragments WHERE TraceId = {t:String}", {"t": u}
    )
    assert rows == [("q", "proc-b")]
