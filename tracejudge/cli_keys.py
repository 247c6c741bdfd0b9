"""`tracejudge keys create|list|revoke`: API keys, on the data directory or through a running service.

With the service stopped (or a ClickHouse server as the store) the command opens the store itself, as
`tracejudge migrate` does: that is how the first key is made, with no key to show. While the service holds its
embedded data directory, or with `--api-url`, the command goes through `/api/v1/keys` (admin scope: the key in
TRACEJUDGE_API_KEY, or none while authentication is still off). `create` prints the key alone on stdout, once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from connectors.auth.keys import ApiKey, parse_scopes
from dataflow.config import load_settings
from dataflow.errors import TracejudgeError
from tracejudge.cli_http import DEFAULT_API_URL, api_call, fail, format_table

_COLUMNS = ["key_id", "name", "scopes", "projects", "created_at", "revoked_at"]


def _direct(args: argparse.Namespace) -> Any:
    """A key store on the configured ClickHouse, migrated; None when it is held by a running service."""
    from connectors.clickhouse.client import ClickHouse
    from connectors.clickhouse.keys_store import KeyStore
    from connectors.clickhouse.migrate import migrate

    if args.api_url:
        return None
    settings = load_settings(args.config, data_dir=args.data_dir, clickhouse_dsn=args.clickhouse_dsn)
    if settings.resolved_dsn.startswith("chdb://") and not settings.data_dir.exists():
        settings.data_dir.mkdir(parents=True)
    try:
        ch = ClickHouse(settings.resolved_dsn)
        migrate(ch)
    except TracejudgeError:
        return None  # the embedded directory is a running service's: ask it
    return KeyStore(ch)


def _api_url(args: argparse.Namespace) -> argparse.Namespace:
    url = args.api_url or os.environ.get("TRACEJUDGE_API_URL", DEFAULT_API_URL)
    return argparse.Namespace(api_url=url, timeout=args.timeout)


def _created(doc: dict[str, Any]) -> int:
    print(doc["key"])
    projects = ", ".join(doc["projects"]) or "every project"
    print(
        f"created key {doc['key_id']} ({doc['name']}: {', '.join(doc['scopes'])}; {projects}). "
        "It is shown only this once: store it now.",
        file=sys.stderr,
    )
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    projects = frozenset(args.project or [])
    store = _direct(args)
    if store is not None:
        key, token = store.create(args.name, scopes, projects)
        return _created({"key": token, **key.view()})
    body = {"name": args.name, "scopes": sorted(scopes), "projects": sorted(projects)}
    status, doc = api_call(_api_url(args), "POST", "/api/v1/keys", body)
    return _created(doc) if status == 201 else fail(status, doc)


def cmd_list(args: argparse.Namespace) -> int:
    store = _direct(args)
    if store is not None:
        keys: list[dict[str, Any]] = [k.view() for k in store.load()]
    else:
        status, doc = api_call(_api_url(args), "GET", "/api/v1/keys")
        if status != 200:
            return fail(status, doc)
        keys = doc["keys"]
    if args.format == "json":
        print(json.dumps(keys, indent=2))
        return 0
    rows = [[k[c] if not isinstance(k[c], list) else ",".join(k[c]) for c in _COLUMNS] for k in keys]
    print(format_table(_COLUMNS, rows))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    store = _direct(args)
    if store is not None:
        key: ApiKey | None = store.revoke(args.key_id)
        if key is None:
            print(f"error: no key {args.key_id}", file=sys.stderr)
            return 1
    else:
        status, doc = api_call(_api_url(args), "DELETE", f"/api/v1/keys/{args.key_id}")
        if status != 200:
            return fail(status, doc)
    print(f"revoked key {args.key_id} (every process refuses it within auth.reload_interval_s)")
    return 0


def add_parsers(sub: Any) -> None:
    """Add `keys create|list|revoke` to the CLI's subcommands."""
    keys = sub.add_parser("keys", help="API keys (on the data directory, or through a running service)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--scopes", required=True, help="comma-separated: ingest,read,write,admin")
    create.add_argument("--project", action="append", help="limit the key to this project (repeatable)")
    create.set_defaults(func=cmd_create)
    listing = keys_sub.add_parser("list", help="every key (never a secret)")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(func=cmd_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_revoke)
    for p in (create, listing, revoke):
        p.add_argument("--config", type=Path, help="YAML config file")
        p.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
        p.add_argument("--clickhouse-dsn", help="as for `run`")
        p.add_argument(
            "--api-url", help="go through this running service's API instead of the data directory"
        )
        p.add_argument("--timeout", type=float, default=60.0)
