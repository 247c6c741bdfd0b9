"""What the CLI's commands against a running service share: the HTTP call, its errors, and the output formats."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_KEY_ENV = "TRACEJUDGE_API_KEY"  # the key commands send to a service that asks for one


def api_headers() -> dict[str, str]:
    """JSON, and the API key from the environment when one is set (never from the command line: argv is
    visible to every user of the machine)."""
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(API_KEY_ENV, "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def format_table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


class ApiError(Exception):
    pass


def error_doc(exc: urllib.error.HTTPError) -> Any:
    try:
        return json.load(exc)
    except ValueError:
        return None


def error_message(doc: Any, reason: str) -> str:
    """The server's `{"error": {"message", "field"}}` as one line; `reason` (the HTTP reason) without one."""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or not error.get("message"):
        return reason
    message, field = str(error["message"]), str(error.get("field") or "")
    return f"{field}: {message}" if field and not message.startswith(f"{field}:") else message


def api_call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = args.api_url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=api_headers())
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": {"message": error_message(error_doc(exc), exc.reason)}}
    except urllib.error.URLError as exc:
        msg = (
            f"cannot reach the tracejudge API at {args.api_url}: {exc.reason} (is `tracejudge run` running?)"
        )
        raise ApiError(msg) from exc


def fail(status: int, doc: Any) -> int:
    print(f"error ({status}): {error_message(doc, f'HTTP {status}')}", file=sys.stderr)
    return 1


def csv_text(columns: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows([[cell(v) for v in row] for row in rows])
    return buf.getvalue()
