"""Following a re-scoring job from the command line (issue 11): `GET /api/v1/jobs/{id}` every half second,
shown as a progress bar (rich) when stdout is a terminal and as a line every few seconds otherwise.

Ctrl-C while following asks "Cancel the job? [y/N]": y posts the cancel and follows the job until it ends; N
(or no answer) leaves it running and says how to follow it again. `follow` returns the command's exit code:
0 when the job succeeded, 1 when it failed or was cancelled, `DETACHED` (130, as for an interrupted command)
when it was left running.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from tracejudge.cli_http import ApiError, api_call, error_message

POLL_S = 0.5
LINE_EVERY_S = 5.0
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
DETACHED = 130


class Exit(Exception):
    """Ends a command with `code`, after printing `message` (if any) to stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code, self.message = code, message


def api(
    args: argparse.Namespace, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)
) -> Any:
    """The API's answer to a call; any other status ends the command (exit 1) with the server's message."""
    status, doc = api_call(args, method, path, body)
    if status not in ok:
        raise Exit(1, f"error ({status}): {error_message(doc, f'HTTP {status}')}")
    return doc


def ask(prompt: str) -> bool:
    """True when the user answers y or yes; no answer (end of input, Ctrl-C) is no."""
    try:
        answer = input(prompt)
    except (EOFError, KeyboardInterrupt):
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def speed(job: dict[str, Any]) -> str:
    return f"{job['rate_per_s']:.1f}/s, ETA {_eta(job['eta_s'])}"


def tallies(job: dict[str, Any]) -> str:
    """Scores, errors, judge calls and why the job waits (what the bar shows on its second line)."""
    c = job["counts"]
    parts = [f"scored {c['scored']}", f"errors {c['errors']}"]
    if c["judge_calls"]:
        parts.append(f"judge calls {c['judge_calls']} (${c['cost_usd']:.4f})")
    if job["paused"]:
        parts.append(f"paused: {job['paused']}")
    return ", ".join(parts)


def progress_line(job: dict[str, Any]) -> str:
    c = job["counts"]
    done = f"{c['processed']}/{c['total'] or '?'} traces"
    return f"job {job['job_id']} {job['state']}: {done}, {speed(job)}, {tallies(job)}"


def summary(job: dict[str, Any]) -> str:
    c = job["counts"]
    line = (
        f"job {job['job_id']} {job['state']}: {c['processed']} traces looked at, {c['matched']} matched "
        f"({c['filtered_out']} filtered out, {c['sampled_out']} sampled out), {c['scored']} scores written, "
        f"{c['errors']} errors, {c['judge_calls']} judge calls (${c['cost_usd']:.4f})"
    )
    shed = ", ".join(f"{reason} {n}" for reason, n in sorted(c["shed"].items()) if n)
    return line + (f"; judge calls not made: {shed}" if shed else "")


def _get(args: argparse.Namespace, job_id: str) -> dict[str, Any]:
    return dict(api(args, "GET", f"/api/v1/jobs/{job_id}"))


def _watch_lines(args: argparse.Namespace, job: dict[str, Any]) -> dict[str, Any]:
    last = time.monotonic()
    print(progress_line(job), flush=True)
    while job["state"] not in FINISHED:
        time.sleep(POLL_S)
        job = _get(args, job["job_id"])
        if time.monotonic() - last >= LINE_EVERY_S:
            print(progress_line(job), flush=True)
            last = time.monotonic()
    return job


class _JobProgress(Progress):
    """A bar line (count, rate, ETA) and a line of tallies under it, which would not fit beside it."""

    tallies = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text("  " + self.tallies, overflow="ellipsis", no_wrap=True)


def _watch_bar(args: argparse.Namespace, job: dict[str, Any]) -> dict[str, Any]:
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
               TextColumn("traces, {task.fields[speed]}"))  # fmt: skip
    with _JobProgress(*columns) as progress:
        task = progress.add_task(f"job {job['job_id'][:8]}", total=None, speed="")
        while True:
            c = job["counts"]
            progress.tallies = tallies(job)
            progress.update(task, completed=c["processed"], total=c["total"] or None, speed=speed(job))
            if job["state"] in FINISHED:
                return job
            time.sleep(POLL_S)
            job = _get(args, job["job_id"])


def _watch(args: argparse.Namespace, job_id: str) -> dict[str, Any]:
    """The job once it ended; losing the API on the way ends the command, saying how to follow it again."""
    try:
        job = _get(args, job_id)
        return _watch_bar(args, job) if sys.stdout.isatty() else _watch_lines(args, job)
    except (Exit, ApiError) as exc:
        message = exc.message if isinstance(exc, Exit) else f"error: {exc}"
        again = f"(the job may still run: tracejudge jobs show {job_id} --follow)"
        raise Exit(1, f"{message}\n{again}") from exc


def _interrupted(args: argparse.Namespace, job_id: str, cancelling: bool) -> bool:
    """After Ctrl-C: True to go on following (the cancel is posted), False to leave the job as it is."""
    print(flush=True)
    if not cancelling and ask("Cancel the job? [y/N] "):
        api(args, "POST", f"/api/v1/jobs/{job_id}/cancel")
        print(f"cancelling job {job_id} (what it scored stays)", flush=True)
        return True
    if cancelling:
        print(f"job {job_id} was asked to cancel; check it with: tracejudge jobs show {job_id}", flush=True)
    else:
        print(
            f"job {job_id} keeps running; follow it with: tracejudge jobs show {job_id} --follow", flush=True
        )
    return False


def follow(args: argparse.Namespace, job_id: str) -> int:
    """Follow the job until it ends (or the user leaves it); print its counts; answer the exit code."""
    cancelling = False
    while True:
        try:
            job = _watch(args, job_id)
            break
        except KeyboardInterrupt:
            if not _interrupted(args, job_id, cancelling):
                return 1 if cancelling else DETACHED
            cancelling = True
    print(summary(job), flush=True)
    if job["last_error"]:
        print(f"last error: {job['last_error']}", file=sys.stderr)
    return 0 if job["state"] == "succeeded" else 1


__all__ = ["DETACHED", "Exit", "api", "ask", "follow", "progress_line", "summary"]
