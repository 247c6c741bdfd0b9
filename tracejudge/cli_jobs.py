"""`tracejudge rewind|backfill|score-traces` and `tracejudge jobs list|show|cancel`: re-score stored traces
through a running service's jobs API (issue 11).

    tracejudge rewind RULE --since T [--until T] [--project P] [--dry-run] [--yes] [--even-if-empty]
    tracejudge backfill RULE [--last N | --since T [--until T]] [--project P] [--dry-run] [--yes] [--even-if-empty]
    tracejudge score-traces (--rule RULE | --scorers-file F) [--scope trace|span] [--span-id S]... TRACE_ID...
    tracejudge jobs list [--rule RULE] [--state S] [--format table|csv|json]
    tracejudge jobs show ID [--follow] | jobs cancel ID

RULE is a rule id or name (`--project` when the name exists in several projects). T is RFC 3339, Unix seconds,
or an age (`30m`, `2h`, `7d`: that long before now). A run first asks the API for its dry run and prints it; one
that costs money (judge calls, or an estimated cost) asks "Start? [y/N]" unless `--yes`; then the job is
followed (tracejudge/cli_follow.py). A dry run that finds no trace starts nothing ("nothing to do") unless
`--even-if-empty`. Exit 0: the job succeeded or the dry run was shown; 1: it failed, was
cancelled or refused, or the API answered an error; 2: a usage error; 130: interrupted (a job it started is
left running).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracejudge.cli_follow import DETACHED, Exit, api, ask, follow, progress_line, summary
from tracejudge.cli_http import DEFAULT_API_URL, csv_text, format_table

_AGE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
_COLUMNS = ["job_id", "kind", "rule_id", "project", "state", "processed", "total", "scored", "errors",
            "judge_calls", "cost_usd", "created_at", "finished_at"]  # fmt: skip


def when(text: str, now: dt.datetime | None = None) -> str:
    """An age such as `2h` as the RFC 3339 time that long ago; anything else as given (the API checks it)."""
    age = _AGE.fullmatch(text.strip())
    if age is None:
        return text
    then = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(**{_UNITS[age[2]]: int(age[1])})
    return then.isoformat(timespec="seconds").replace("+00:00", "Z")


def resolve_rule(args: argparse.Namespace, ref: str) -> dict[str, Any]:
    """The rule whose id or name is `ref` (in `--project` if given); a name in several projects is exit 2."""
    path = "/api/v1/rules" + (f"?project={urllib.parse.quote(args.project)}" if args.project else "")
    rules = api(args, "GET", path)["rules"]
    found = [r for r in rules if r["id"] == ref] or [r for r in rules if r["name"] == ref]
    if not found:
        where = f" in project {args.project!r}" if args.project else ""
        raise Exit(1, f"error: no rule with the id or name {ref!r}{where}")
    if len(found) > 1:
        projects = ", ".join(sorted(r["project"] for r in found))
        raise Exit(2, f"error: rules named {ref!r} exist in several projects ({projects}): pass --project")
    return dict(found[0])


def _estimate(dry: dict[str, Any]) -> str:
    rows = [["traces", dry["traces"]], ["spans", dry["spans"]], ["judge calls", dry["judge_calls"]],
            ["estimated input tokens", dry["estimated_input_tokens"]],
            ["estimated cost (USD)", f"{dry['estimated_cost_usd']:.4f}"]]  # fmt: skip
    return "\n".join(f"  {name:<24}{value}" for name, value in rows)


def _confirm(dry: dict[str, Any]) -> None:
    """Ask before a run that costs money; without a terminal to ask on, refuse (exit 1)."""
    if not dry["judge_calls"] and dry["estimated_cost_usd"] <= 0:
        return
    cost = f"{dry['judge_calls']} judge calls, estimated ${dry['estimated_cost_usd']:.4f}"
    if not sys.stdin.isatty():
        raise Exit(1, f"error: this run makes {cost}; not started: pass --yes to start it without asking")
    if not ask("Start? [y/N] "):
        raise Exit(1, "not started")


def start(args: argparse.Namespace, path: str, body: dict[str, Any], what: str) -> int:
    """Print the dry run of `POST path`, ask if it costs money, start the job and follow it."""
    dry = api(args, "POST", path, {**body, "dry_run": True})
    print(f"dry run: {what}\n{_estimate(dry)}", flush=True)
    if not dry["traces"] and not args.even_if_empty:
        print("nothing to do: no stored trace is covered" + ("" if args.dry_run else "; no job started"))
        return 0
    if args.dry_run:
        return 0
    if not args.yes:
        _confirm(dry)
    job_id = api(args, "POST", path, body, ok=(202,))["job_id"]
    print(f"started job {job_id}", flush=True)
    return follow(args, job_id)


def _rule_text(rule: dict[str, Any]) -> str:
    return f"rule {rule['project']}/{rule['name']} (id {rule['id']}, version {rule['version']})"


def cmd_rewind(args: argparse.Namespace) -> int:
    rule = resolve_rule(args, args.rule)
    body = {"since": when(args.since), **({"until": when(args.until)} if args.until else {})}
    return start(args, f"/api/v1/rules/{rule['id']}/rewind", body, f"rewind {_rule_text(rule)}")


def cmd_backfill(args: argparse.Namespace) -> int:
    if args.until and not args.since:
        raise Exit(2, "error: --until goes with --since (a window); --last counts back from now")
    rule = resolve_rule(args, args.rule)
    if args.since:
        body: dict[str, Any] = {
            "since": when(args.since),
            **({"until": when(args.until)} if args.until else {}),
        }
    else:
        body = {"last": args.last} if args.last else {}
    return start(args, f"/api/v1/rules/{rule['id']}/backfill", body, f"backfill {_rule_text(rule)}")


def _scorers(path: Path) -> list[Any]:
    """Scorer objects from a JSON file: a list, or an object with a `scorers` list."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Exit(2, f"error: --scorers-file {path}: {exc}") from exc
    scorers = doc.get("scorers") if isinstance(doc, dict) else doc
    if not isinstance(scorers, list) or not scorers:
        raise Exit(2, f"error: --scorers-file {path}: expected a non-empty list of scorer objects")
    return scorers


