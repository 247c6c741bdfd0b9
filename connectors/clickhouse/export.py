"""Move an embedded store (chDB) into a ClickHouse server: every table's rows, once, resumable.

`tracejudge export --to DSN` (tracejudge/cli_export.py) drives it. The target is migrated first, so it has the
same tables, partitions and sorting keys. Every table of the source is copied except views and the tables a
materialized view fills (the view on the target fills them again from the copied rows) and the migrations ledger.

A table is copied in chunks: one partition, split into `n` parts by a hash of the sorting key when it holds more
than `chunk_rows` rows. Each chunk is read as Arrow and inserted as one insert with a deduplication token named
after the chunk, then recorded as done in a state file beside the source's data. Re-running the export skips the
chunks recorded; a chunk cut short by a crash is inserted again and either dropped by the token (tables with a
deduplication window), replaces itself (ReplacingMergeTree), or is deleted from the target first (other
MergeTree tables). So every row arrives once, however often the export is run or interrupted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.cluster_ddl import ONE_SERVER, Layout

LEDGER = "tracejudge_schema_migrations"
_VIEW_TARGET = re.compile(r"\bTO\s+(?:`?\w+`?\.)?`?(\w+)`?")


@dataclass(frozen=True)
class TableInfo:
    name: str
    engine: str
    sorting_key: str
    dedup_window: bool

    @property
    def replacing(self) -> bool:
        return "Replacing" in self.engine


@dataclass(frozen=True)
class Chunk:
    table: TableInfo
    partition: str
    part: int
    parts: int
    rows: int

    @property
    def key(self) -> str:
        return f"{self.table.name}/{self.partition}/{self.part}of{self.parts}"

    @property
    def token(self) -> str:
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:24]
        return f"export-{digest}"

    def where(self) -> tuple[str, dict[str, object]]:
        clause = "_partition_id = {p:String}"
        params: dict[str, object] = {"p": self.partition}
        if self.parts > 1:
            clause += f" AND cityHash64({self.table.sorting_key}) % {{n:UInt64}} = {{k:UInt64}}"
            params |= {"n": self.parts, "k": self.part}
        return clause, params


def tables_to_copy(src: ClickHouse) -> list[TableInfo]:
    """The source's tables that hold rows of their own, in name order."""
    views = src.query_rows(
        "SELECT create_table_query FROM system.tables "
        "WHERE database = currentDatabase() AND engine = 'MaterializedView'"
    )
    targets = {m.group(1) for (create,) in views if (m := _VIEW_TARGET.search(str(create)))}
    rows = src.query_rows(
        "SELECT name, engine, sorting_key, create_table_query FROM system.tables "
        "WHERE database = currentDatabase() AND engine LIKE '%MergeTree' ORDER BY name"
    )
    return [
        TableInfo(str(name), str(engine), str(key), "non_replicated_deduplication_window" in str(create))
        for name, engine, key, create in rows
        if name != LEDGER and name not in targets
    ]


def chunks_of(src: ClickHouse, table: TableInfo, chunk_rows: int) -> list[Chunk]:
    """The table's chunks: per partition, split by the sorting key's hash when the partition is large."""
    counts = src.query_rows(
        f"SELECT _partition_id, count() FROM `{table.name}` GROUP BY _partition_id ORDER BY _partition_id"
    )
    out: list[Chunk] = []
    for partition, rows in counts:
        parts = max(1, math.ceil(int(rows) / chunk_rows)) if table.sorting_key else 1
        out.extend(Chunk(table, str(partition), k, parts, int(rows)) for k in range(parts))
    return out


class ExportState:
    """The chunks done and the one in progress, in a JSON file written atomically after each chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        self.done: set[str] = set(doc.get("done", []))
        self.started: str | None = doc.get("started")

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        doc = {"done": sorted(self.done), "started": self.started}
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.path)

    def start(self, chunk: Chunk) -> bool:
        """Record `chunk` as in progress; True when a previous run was cut short inside it."""
        again = self.started == chunk.key
        self.started = chunk.key
        self._save()
        return again

    def finish(self, chunk: Chunk) -> None:
        self.done.add(chunk.key)
        self.started = None
        self._save()


def state_path(data_dir: Path, target: ClickHouse) -> Path:
    """Where the export to `target` records its progress: one file per target, beside the source's data."""
    digest = hashlib.sha256(target.safe_dsn.encode()).hexdigest()[:16]
    return data_dir / "export" / f"{digest}.json"


@dataclass(frozen=True)
class Progress:
    chunk: Chunk
    copied: bool  # False: done by an earlier run, skipped


def copy_chunk(
    src: ClickHouse, dst: ClickHouse, chunk: Chunk, again: bool, layout: Layout = ONE_SERVER
) -> None:
    """Read one chunk as Arrow from `src` and insert it into `dst` once."""
    clause, params = chunk.where()
    data = src.query_arrow(f"SELECT * FROM `{chunk.table.name}` WHERE {clause}", params)
    if again and not (chunk.table.replacing or chunk.table.dedup_window):
        dst.command(f"DELETE FROM {layout.delete_target(chunk.table.name)} WHERE {clause}", params)
    if data.num_rows:
        dst.insert_arrow(chunk.table.name, data, chunk.token, data.column_names)


def export(
    src: ClickHouse,
    dst: ClickHouse,
    state: ExportState,
    chunk_rows: int = 200_000,
    layout: Layout = ONE_SERVER,
    on_plan: Callable[[list[Chunk]], None] | None = None,
) -> Iterator[Progress]:
    """Copy every table of `src` into `dst` (already migrated under `layout`), chunk by chunk, yielding after
    each. On a cluster the inserts go through the Distributed tables, which shard them as the service's do."""
    plan = [c for t in tables_to_copy(src) for c in chunks_of(src, t, chunk_rows)]
    if on_plan is not None:
        on_plan(plan)
    for chunk in plan:
        if chunk.key in state.done:
            yield Progress(chunk, copied=False)
            continue
        again = state.start(chunk)
        copy_chunk(src, dst, chunk, again, layout)
        state.finish(chunk)
        yield Progress(chunk, copied=True)
