"""The `tracejudge` command line.

    tracejudge run [--config FILE] [--data-dir DIR] [--host H] [--otlp-grpc-port N] [--otlp-http-port N]
                   [--api-port N] [--clickhouse-dsn DSN]
    tracejudge sql "SELECT ..." [--api-url URL] [--format table|csv|json]
    tracejudge config check [--config FILE]
    tracejudge migrate [--config FILE] [--data-dir DIR] [--clickhouse-dsn DSN]

chDB allows one process per data directory, so commands that read a running service's data (`sql`) go
through its HTTP API.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dataflow.config import Settings, load_settings
from dataflow.errors import TracejudgeError

DEFAULT_API_URL = "http://127.0.0.1:8080"


def _settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(
        args.config,
        data_dir=getattr(args, "data_dir", None),
        host=getattr(args, "host", None),
        otlp_grpc_port=getattr(args, "otlp_grpc_port", None),
        otlp_http_port=getattr(args, "otlp_http_port", None),
        api_port=getattr(args, "api_port", None),
        clickhouse_dsn=getattr(args, "clickhouse_dsn", None),
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from tracejudge.service import Service

    settings = _settings_from(args)
    _setup_logging(settings.log_level)
    service = Service(settings)
    service.install_signal_handlers()
    try:
        service.start()
    except (TracejudgeError, OSError) as exc:
        logging.getLogger("tracejudge").error("start-up failed: %s", exc)
        return 2
    service.wait()
    return service.stop()


def cmd_migrate(args: argparse.Namespace) -> int:
    from connectors.clickhouse.client import ClickHouse
    from connectors.clickhouse.migrate import apply_retention, migrate

    settings = _settings_from(args)
    _setup_logging(settings.log_level)
    if settings.resolved_dsn.startswith("chdb://"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        ch = ClickHouse(settings.resolved_dsn)
    except TracejudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "(a running tracejudge holds an embedded data directory; it migrates at start)", file=sys.stderr
        )
        return 1
    applied = migrate(ch)
    apply_retention(ch, settings.retention_days)
    ch.close()
    print(
        f"applied {len(applied)} migration(s)"
        + (": " + ", ".join(m.path.name for m in applied) if applied else "")
    )
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    source = str(args.config) if args.config else "defaults and environment"
    print(f"configuration OK ({source})")
    print(f"  data_dir       {settings.data_dir}")
    from connectors.clickhouse.client import redact_dsn

    print(f"  clickhouse     {redact_dsn(settings.resolved_dsn)}")
    print(
        f"  listeners      OTLP/gRPC {settings.host}:{settings.otlp_grpc_port}, OTLP/HTTP "
        f"{settings.host}:{settings.otlp_http_port}, API {settings.host}:{settings.api_port}"
    )
    print(f"  wal            fsync={settings.wal.fsync} max_bytes={settings.wal.max_bytes}")
    return 0


def _format_table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def cmd_sql(args: argparse.Namespace) -> int:
    url = args.api_url.rstrip("/") + "/api/v1/sql"
    req = urllib.request.Request(
        url, data=json.dumps({"query": args.query}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        print(f"error: {message}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"error: cannot reach the tracejudge API at {args.api_url}: {exc.reason}", file=sys.stderr)
        print("(is `tracejudge run` running? pass --api-url)", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(doc["columns"])
        w.writerows([[_cell(v) for v in row] for row in doc["data"]])
        sys.stdout.write(buf.getvalue())
    else:
        print(_format_table(doc["columns"], doc["data"]))
        suffix = " (truncated at the API's row limit)" if doc.get("truncated") else ""
        print(f"({doc['rows']} row{'s' if doc['rows'] != 1 else ''}, {doc['elapsed_ms']:.1f} ms){suffix}")
    return 0


def _add_common(p: argparse.ArgumentParser, server: bool) -> None:
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    p.add_argument(
        "--clickhouse-dsn", help="chdb:///abs/dir or http(s)://host:8123 (default: chDB under the data dir)"
    )
    if server:
        p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--otlp-grpc-port", type=int, help="OTLP/gRPC port (default 4317)")
        p.add_argument("--otlp-http-port", type=int, help="OTLP/HTTP port (default 4318)")
        p.add_argument("--api-port", type=int, help="API port (default 8080)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracejudge", description="Online scoring of LLM traces.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the service")
    _add_common(run, server=True)
    run.set_defaults(func=cmd_run)

    sql = sub.add_parser("sql", help="run a read-only query through a running service")
    sql.add_argument("query", help="one ClickHouse SQL query")
    sql.add_argument("--api-url", default=os.environ.get("TRACEJUDGE_API_URL", DEFAULT_API_URL))
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    sql.set_defaults(func=cmd_sql)

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the configuration and print a summary")
    check.add_argument("--config", type=Path, help="YAML config file")
    check.set_defaults(func=cmd_config_check)

    mig = sub.add_parser("migrate", help="apply ClickHouse migrations (run also does this at start)")
    _add_common(mig, server=False)
    mig.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TracejudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
