"""Where a rewind's time goes (``python -m bench.rewind_profile --data-dir DIR``), in-process, on the chDB data
of a stopped service (e.g. ``bench/rewind.py --keep-data``: its ``work_dir``/data).

The job runner's page loop (``dataflow/jobs/runner.py``) taken apart, with the same functions, each stage timed
(wall and this thread's CPU) over every page of a rewind of ``bench/rewind.py``'s rule over the stored project:

``plan``       the planning query (``JobTraces.window``, without text lengths as a job plans), once for the job;
``fetch_sql``  the span read as Arrow, one query a page: each trace's root alone (``roots_for_traces.sql``, what
               ``JobTraces.roots`` runs for a rule whose scorers read only the root), or with ``--all-spans``
               every span (``spans_for_traces.sql``, ``JobTraces.fetch``: the path of other rules);
``spans``      Python ``Span``\\ s from the Arrow batches (``spans_from_batch``), grouped by trace;
``traces``     ``Trace``\\ s of them (``replayed``; ``root_tasks`` for roots alone);
``evaluate``   the rule's decisions (``rule_tasks``: ``evaluate_batch``; none for roots alone: the plan decided);
``scorers``    the code scorers (``score_tasks`` without judges);
``to_arrow``   the score rows as the Arrow table the score insert sends (``scores_to_arrow``);
``insert``     the score insert (``ScoreWriter.write``, which makes that table again);
``checkpoint`` the job row saved after the page (``JobStore.save``).

``--cprofile N`` also prints the N functions with the most cumulative time of the page loop.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import fmt, markdown_table
from bench.rewind import FILTER, SCORERS, STORED
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.job_traces import JobTraces
from connectors.clickhouse.jobs_store import JobStore
from connectors.clickhouse.migrate import SQL_DIR
from connectors.clickhouse.replay import ROOTS_FOR_TRACES
from connectors.clickhouse.score_sink import ScoreWriter
from dataflow.config import SinkConfig
from dataflow.jobs.model import Candidate, Job, JobKind, Progress
from dataflow.jobs.scoring import planned, reads_root_only, replayed, root_tasks, rule_tasks, score_tasks
from dataflow.model import Span, scores_to_arrow
from dataflow.rules.engine import EvalTask
from dataflow.rules.model import CompiledRule, compile_rule, parse_rule
from dataflow.windowing.step import spans_from_batch

SPANS_SQL = (SQL_DIR / "queries" / "spans_for_traces.sql").read_text(encoding="utf-8")
STAGES = ("plan", "fetch_sql", "spans", "traces", "evaluate", "scorers", "to_arrow", "insert", "checkpoint")


class Clock:
    """Wall and thread-CPU seconds by stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.thread_time()
        yield
        self.wall[stage] += time.perf_counter() - w
        self.cpu[stage] += time.thread_time() - c


def _spans_by_trace(batches: Any) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = defaultdict(list)
    for span in spans_from_batch(batches):
        out[span.trace_id].append(span)
    return out


def _root_tasks(
    ch: ClickHouse, rule: CompiledRule, chosen: list[Candidate], clock: Clock
) -> tuple[list[EvalTask], dict[str, int]]:
    bounds = {
        "project": rule.spec.project,
        "lo": min(c.root_ns for c in chosen),
        "hi": max(c.root_ns for c in chosen),
    }
    with clock("fetch_sql"):
        table = ch.query_arrow(ROOTS_FOR_TRACES, {"trace_ids": [c.trace_id for c in chosen], **bounds})
    with clock("spans"):
        roots = {s.trace_id: s for s in spans_from_batch(table, None, frozenset(), frozenset())}
    with clock("traces"):
        tasks = root_tasks(chosen, roots, rule)
    return tasks, {c.trace_id: c.start_ns for c in chosen}


