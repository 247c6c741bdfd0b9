"""`StoredSpanIds` on chDB (`sql/queries/span_ids_for_traces.sql`): the stored span ids of the asked traces,
within the projects and the time bounds, judge spans left out; asked in chunks."""

from __future__ import annotations

import secrets

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.span_ids import StoredSpanIds

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


def insert(ch: ClickHouse, rows: list[tuple[str, str, str, int, str]]) -> None:
    """(trace id, span id, project, start ns, scope name) rows."""
    values = ", ".join(
        f"(fromUnixTimestamp64Nano(toInt64({ts})), '{tid}', '{sid}', '{project}', '{scope}', now64(9))"
        for tid, sid, project, ts, scope in rows
    )
    ch.command(
        f"INSERT INTO otel_traces (Timestamp, TraceId, SpanId, Project, ScopeName, IngestedAt) VALUES {values}"
    )


def test_span_ids_of_the_asked_traces_in_their_projects_and_time_bounds_without_judge_spans(
    chdb_client: ClickHouse,
) -> None:
    t, u, other, absent = (secrets.token_hex(16) for _ in range(4))
    insert(chdb_client, [
        (t, "a1", "p", T0, ""), (t, "a2", "p", T0 + 10 * NS, "opentelemetry"),
        (t, "a2", "p", T0 + 10 * NS, "opentelemetry"),  # a duplicate copy: one id
        (t, "judge", "p", T0 + NS, "tracejudge.judge"),  # a judge span: not the trace's own
        (t, "before", "p", T0 - NS, ""), (t, "after", "p", T0 + 21 * NS, ""),  # outside the bounds
        (t, "elsewhere", "q", T0, ""),  # another project
        (u, "b1", "q", T0 + 20 * NS, ""), (other, "c1", "p", T0, ""),  # u: asked; other: not asked
    ])  # fmt: skip
    found = StoredSpanIds(chdb_client, batch=1).span_ids([t, u, absent], ["p", "q"], T0, T0 + 20 * NS)
    assert found == {t: {"a1", "a2", "elsewhere"}, u: {"b1"}}
    assert StoredSpanIds(chdb_client).span_ids([t, u], ["q"], T0, T0 + 20 * NS) == {
        t: {"elsewhere"},
        u: {"b1"},
    }
