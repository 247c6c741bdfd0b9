"""Numbered, idempotent migrations from `sql/migrations/`, applied in order and recorded in a table.

Every file is `NNNN_name.sql`, one change each, written with `IF NOT EXISTS` so that re-running a file that
was cut short is harmless. Several processes sharing one ClickHouse server may migrate at the same time.
On a cluster or with replication (config key `clickhouse`) each statement is first rewritten by
`cluster_ddl.Layout`; the ledger table too.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.cluster_ddl import ONE_SERVER, Layout
from dataflow.errors import ConfigError, SinkError

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS tracejudge_schema_migrations
(
    Version UInt32,
    Name String,
    Checksum String,
    AppliedAt DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(AppliedAt)
ORDER BY Version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def statements(self) -> list[str]:
        return split_statements(self.text)


def split_statements(text: str) -> list[str]:
    """Split on `;` at the end of a line; drop comment-only chunks."""
    out = []
    for chunk in re.split(r";\s*$", text, flags=re.MULTILINE):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            out.append(body)
    return out


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    if not directory.is_dir():
        msg = f"migrations directory {directory} is missing"
        raise ConfigError(msg)
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            msg = f"migration file {path.name} is not named NNNN_name.sql"
            raise ConfigError(msg)
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        msg = f"two migrations share a number in {directory}"
        raise ConfigError(msg)
    return found


def applied_versions(ch: ClickHouse, layout: Layout = ONE_SERVER) -> set[int]:
    for stmt in layout.rewrite(_LEDGER.strip()):
        ch.command(stmt)
    return {int(r[0]) for r in ch.query_rows("SELECT Version FROM tracejudge_schema_migrations FINAL")}


def migrate(ch: ClickHouse, directory: Path = MIGRATIONS_DIR, layout: Layout = ONE_SERVER) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied now."""
    done = applied_versions(ch, layout)
    applied = []
    for mig in discover(directory):
        if mig.version in done:
            continue
        for stmt in (s for text in mig.statements() for s in layout.rewrite(text)):
            try:
                ch.command(stmt)
            except SinkError as exc:
                msg = f"migration {mig.path.name} failed: {exc}"
                raise SinkError(msg) from exc
        ch.command(
            "INSERT INTO tracejudge_schema_migrations (Version, Name, Checksum) VALUES "
            "({v:UInt32}, {n:String}, {c:String})",
            parameters={"v": mig.version, "n": mig.name, "c": mig.checksum},
        )
        logger.info("applied migration %04d_%s", mig.version, mig.name)
        applied.append(mig)
    return applied


_TTL_TABLES = {
    "otel_traces": "toDateTime(IngestedAt)",
    "otel_traces_trace_id_ts": "InsertedAt",
}


def apply_retention(ch: ClickHouse, days: int, layout: Layout = ONE_SERVER) -> bool:
    """Make the span tables' TTL `days` days (on the tables that hold the rows); return True when it changed."""
    if not 1 <= int(days) <= 36500:
        msg = f"retention_days must be 1..36500, not {days}"
        raise ConfigError(msg)
    changed = False
    for name, expr in _TTL_TABLES.items():
        table = layout.local(name)
        rows = ch.query_rows(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": table},
        )
        wanted = f"toIntervalDay({int(days)})"
        if rows and wanted not in rows[0][0]:
            ch.command(
                f"ALTER TABLE {table}{layout.on_cluster()} MODIFY TTL {expr} + toIntervalDay({int(days)})"
            )
            logger.info("retention of %s set to %d days", table, days)
            changed = True
    return changed
