"""The whole Bytewax flow in-process, paced like the service, with recovery on (``make bench-flow``).

``bench/scoring.py`` times the flow's Python stages one by one; it leaves out what Bytewax itself does per
item and per epoch (routing items to the window shards, calling each shard's ``snapshot`` every epoch,
pickling those snapshots into the recovery store), which a profile of the service under load puts at about a
third of the flow thread. ``bench/rules.py`` sees all of it, but its ingest rates vary by +-10 % between runs
on this machine, so a change worth a few percent cannot be seen there. This benchmark runs the real flow
(``dataflow.flow.build_flow``: records -> shards -> windows -> scoring -> score sink) with
``bytewax.testing.run_main`` in this thread, with a recovery store (``--epoch-s`` epochs, as
``flow.epoch_interval_s``) in a temporary directory, over the ingest benchmark's requests decoded into span
batches (``bench/scoring.py`` ``build_batches``), fed at ``--rate`` spans/s so that traces stay open for
their settle time as they do in the service. The score sink is a list.

Reported: the thread's CPU time per span (``time.thread_time``: the pacing's sleeps cost nothing, other
processes disturb it little), how many times the window shards were snapshotted, and the traces scored; best of
``--repeat`` runs. ``--shards`` overrides ``windows.shards`` to compare.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from bench.common import write_json
from bench.scoring import _Rules, build_batches, build_ruleset
from dataflow import metrics
from dataflow.config import WindowConfig
from dataflow.flow import ScoringPlan, build_flow
from dataflow.flow_timing import STAGES
from dataflow.model import SpanRecords
from dataflow.rules.status import RuleStats
from dataflow.scoring.step import ScoringStep
from dataflow.windowing.step import WindowShardLogic


class _PacedPartition(StatefulSourcePartition[SpanRecords, int]):
    """The batches in order, each when its turn comes at `rate` spans/s; the resume state is the index."""

    def __init__(self, batches: list[SpanRecords], rate: float, resume: int | None) -> None:
        self.batches = batches
        self.i = resume or 0
        self.due: list[float] = []
        t = time.monotonic()
        for b in batches:
            self.due.append(t)
            t += b.batch.num_rows / rate

    def next_batch(self) -> list[SpanRecords]:
        if self.i >= len(self.batches):
            raise StopIteration
        if time.monotonic() < self.due[self.i]:
            return []
        self.i += 1
        return [self.batches[self.i - 1]]

    def next_awake(self) -> datetime | None:
        if self.i >= len(self.batches):
            return None
        return datetime.now(UTC) + timedelta(seconds=max(0.0, self.due[self.i] - time.monotonic()))

    def snapshot(self) -> int:
        return self.i


class PacedSource(FixedPartitionedSource[SpanRecords, int]):
    def __init__(self, batches: list[SpanRecords], rate: float) -> None:
        self.batches = batches
        self.rate = rate

    def list_parts(self) -> list[str]:
        return ["0"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PacedPartition:
        return _PacedPartition(self.batches, self.rate, resume_state)


@contextmanager
def counting_snapshots() -> Iterator[list[int]]:
    """Counts WindowShardLogic.snapshot calls (one per shard with state, per epoch)."""
    count = [0]
    original = WindowShardLogic.snapshot

    def counted(self: WindowShardLogic) -> Any:
        count[0] += 1
        return original(self)

    WindowShardLogic.snapshot = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        WindowShardLogic.snapshot = original  # type: ignore[method-assign]


def run_once(batches: list[SpanRecords], args: argparse.Namespace) -> dict[str, Any]:
    ruleset = build_ruleset(args.rules, args.sampling_rate)
    windows = WindowConfig() if args.shards is None else WindowConfig(shards=args.shards)
    out: list[Any] = []
    plan = ScoringPlan(
        records=PacedSource(batches, args.rate),
        rules=lambda: ruleset,
        windows=windows,
        keep_open_at_eof=False,
        score=ScoringStep(_Rules(ruleset), RuleStats(), fetcher=None),
        scores_sink=TestingSink(out),
        batch_filters=args.batch_filters,
    )
    flow = build_flow(plan)
    with tempfile.TemporaryDirectory(prefix="tj-bench-flow-") as tmp, counting_snapshots() as snapshots:
        # bytewax 0.21 ships these untyped (as in tracejudge/service.py)
        init_db_dir(Path(tmp), 1)  # type: ignore[no-untyped-call]
        recovery = None if args.no_recovery else RecoveryConfig(tmp)  # type: ignore[no-untyped-call]
        stages0 = stage_seconds()
        t0, w0 = time.thread_time(), time.monotonic()
        epoch = timedelta(seconds=args.epoch_s)
        run_main(flow, epoch_interval=epoch, recovery_config=recovery)  # type: ignore[no-untyped-call]
        cpu, wall = time.thread_time() - t0, time.monotonic() - w0
        stages = {k: v - stages0[k] for k, v in stage_seconds().items()}
    rows = [r for kind, batch in out if kind == "scores" for r in batch]
    spans = sum(b.batch.num_rows for b in batches)
    return {
        "spans": spans,
        "cpu_s": cpu,
        "wall_s": wall,
        "us_per_span": cpu / spans * 1e6,
        "snapshots": snapshots[0],
        "score_rows": len(rows),
        "traces_scored": len({r.trace_id for r in rows}),
        "stage_us_per_span": {k: v / spans * 1e6 for k, v in stages.items()},
    }


def stage_seconds() -> dict[str, float]:
    """The flow's per-stage CPU counters (`tracejudge_flow_stage_seconds_total`) as they stand."""
    return {stage: float(metrics.FLOW_STAGE_SECONDS.labels(stage)._value.get()) for stage in STAGES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200, help="requests of 500 spans (default 200)")
    p.add_argument("--rules", type=int, default=1, help="rules of bench/rules.py's mix (default 1)")
    p.add_argument("--sampling-rate", type=float, default=0.05, help="(default 0.05)")
    p.add_argument("--rate", type=float, default=20_000, help="spans/s fed to the flow (default 20,000)")
    p.add_argument("--epoch-s", type=float, default=1.0, help="epoch interval (default 1 s, as the service)")
    p.add_argument("--shards", type=int, default=None, help="windows.shards (default: the config's)")
    p.add_argument("--no-recovery", action="store_true", help="run without a recovery store (to compare)")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best is reported (default 3)")
    p.add_argument(
        "--batch-filters",
        action="store_true",
        help="rule filters per batch in the spans step, not per span at close (to compare)",
    )
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    batches, _ = build_batches(args.requests, templates=min(8, args.requests))
    runs = [run_once(batches, args) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["cpu_s"])
    shards = args.shards if args.shards is not None else WindowConfig().shards
    print(
        f"{best['spans']:,} spans at {args.rate:,.0f} spans/s, {args.rules} rule(s) sampling {args.sampling_rate}, "
        f"{shards} window shards, {args.epoch_s:g} s epochs, recovery {'off' if args.no_recovery else 'on'}; "
        f"best of {args.repeat}"
    )
    print("| CPU us/span (best) | all runs | snapshots | traces scored | score rows | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    every = ", ".join(f"{r['us_per_span']:.1f}" for r in runs)
    print(
        f"| {best['us_per_span']:.1f} | {every} | "
        f"{best['snapshots']:,} | {best['traces_scored']:,} | {best['score_rows']:,} | {best['wall_s']:.1f} |"
    )
    per_stage = best["stage_us_per_span"]
    print(
        "\nper stage, CPU us/span of the best run (tracejudge_flow_stage_seconds_total; the rest is Bytewax's):"
    )
    print("| " + " | ".join(per_stage) + " | rest |")
    print("| " + " | ".join("---" for _ in per_stage) + " | --- |")
    rest = best["us_per_span"] - sum(per_stage.values())
    print("| " + " | ".join(f"{v:.1f}" for v in per_stage.values()) + f" | {rest:.1f} |")
    if args.json_out:
        write_json(args.json_out, {"args": vars(args) | {"json_out": None}, "runs": runs}, 2, announce=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