def cmd_score_traces(args: argparse.Namespace) -> int:
    scope = args.scope or ("span" if args.span_id else None)
    if args.span_id and scope != "span":
        raise Exit(2, "error: --span-id needs --scope span")
    body: dict[str, Any] = {"trace_ids": args.trace_ids, "span_ids": args.span_id or []}
    if scope:
        body["scope"] = scope
    if args.rule:
        rule = resolve_rule(args, args.rule)
        body["rule_id"], what = rule["id"], _rule_text(rule)
    else:
        body["scorers"], what = _scorers(args.scorers_file), f"scorers of {args.scorers_file}"
        if args.project:
            body["project"] = args.project
    return start(args, "/api/v1/score-traces", body, f"score {len(args.trace_ids)} traces with {what}")


def cmd_jobs_list(args: argparse.Namespace) -> int:
    query = {"rule_id": resolve_rule(args, args.rule)["id"] if args.rule else "", "state": args.state or "",
             "limit": args.limit}  # fmt: skip
    doc = api(args, "GET", "/api/v1/jobs?" + urllib.parse.urlencode({k: v for k, v in query.items() if v}))
    if args.format == "json":
        print(json.dumps(doc["jobs"], indent=2, ensure_ascii=False))
        return 0
    rows = [[j.get(c, j["counts"].get(c)) for c in _COLUMNS] for j in doc["jobs"]]
    if args.format == "csv":
        sys.stdout.write(csv_text(_COLUMNS, rows))
        return 0
    print(format_table(_COLUMNS, rows))
    print(f"({doc['count']} job{'s' if doc['count'] != 1 else ''})")
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    if args.follow:
        return follow(args, args.job_id)
    job = api(args, "GET", f"/api/v1/jobs/{args.job_id}")
    if args.format == "json":
        print(json.dumps(job, indent=2, ensure_ascii=False))
        return 0
    print(
        f"{job['kind']} of {job['rule_id']} (version {job['rule_version']}), project {job['project'] or '-'}"
    )
    print(
        f"created {job['created_at']}, started {job['started_at'] or '-'}, finished {job['finished_at'] or '-'}"
    )
    print(summary(job) if job["state"] in ("succeeded", "failed", "cancelled") else progress_line(job))
    if job["last_error"]:
        print(f"last error: {job['last_error']}")
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    job = api(args, "POST", f"/api/v1/jobs/{args.job_id}/cancel")
    ended = job["state"] in ("succeeded", "failed", "cancelled")
    print(
        f"job {job['job_id']} {'had ended: ' + job['state'] if ended else 'cancelling (what it scored stays)'}"
    )
    return 0


