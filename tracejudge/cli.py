"""The `tracejudge` command line.

    tracejudge run [--config FILE] [--data-dir DIR] [--host H] [--otlp-grpc-port N] [--otlp-http-port N]
                   [--api-port N] [--clickhouse-dsn DSN]
    tracejudge sql "SELECT ..." [--api-url URL] [--format table|csv|json]
    tracejudge config check [--config FILE] [--online [--data-dir DIR] [--clickhouse-dsn DSN]]
                            [--allow-missing-keys]
    tracejudge migrate [--config FILE] [--data-dir DIR] [--clickhouse-dsn DSN]
    tracejudge rules list|show ID|apply -f FILE|test -f FILE [--api-url URL]
    tracejudge scores list [--trace-id T] [--name N] [--since T] [--format table|csv|json] [--api-url URL]
    tracejudge score --trace-id T [--span-id S] --name N --value V [--data-type D] [--comment C]
    tracejudge rewind RULE --since T [--until T] [--dry-run] [--yes]
    tracejudge backfill RULE [--last N | --since T [--until T]] [--dry-run] [--yes]
    tracejudge score-traces (--rule RULE | --scorers-file F) TRACE_ID... [--dry-run] [--yes]
    tracejudge jobs list [--rule RULE] [--state S] | jobs show ID [--follow] | jobs cancel ID
    tracejudge demo [--api-url URL] [--seed N]
    tracejudge export --to DSN [--config FILE] [--data-dir DIR] [--chunk-rows N]
    tracejudge keys create --name N --scopes ingest,read,write,admin [--project P ...] | keys list | keys revoke ID

Commands that call a running service send the key in TRACEJUDGE_API_KEY when the service asks for one.

chDB allows one process per data directory, so commands that read a running service's data (`sql`) go
through its HTTP API.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from dataflow.config import Settings, load_settings
from dataflow.errors import TracejudgeError
from tracejudge import cli_demo, cli_export, cli_jobs, cli_keys, cli_scores
from tracejudge.cli_http import (
    DEFAULT_API_URL,
    ApiError,
    api_call,
    api_headers,
    csv_text,
    error_doc,
    error_message,
    fail,
    format_table,
)


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


# The HTTP clients under the LLM SDKs log a line per request at INFO ("HTTP Request: POST ..."): volume, which
# the judge metrics count; their warnings still show. httpx2 is what current openai/anthropic SDKs use.
QUIET_LOGGERS = ("httpx", "httpx2")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from tracejudge.service import Service

    settings = _settings_from(args)
    if args.insecure:
        settings = settings.model_copy(update={"auth": settings.auth.model_copy(update={"insecure": True})})
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
    from connectors.clickhouse.cluster_ddl import Layout
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
    layout = Layout.of(settings.clickhouse)
    applied = migrate(ch, layout=layout)
    apply_retention(ch, settings.retention_days, layout)
    ch.close()
    print(
        f"applied {len(applied)} migration(s)"
        + (": " + ", ".join(m.path.name for m in applied) if applied else "")
    )
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate the configuration; name every connection whose key is not in the environment.

    Exit 1 when the configuration is invalid, a connection's key is missing (a warning, exit 0, with
    --allow-missing-keys) or --online could not read the connections table.
    """
    from connectors.clickhouse.client import redact_dsn
    from tracejudge.config_check import check_connections, check_tls

    settings = _settings_from(args)
    report = check_connections(settings, online=args.online)
    report.errors.extend(check_tls(settings.tls))
    missing = report.missing_keys
    failed = bool(report.errors) or (bool(missing) and not args.allow_missing_keys)
    source = str(args.config) if args.config else "defaults and environment"
    print(f"configuration {'has problems' if failed else 'OK'} ({source})")
    print(f"  data_dir       {settings.data_dir}")
    print(f"  clickhouse     {redact_dsn(settings.resolved_dsn)}")
    print(
        f"  listeners      OTLP/gRPC {settings.host}:{settings.otlp_grpc_port}, OTLP/HTTP "
        f"{settings.host}:{settings.otlp_http_port}, API {settings.host}:{settings.api_port}"
    )
    print(f"  tls            {settings.tls.cert_file or 'off'}")
    print(f"  wal            fsync={settings.wal.fsync} max_bytes={settings.wal.max_bytes}")
    print(f"  connections    {report.summary(args.online)}")
    level = "warning" if args.allow_missing_keys else "error"
    for conn in missing:
        print(f"{level}: {conn.problem} [{conn.source}]", file=sys.stderr)
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_sql(args: argparse.Namespace) -> int:
    url = args.api_url.rstrip("/") + "/api/v1/sql"
    req = urllib.request.Request(url, data=json.dumps({"query": args.query}).encode(), headers=api_headers())
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as exc:
        print(f"error: {error_message(error_doc(exc), exc.reason)}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"error: cannot reach the tracejudge API at {args.api_url}: {exc.reason}", file=sys.stderr)
        print("(is `tracejudge run` running? pass --api-url)", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    elif args.format == "csv":
        sys.stdout.write(csv_text(doc["columns"], doc["data"]))
    else:
        print(format_table(doc["columns"], doc["data"]))
        suffix = " (truncated at the API's row limit)" if doc.get("truncated") else ""
        print(f"({doc['rows']} row{'s' if doc['rows'] != 1 else ''}, {doc['elapsed_ms']:.1f} ms){suffix}")
    return 0


def cmd_rules_list(args: argparse.Namespace) -> int:
    path = "/api/v1/rules" + (f"?project={urllib.parse.quote(args.project)}" if args.project else "")
    status, doc = api_call(args, "GET", path)
    if status != 200:
        return fail(status, doc)
    rows = [
        [
            r["id"],
            r["project"],
            r["name"],
            r["scope"],
            r["sampling_rate"],
            r["enabled"],
            r["version"],
            ", ".join(s["name"] for s in r["scorers"]),
        ]
        for r in doc["rules"]
    ]
    print(format_table(["id", "project", "name", "scope", "sampling", "enabled", "version", "scorers"], rows))
    return 0


def cmd_rules_show(args: argparse.Namespace) -> int:
    status, doc = api_call(args, "GET", f"/api/v1/rules/{args.rule_id}")
    if status != 200:
        return fail(status, doc)
    _, st = api_call(args, "GET", f"/api/v1/rules/{args.rule_id}/status")
    print(json.dumps({"rule": doc, "status": st}, indent=2, ensure_ascii=False))
    return 0


def _rules_from_file(path: Path) -> list[Any]:
    from dataflow.rules.files import read_rules_file, validate_rules

    specs = validate_rules(read_rules_file(path), path)
    return [s.model_dump(mode="json", exclude={"id", "version"}) for s in specs]


def cmd_rules_apply(args: argparse.Namespace) -> int:
    failed = 0
    for rule in _rules_from_file(args.file):
        status, doc = api_call(args, "PUT", "/api/v1/rules", rule)
        if status not in (200, 201):
            failed += 1
            fail(status, doc)
            continue
        action = "created" if status == 201 else "applied"
        print(f"{action}: {doc['project']}/{doc['name']} (id {doc['id']}, version {doc['version']})")
    return 1 if failed else 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    rules = _rules_from_file(args.file)
    if args.name:
        rules = [r for r in rules if r["name"] == args.name]
        if not rules:
            print(f"error: no rule named {args.name!r} in {args.file}", file=sys.stderr)
            return 1
    for rule in rules:
        status, doc = api_call(
            args, "POST", "/api/v1/rules/test", {"rule": rule, "window": {"limit": args.limit}}
        )
        if status != 200:
            return fail(status, doc)
        if args.format == "json":
            print(json.dumps(doc, indent=2, ensure_ascii=False))
            continue
        s = doc["summary"]
        print(f"rule {rule['project']}/{rule['name']}: {s['traces']} traces, {s['scored']} would be scored, "
              f"{s['sampled_out']} sampled out, {s['filtered_out']} filtered out, {s['not_targeted']} not targeted")  # fmt: skip
        rows = []
        for t in doc["traces"]:
            scores = "; ".join(
                f"{x['name']}={x['value'] if x['value'] is not None else x['string_value']}"
                + (f" ERROR {x['error']}" if x["error"] else "")
                for x in t["scores"]
            )
            rows.append([t["trace_id"], t["root_name"], t["reason"], "yes" if t["sampled"] else "no", scores])
        print(format_table(["trace", "root", "decision", "sampled", "scores"], rows))
    return 0


def _add_common(p: argparse.ArgumentParser, server: bool) -> None:
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    p.add_argument(
        "--clickhouse-dsn", help="chdb:///abs/dir or http(s)://host:8123 (default: chDB under the data dir)"
    )
    if server:
        p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        p.add_argument(
            "--insecure",
            action="store_true",
            help="listen on a non-loopback address even with no API key (anyone who reaches it may do anything)",
        )
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
    check.add_argument("--data-dir", type=Path, help="as for `run` (only read with --online)")
    check.add_argument("--clickhouse-dsn", help="as for `run` (only read with --online)")
    check.add_argument(
        "--online", action="store_true", help="also check the connections stored in ClickHouse"
    )
    check.add_argument(
        "--allow-missing-keys",
        action="store_true",
        help="report a connection whose api_key_env variable is not set as a warning (exit 0)",
    )
    check.set_defaults(func=cmd_config_check)

    rules = sub.add_parser("rules", help="scoring rules, through a running service")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    for name, func, helptext in (
        ("list", cmd_rules_list, "list rules"),
        ("show", cmd_rules_show, "one rule and its status"),
        ("apply", cmd_rules_apply, "create or update the rules of a YAML file by name"),
        ("test", cmd_rules_test, "run the rules of a YAML file over stored traces, writing nothing"),
    ):
        p = rules_sub.add_parser(name, help=helptext)
        p.add_argument("--api-url", default=os.environ.get("TRACEJUDGE_API_URL", DEFAULT_API_URL))
        p.add_argument("--timeout", type=float, default=60.0)
        p.set_defaults(func=func)
        if name == "list":
            p.add_argument("--project")
        if name == "show":
            p.add_argument("rule_id")
        if name in ("apply", "test"):
            p.add_argument(
                "-f", "--file", type=Path, required=True, help="rules YAML (a list under `rules:`)"
            )
        if name == "test":
            p.add_argument("--name", help="only this rule of the file")
            p.add_argument("--limit", type=int, default=50, help="how many recent traces (default 50)")
            p.add_argument("--format", choices=["table", "json"], default="table")

    cli_scores.add_parsers(sub)
    cli_jobs.add_parsers(sub)
    cli_demo.add_parsers(sub)
    cli_export.add_parsers(sub)
    cli_keys.add_parsers(sub)

    mig = sub.add_parser("migrate", help="apply ClickHouse migrations (run also does this at start)")
    _add_common(mig, server=False)
    mig.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TracejudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
