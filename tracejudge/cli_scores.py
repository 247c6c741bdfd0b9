"""`tracejudge scores list` and `tracejudge score`: read and post scores through a running service's API.

    tracejudge scores list [--trace-id T] [--name N] [--since T] [--project P] [--source S] [--limit N]
                           [--format table|csv|json] [--api-url URL]
    tracejudge score --trace-id T [--span-id S] --name N --value V [--data-type D] [--comment C]
                     [--project P] [--source API|ANNOTATION] [--score-id ID] [--api-url URL]

`--value` is read by `--data-type`; without one, `true`/`false` is a BOOLEAN, a number a NUMERIC and anything
else a CATEGORICAL label (the API's inference, applied to the text).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from typing import Any

from tracejudge.cli_http import DEFAULT_API_URL, api_call, csv_text, fail, format_table
from tracejudge_client.validation import DATA_TYPES, SOURCES

_COLUMNS = [
    "timestamp",
    "score_id",
    "trace_id",
    "observation_id",
    "name",
    "value",
    "data_type",
    "source",
    "comment",
]


def _row(score: dict[str, Any]) -> list[Any]:
    value = score["value"] if score["data_type"] != "CATEGORICAL" else score["string_value"]
    if score["data_type"] == "BOOLEAN" and score["passed"] is not None:
        value = str(score["passed"]).lower()
    return [score[c] if c != "value" else value for c in _COLUMNS]


def cmd_scores_list(args: argparse.Namespace) -> int:
    query = {
        "trace_id": args.trace_id,
        "name": args.name,
        "since": args.since,
        "project": args.project,
        "source": args.source,
        "limit": args.limit,
    }
    params = urllib.parse.urlencode({k: v for k, v in query.items() if v})
    status, doc = api_call(args, "GET", f"/api/v1/scores?{params}")
    if status != 200:
        return fail(status, doc)
    rows = [_row(s) for s in doc["scores"]]
    if args.format == "json":
        print(json.dumps(doc["scores"], indent=2, ensure_ascii=False))
    elif args.format == "csv":
        sys.stdout.write(csv_text(_COLUMNS, rows))
    else:
        print(format_table(_COLUMNS, rows))
        more = " (more: raise --limit or use the API's cursor)" if doc["next_cursor"] else ""
        print(f"({doc['count']} score{'s' if doc['count'] != 1 else ''}){more}")
    return 0


def parse_value(text: str, data_type: str | None) -> Any:
    """The JSON value `--value` stands for (the API checks it against the data type)."""
    lowered = text.strip().lower()
    if data_type == "CATEGORICAL":
        return text
    if data_type in (None, "BOOLEAN") and lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in lowered else number


def cmd_score(args: argparse.Namespace) -> int:
    fields = {
        "name": args.name,
        "value": parse_value(args.value, args.data_type),
        "trace_id": args.trace_id,
        "observation_id": args.span_id,
        "data_type": args.data_type,
        "comment": args.comment,
        "project": args.project,
        "source": args.source,
        "score_id": args.score_id,
    }
    status, doc = api_call(args, "POST", "/api/v1/scores", {k: v for k, v in fields.items() if v is not None})
    if status != 201:
        return fail(status, doc)
    print(f"stored score {doc['score_ids'][0]}")
    return 0


def _api_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", default=os.environ.get("TRACEJUDGE_API_URL", DEFAULT_API_URL))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")


def add_parsers(sub: Any) -> None:
    """Add `scores list` and `score` to the CLI's subcommands."""
    scores = sub.add_parser("scores", help="scores, through a running service")
    scores_sub = scores.add_subparsers(dest="scores_command", required=True)
    listing = scores_sub.add_parser("list", help="scores, newest first")
    listing.add_argument("--trace-id", help="only this trace's scores")
    listing.add_argument("--name", help="only scores of this name")
    listing.add_argument("--since", help="ISO 8601 time or Unix seconds")
    listing.add_argument("--project", help="only this project")
    listing.add_argument("--source", help="only EVAL (rules), API or ANNOTATION")
    listing.add_argument("--limit", type=int, default=100, help="most scores to show (1..1000, default 100)")
    listing.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _api_options(listing)
    listing.set_defaults(func=cmd_scores_list)

    score = sub.add_parser("score", help="post one score to a trace or span")
    score.add_argument("--trace-id", required=True, help="the trace (32 hex digits)")
    score.add_argument("--span-id", help="the span (16 hex digits); without it the score is the trace's")
    score.add_argument("--name", required=True)
    score.add_argument("--value", required=True, help="a number, true/false, or a category label")
    score.add_argument("--data-type", choices=DATA_TYPES, help="default: inferred from the value")
    score.add_argument("--comment")
    score.add_argument("--project", help="default: the trace's project, else `default`")
    score.add_argument("--source", choices=SOURCES, help="API (default) or ANNOTATION (a person's label)")
    score.add_argument("--score-id", help="posting the same id again replaces the score")
    _api_options(score)
    score.set_defaults(func=cmd_score)