def _exits(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except Exit as stop:
            if stop.message:
                print(stop.message, file=sys.stderr)
            return stop.code
        except KeyboardInterrupt:  # before a job was started, or while asking about one
            print("\ninterrupted", file=sys.stderr)
            return DETACHED

    return run


def _command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], helptext: str) -> Any:
    p = sub.add_parser(name, help=helptext)
    p.add_argument("--api-url", default=os.environ.get("TRACEJUDGE_API_URL", DEFAULT_API_URL))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer")
    p.set_defaults(func=_exits(func))
    return p


def _run_options(p: Any) -> None:
    p.add_argument("--project", help="the rule's project, when its name exists in several")
    p.add_argument("--dry-run", action="store_true", help="print the estimate and stop")
    p.add_argument("--yes", "-y", action="store_true", help="start a run that costs money without asking")
    p.add_argument(
        "--even-if-empty", action="store_true", help="start a job even when the dry run finds no trace"
    )


def add_parsers(sub: Any) -> None:
    """Add `rewind`, `backfill`, `score-traces` and `jobs list|show|cancel` to the CLI's subcommands."""
    age = "RFC 3339, Unix seconds, or an age such as 30m, 2h, 7d"
    rewind = _command(sub, "rewind", cmd_rewind, "re-score a rule's traces that started in a window")
    rewind.add_argument("rule", help="rule id or name")
    rewind.add_argument("--since", required=True, help=age)
    rewind.add_argument("--until", help=f"{age} (default: now)")
    _run_options(rewind)

    backfill = _command(sub, "backfill", cmd_backfill, "score a rule's past traces (default the last 50)")
    backfill.add_argument("rule", help="rule id or name")
    window = backfill.add_mutually_exclusive_group()
    window.add_argument("--last", type=int, help="the N most recent matching traces (default 50)")
    window.add_argument("--since", help=f"{age}: a window instead of --last")
    backfill.add_argument("--until", help=f"{age} (with --since; default: now)")
    _run_options(backfill)

    score = _command(
        sub, "score-traces", cmd_score_traces, "score the listed traces now (no filter, no sampling)"
    )
    score.add_argument("trace_ids", nargs="+", metavar="TRACE_ID")
    scorers = score.add_mutually_exclusive_group(required=True)
    scorers.add_argument("--rule", help="use this rule's scorers (id or name); the scores are the rule's")
    scorers.add_argument("--scorers-file", type=Path, help="JSON list of scorer objects, for a manual run")
    score.add_argument("--scope", choices=["trace", "span"], help="default: the rule's, else trace")
    score.add_argument("--span-id", action="append", help="span scope: a span to score (repeat for more)")
    _run_options(score)

    jobs = sub.add_parser("jobs", help="re-scoring jobs, through a running service")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = _command(jobs_sub, "list", cmd_jobs_list, "jobs, newest first")
    listing.add_argument("--rule", help="only this rule's jobs (id or name)")
    listing.add_argument("--project", help="the rule's project, when its name exists in several")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--limit", type=int, default=100, help="most jobs to show (1..1000, default 100)")
    listing.add_argument("--format", choices=["table", "csv", "json"], default="table")
    show = _command(jobs_sub, "show", cmd_jobs_show, "one job's state and counts")
    show.add_argument("job_id")
    show.add_argument(
        "--follow", action="store_true", help="follow it until it ends (Ctrl-C: cancel or leave)"
    )
    show.add_argument("--format", choices=["text", "json"], default="text")
    cancel = _command(jobs_sub, "cancel", cmd_jobs_cancel, "cancel a job (what it scored stays)")
    cancel.add_argument("job_id")
