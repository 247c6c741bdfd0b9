"""Cluster DDL (issue 14.3): every migration rewritten for `clickhouse.cluster` / `clickhouse.replicated` parses
with ClickHouse's own parser (chDB's `formatQuery`) and says what the one-server form says, bar the layout.

No cluster runs here (no Keeper, no remote servers), so the cluster forms are parsed, not applied; the
one-server form is the statements unchanged, which the session's chDB applies (conftest `chdb_client`).
"""

from __future__ import annotations

import re

import pytest

from connectors.clickhouse import migrate
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.cluster_ddl import ONE_SERVER, SHARDING_KEYS, Layout, split_top_level
from dataflow.config import Settings
from dataflow.errors import ConfigError

LAYOUTS = [Layout("tj_cluster", True), Layout("tj_cluster", False), Layout("", True)]


_DISTRIBUTED = re.compile(
    r"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER \w+ AS (\w+) "
    r"ENGINE = Distributed\('(\w+)', currentDatabase\(\), '(\w+)', (.+)\)$"
)


def statements() -> list[str]:
    found = [s for mig in migrate.discover() for s in mig.statements()]
    return [*found, migrate._LEDGER.strip()]


def parse(ch: ClickHouse, sql: str) -> str:
    return str(ch.query_rows("SELECT formatQuery({q:String})", parameters={"q": sql})[0][0])


def one_server_equivalent(formatted: str, layout: Layout) -> str:
    """A formatted cluster statement with the layout taken out again: no ON CLUSTER, no _local, no Replicated."""
    text = formatted.replace(f" ON CLUSTER {layout.cluster}", "") if layout.cluster else formatted
    text = re.sub(r"\b(\w+)_local\b", r"\1", text)
    text = re.sub(
        r"Replicated(\w*MergeTree)\('/clickhouse/tables/\{shard\}/\{database\}/\w+', '\{replica\}'",
        r"\1(",
        text,
    )
    return text.replace("MergeTree(, ", "MergeTree(").replace("MergeTree()", "MergeTree")


def test_one_server_layout_is_the_migrations_unchanged(chdb_client: ClickHouse) -> None:
    for stmt in statements():
        assert ONE_SERVER.rewrite(stmt) == [stmt]
    tables = {
        r[0]
        for r in chdb_client.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    assert set(SHARDING_KEYS) <= tables  # applied by migrate() with the default layout
    assert not any(t.endswith("_local") for t in tables)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["cluster-replicated", "cluster", "replicated"])
def test_cluster_forms_parse_and_keep_everything_else(chdb_client: ClickHouse, layout: Layout) -> None:
    distributed = set()
    for stmt in statements():
        original = parse(chdb_client, stmt)
        rewritten = [parse(chdb_client, s) for s in layout.rewrite(stmt)]
        assert one_server_equivalent(rewritten[0], layout) == original, stmt
        for text in rewritten:
            assert bool(re.search(rf"\sON CLUSTER {layout.cluster}\s", text)) == bool(layout.cluster), text
            if layout.replicated and "MergeTree" in text:
                assert re.search(
                    r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/\{database\}/", text
                )
        for text in rewritten[1:]:
            m = _DISTRIBUTED.match(" ".join(text.split()))
            if m:
                assert m.group(2) == m.group(4) == m.group(1) + "_local" and m.group(3) == layout.cluster
                assert m.group(5) == SHARDING_KEYS[m.group(1)]
                distributed.add(m.group(1))
            else:  # an ALTER's column changes on the Distributed table: no index there
                assert text.startswith("ALTER TABLE ") and "INDEX" not in text and "COLUMN" in text, text
    assert distributed == (set(SHARDING_KEYS) if layout.cluster else set())


def test_replacing_version_and_view_on_local_tables(chdb_client: ClickHouse) -> None:
    layout = LAYOUTS[0]
    scores = next(s for s in statements() if s.startswith("CREATE TABLE IF NOT EXISTS scores"))
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/scores_local', '{replica}', Timestamp)"
        in (layout.rewrite(scores)[0])
    )
    view = next(s for s in statements() if s.startswith("CREATE MATERIALIZED VIEW"))
    (rewritten,) = layout.rewrite(view)
    assert "TO otel_traces_trace_id_ts_local" in rewritten and "FROM otel_traces_local" in rewritten
    (joined,) = layout.rewrite(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t AS SELECT * FROM s JOIN numbers(3) AS n"
    )
    assert "TO t_local" in joined and "FROM s_local JOIN numbers(3)" in joined
    assert layout.delete_target("scores") == "scores_local ON CLUSTER `tj_cluster`"
    assert ONE_SERVER.delete_target("scores") == "scores"
    assert parse(chdb_client, f"DELETE FROM {layout.delete_target('scores')} WHERE ScoreId = 'x'")


def test_a_table_without_a_sharding_key_or_an_unknown_statement_fails_fast() -> None:
    layout = Layout("c", False)
    with pytest.raises(ConfigError, match="no sharding key"):
        layout.rewrite("CREATE TABLE IF NOT EXISTS newtable\n(a String)\nENGINE = MergeTree\nORDER BY a")
    with pytest.raises(ConfigError, match="no cluster form"):
        layout.rewrite("DROP TABLE scores")
    assert split_top_level("ADD COLUMN a Map(String, UInt8) DEFAULT map('x,', 1), DROP COLUMN b") == [
        "ADD COLUMN a Map(String, UInt8) DEFAULT map('x,', 1)",
        "DROP COLUMN b",
    ]


def test_config_refuses_a_cluster_on_embedded_chdb() -> None:
    with pytest.raises(ValueError, match="need a ClickHouse server"):
        Settings(clickhouse={"cluster": "c"})
    with pytest.raises(ValueError, match=r"clickhouse\.cluster"):
        Settings(clickhouse={"cluster": "bad name;"}, clickhouse_dsn="http://h:8123/db")
    s = Settings(clickhouse={"cluster": "c-1", "replicated": True}, clickhouse_dsn="http://h:8123/db")
    assert Layout.of(s.clickhouse) == Layout("c-1", True)
