"""`tracejudge export --to DSN`: move an embedded store's spans, scores, rules and the rest into a ClickHouse server.

    tracejudge export --to http://user:password@host:8123/db [--config F] [--data-dir D] [--chunk-rows N]

Run it with the service stopped (chDB lets one process open a data directory). The target is migrated first;
then every table is copied chunk by chunk with a progress bar (connectors/clickhouse/export.py). Interrupted or
run twice, it resumes and copies nothing twice. The config's `clickhouse.cluster` and `clickhouse.replicated`
say how the target is laid out (the migrations create that layout). Afterwards point the service at the server
(`clickhouse.dsn` or `--clickhouse-dsn`) with the same data directory, so its write-ahead log and recovery state
carry over.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dataflow.config import load_settings
from dataflow.errors import TracejudgeError


def cmd_export(args: argparse.Namespace) -> int:
    from connectors.clickhouse.client import ClickHouse
    from connectors.clickhouse.cluster_ddl import Layout
    from connectors.clickhouse.export import ExportState, export, state_path
    from connectors.clickhouse.migrate import migrate

    settings = load_settings(args.config, data_dir=args.data_dir)
    source_dsn = settings.resolved_dsn
    if not source_dsn.startswith("chdb://"):
        print(f"error: export copies an embedded store (chdb://), not {source_dsn}", file=sys.stderr)
        return 1
    try:
        src = ClickHouse(source_dsn)
    except TracejudgeError as exc:
        print(f"error: {exc}\n(stop the service first: it holds the data directory)", file=sys.stderr)
        return 1
    dst = ClickHouse(args.to)
    layout = Layout.of(settings.clickhouse)
    applied = migrate(dst, layout=layout)
    print(f"target {dst.safe_dsn}: {len(applied)} migration(s) applied", file=sys.stderr)
    state = ExportState(state_path(settings.data_dir, dst))
    rows = {"copied": 0, "skipped": 0}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("export", total=None)
        steps = export(
            src,
            dst,
            state,
            args.chunk_rows,
            layout,
            on_plan=lambda p: bar.update(task, total=sum(c.rows for c in p)),
        )
        for step in steps:
            rows["copied" if step.copied else "skipped"] += step.chunk.rows
            bar.update(task, advance=step.chunk.rows, description=step.chunk.table.name)
    src.close()
    dst.close()
    print(
        f"exported {rows['copied']} row(s) to {dst.safe_dsn}"
        + (f" ({rows['skipped']} copied by an earlier run)" if rows["skipped"] else "")
    )
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="copy an embedded store into a ClickHouse server (service stopped)")
    p.add_argument("--to", required=True, help="the target, http(s)://user:password@host:8123/database")
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument("--data-dir", type=Path, help="data directory of the embedded store (default ./data)")
    p.add_argument("--chunk-rows", type=int, default=200_000, help="rows per insert (default 200000)")
    p.set_defaults(func=cmd_export)