def _all_span_tasks(
    ch: ClickHouse, rule: CompiledRule, wanted: list[str], progress: Progress, clock: Clock
) -> list[EvalTask]:
    with clock("fetch_sql"):
        table = ch.query_arrow(SPANS_SQL, {"trace_ids": wanted})
    with clock("spans"):
        spans = _spans_by_trace(table)
    with clock("traces"):
        traces = [replayed(t, spans[t]) for t in wanted if spans.get(t)]
    with clock("evaluate"):
        return rule_tasks(traces, rule, progress)


def walk(ch: ClickHouse, rule: CompiledRule, args: argparse.Namespace, clock: Clock) -> dict[str, int]:
    """The page loop of a rewind of ``rule`` over every stored trace (the first ``--pages``); counts."""
    with clock("plan"):
        plan = JobTraces(ch).window(rule, 0, time.time_ns(), chars=False)
    page_traces = args.page_traces
    roots_only = reads_root_only(rule) and not args.all_spans
    if args.pages:
        plan = plan[: args.pages * page_traces]
    writer, store = ScoreWriter(ch, SinkConfig(), threading.Event()), JobStore(ch)
    job = Job("profile", JobKind.REWIND, rule.spec.id, rule.spec.version, rule.spec.project, {})
    progress, rows_written, pages = Progress(total=len(plan)), 0, 0
    for i in range(0, len(plan), page_traces):
        page = plan[i : i + page_traces]
        chosen = planned(page, rule, progress)
        if roots_only:
            tasks, starts = _root_tasks(ch, rule, chosen, clock)
        else:
            tasks, starts = _all_span_tasks(ch, rule, [c.trace_id for c in chosen], progress, clock), {}
        progress.matched += len(tasks)
        with clock("scorers"):
            result = score_tasks(tasks, None, progress, threading.Event(), starts=starts)
        with clock("to_arrow"):
            scores_to_arrow(result.rows)
        with clock("insert"):
            writer.write(result.rows)
        progress.processed += len(page)
        with clock("checkpoint"):
            store.save(job.with_(progress=progress))
        rows_written += len(result.rows)
        pages += 1
    return {"traces": len(plan), "pages": pages, "matched": progress.matched, "score_rows": rows_written}


def render(counts: dict[str, int], clock: Clock, wall: float) -> str:
    total = sum(clock.wall.values()) or 1.0
    pages = max(counts["pages"], 1)
    rows = [[s, fmt(clock.wall[s], ".2f"), f"{clock.wall[s] / total:.0%}", fmt(clock.cpu[s], ".2f"),
             fmt(clock.wall[s] / pages * 1000, ".1f")] for s in STAGES]  # fmt: skip
    head = (f"{counts['traces']:,} traces in {pages} pages, {counts['matched']:,} matched, "
            f"{counts['score_rows']:,} score rows: {wall:.1f} s, {counts['traces'] / wall:,.0f} traces/s")  # fmt: skip
    table = markdown_table(("stage", "wall s", "share", "thread CPU s", "ms a page"), rows)
    return head + "\n\n" + table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="a stopped service's data dir")
    p.add_argument(
        "--page-traces", type=int, default=500, help="traces a page (jobs.page_traces, default 500)"
    )
    p.add_argument("--all-spans", action="store_true", help="read every span (the path before roots alone)")
    p.add_argument("--pages", type=int, default=0, help="only the first N pages (default: all)")
    p.add_argument("--cprofile", type=int, default=0, help="print this many functions by cumulative time")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    ch = ClickHouse(f"chdb://{(args.data_dir / 'clickhouse').resolve()}")
    spec = parse_rule({"id": "profile-rewind", "version": 1, "name": "profile-rewind", "project": STORED,
                       "scope": "trace", "filter": FILTER, "scorers": SCORERS})  # fmt: skip
    clock, prof = Clock(), cProfile.Profile()
    t0 = time.perf_counter()
    if args.cprofile:
        prof.enable()
    counts = walk(ch, compile_rule(spec), args, clock)
    prof.disable()
    print(render(counts, clock, time.perf_counter() - t0))
    if args.cprofile:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.cprofile)
    ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
