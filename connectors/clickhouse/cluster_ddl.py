"""The migrations' DDL for a ClickHouse cluster: `ON CLUSTER`, `Replicated*MergeTree`, `Distributed` in front.

`sql/migrations/` is written for one server. `Layout(cluster, replicated)` (config key `clickhouse`) rewrites
each statement before `migrate` runs it; the default layout returns the statement unchanged.

With `replicated`, every `*MergeTree` engine becomes `Replicated*MergeTree('/clickhouse/tables/{shard}/
{database}/<table>', '{replica}', <its own arguments>)`, the server's macros filling the braces.

With `cluster`, as the OpenTelemetry Collector's ClickHouse exporter does with `cluster_name`:
- `CREATE TABLE t` becomes `CREATE TABLE t_local ON CLUSTER c` (the data, on every node) and
  `CREATE TABLE t ON CLUSTER c AS t_local ENGINE = Distributed(c, currentDatabase(), t_local, <key>)`.
  **Reads and writes address the Distributed table under the table's own name**, so no query of the service
  changes: an insert is routed to a shard by the key, a read fans out to every shard and merges.
- The sharding key keeps together the rows that must meet on one shard: every version of a
  ReplacingMergeTree row (so `FINAL`, applied per shard, still sees them all) and every span of a trace (so
  the trace-id materialized view, which runs per shard on the local tables, sees each trace whole).
- `CREATE MATERIALIZED VIEW v TO t AS SELECT ... FROM s` runs on each node from `s_local` to `t_local`.
- `ALTER TABLE t` runs on `t_local`; its column changes also on `t` (a Distributed table has no indexes).

Inserts through a Distributed table should be synchronous (`distributed_foreground_insert = 1` in the
service user's profile): the write-ahead log frees a segment once its insert returns. Not proven here (no
cluster runs in the tests): that a segment replayed after a crash is dropped by the shards' deduplication as it
is on one server. The sharding key is deterministic, so each shard gets the same rows again; whether the
`insert_deduplication_token` reaches the shards' blocks through a Distributed table is not documented
(ClickHouse issue #76405).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dataflow.config import ClickHouseConfig
from dataflow.errors import ConfigError

# Sharding key of each table's Distributed front: see the module docstring for why each is what it is.
SHARDING_KEYS = {
    "otel_traces": "cityHash64(TraceId)",
    "otel_traces_trace_id_ts": "cityHash64(TraceId)",
    "scores": "cityHash64(ScoreId)",
    "rules": "cityHash64(Id)",
    "rule_status": "cityHash64(RuleId)",
    "connections": "cityHash64(Id)",
    "score_configs": "cityHash64(Id)",
    "jobs": "cityHash64(JobId)",
    "job_claims": "cityHash64(JobId)",
    "job_cancels": "cityHash64(JobId)",
    "keys": "cityHash64(KeyId)",
    "process_heartbeats": "cityHash64(Process)",
    "trace_fragments": "cityHash64(TraceId)",
    "tracejudge_schema_migrations": "Version",
}
LOCAL_SUFFIX = "_local"

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)(\s)", re.IGNORECASE)
_CREATE_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\s+TO (\w+)(\s)", re.IGNORECASE)
_FROM = re.compile(r"\bFROM (\w+)\b(?!\s*\()", re.IGNORECASE)  # a table, not a table function
_ALTER = re.compile(r"^ALTER TABLE (\w+)\s+", re.IGNORECASE)
_ENGINE = re.compile(r"\bENGINE = (\w*MergeTree)\b(\(([^()]*)\))?")
_COLUMN_ACTION = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN\b", re.IGNORECASE)


@dataclass(frozen=True)
class Layout:
    """Where the schema lives: one server (the default), replicated, and/or sharded over a cluster."""

    cluster: str = ""
    replicated: bool = False

    @classmethod
    def of(cls, config: ClickHouseConfig) -> Layout:
        """The layout the config's `clickhouse` section asks for."""
        return cls(config.cluster, config.replicated)

    def local(self, table: str) -> str:
        """The table that holds the rows: `<table>_local` on a cluster, else the table itself."""
        return table + LOCAL_SUFFIX if self.cluster else table

    def on_cluster(self) -> str:
        return f" ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def delete_target(self, table: str) -> str:
        """What a lightweight `DELETE FROM` names (a Distributed table takes none): the local table, on cluster."""
        return self.local(table) + self.on_cluster()

    def rewrite(self, statement: str) -> list[str]:
        """The statements that make `statement` (one of a migration's) true under this layout."""
        if not self.cluster and not self.replicated:
            return [statement]
        if m := _CREATE_TABLE.match(statement):
            return self._create_table(m.group(1), statement[m.end() - 1 :])
        if m := _CREATE_VIEW.match(statement):
            body = _FROM.sub(lambda f: f"FROM {self.local(f.group(1))}", statement[m.end() - 1 :])
            head = f"CREATE MATERIALIZED VIEW IF NOT EXISTS {m.group(1)}{self.on_cluster()} TO {self.local(m.group(2))}"
            return [head + body]
        if m := _ALTER.match(statement):
            return self._alter(m.group(1), statement[m.end() :])
        msg = f"no cluster form for the statement {statement[:60]!r}"
        raise ConfigError(msg)

    def _create_table(self, table: str, rest: str) -> list[str]:
        local = self.local(table)
        if self.replicated:
            rest = _ENGINE.sub(
                lambda m: self._replicated_engine(local, m.group(1), m.group(3)), rest, count=1
            )
        out = [f"CREATE TABLE IF NOT EXISTS {local}{self.on_cluster()}{rest}"]
        if self.cluster:
            if table not in SHARDING_KEYS:
                msg = f"table {table} has no sharding key in connectors/clickhouse/cluster_ddl.SHARDING_KEYS"
                raise ConfigError(msg)
            engine = f"Distributed('{self.cluster}', currentDatabase(), '{local}', {SHARDING_KEYS[table]})"
            out.append(f"CREATE TABLE IF NOT EXISTS {table}{self.on_cluster()} AS {local}\nENGINE = {engine}")
        return out

    @staticmethod
    def _replicated_engine(table: str, engine: str, args: str | None) -> str:
        if engine.startswith("Replicated"):
            return f"ENGINE = {engine}({args or ''})"
        params = [f"'/clickhouse/tables/{{shard}}/{{database}}/{table}'", "'{replica}'"]
        if args and args.strip():
            params.append(args.strip())
        return f"ENGINE = Replicated{engine}({', '.join(params)})"

    def _alter(self, table: str, actions_text: str) -> list[str]:
        actions = split_top_level(actions_text)
        out = [f"ALTER TABLE {self.local(table)}{self.on_cluster()}\n    " + ",\n    ".join(actions)]
        columns = [a for a in actions if _COLUMN_ACTION.match(a)]
        if self.cluster and columns:
            out.append(f"ALTER TABLE {table}{self.on_cluster()}\n    " + ",\n    ".join(columns))
        return out


ONE_SERVER = Layout()


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes (an ALTER's actions)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]
