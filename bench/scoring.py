"""Scoring-path micro-benchmark: CPU cost per span of each stage of the flow's scoring branch, in-process.

``bench/rules.py`` measures the whole service under load; this one isolates the Python work the Bytewax
flow does per span, without receivers, the log or ClickHouse, so a change to the span path can be measured
before and after in seconds (``make bench-scoring``):

1. ``decode``   the ingest benchmark's protobuf requests (``bench/loadgen.py`` templates: 10-span traces,
                500-2000 character input/output) decoded into Arrow span batches, as the receivers do
                (not part of the flow; shown for scale);
2. ``shards``   the flow's first step (``to_shards``): spans of projects with rules, grouped by window shard;
3. ``windows``  the trace windows (``WindowShardLogic.on_batch``), then closing every trace;
4. ``scoring``  the scoring step (rules, sampling, targeting, code scorers, score rows);
5. ``arrow``    score rows into the Arrow table the score sink inserts.

The rules are ``bench/rules.py``'s 50-rule mix (``make_rules``), every span in one project (``bench``).
Each stage runs over the same batches; the table shows CPU microseconds of the thread per span (best of
``--repeat`` runs; thread CPU time, so other processes on the machine disturb it little)
and the implied single-thread spans/s of the flow (stages 2-5).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import write_json
from bench.loadgen import PayloadSpec, build_templates
from bench.rules import make_rules
from connectors.otlp.decode import decode_protobuf
from connectors.otlp.ingest import normalizer_from
from dataflow.config import IngestConfig, WindowConfig
from dataflow.flow import shard_batches
from dataflow.model import SpanRecords, Trace, scores_to_arrow
from dataflow.rules.matching import MatchedTraces
from dataflow.rules.model import RuleSet, compile_rule, parse_rule
from dataflow.rules.status import RuleStats
from dataflow.scoring.step import ScoringStep
from dataflow.windowing.step import WindowShardLogic


class _Rules:
    def __init__(self, ruleset: RuleSet) -> None:
        self.current = ruleset


def build_ruleset(n: int, sampling_rate: float) -> RuleSet:
    specs = make_rules(n, ("bench",), sampling_rate)
    compiled = []
    for i, raw in enumerate(specs):
        spec = parse_rule({**raw, "id": f"rule-{i:02d}", "version": 1})
        compiled.append(compile_rule(spec))
    return RuleSet.of(compiled, "bench")


def build_batches(requests: int, templates: int) -> tuple[list[SpanRecords], float]:
    """The requests decoded into span batches, and the CPU seconds the decoding took."""
    ingest = IngestConfig(project_keys=["deployment.environment"])
    normalizer = normalizer_from(ingest)
    spec = PayloadSpec()
    tpls = build_templates(spec, templates, "protobuf")
    out = []
    cpu = 0.0
    for i in range(requests):
        body = tpls[i % len(tpls)].render()
        t0 = time.thread_time()
        decoded = decode_protobuf(body, normalizer, time.time_ns())
        cpu += time.thread_time() - t0
        out.append(SpanRecords(0, 0, i, decoded.batch))
    return out, cpu


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        t0 = time.thread_time()
        result = fn()
        best = min(best, time.thread_time() - t0)
    return best, result


def run(
    requests: int, rules: int, sampling_rate: float, repeat: int, per_item: int, batch_filters: bool = False
) -> dict[str, Any]:
    ruleset = build_ruleset(rules, sampling_rate)
    windows = WindowConfig()
    batches, decode_s = build_batches(requests, templates=min(8, requests))
    spans = sum(b.batch.num_rows for b in batches)

    def shards() -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        recent = MatchedTraces() if batch_filters else None
        for i in range(0, len(batches), per_item):
            out.extend(shard_batches(batches[i : i + per_item], ruleset, windows.shards, recent))
        return out

    shards_s, keyed = _timed(shards, repeat)

    def window() -> list[Trace]:
        logics: dict[str, WindowShardLogic] = {}
        closed: list[Trace] = []
        for key, group in keyed:
            logic = logics.get(key)
            if logic is None:
                logic = logics[key] = WindowShardLogic(windows, keep_open_at_eof=False, state=None)
            emitted, _ = logic.on_batch([group])
            closed.extend(emitted)
        for logic in logics.values():
            emitted, _ = logic.on_eof()
            closed.extend(emitted)
        return closed

    windows_s, traces = _timed(window, repeat)
    step = ScoringStep(_Rules(ruleset), RuleStats(), fetcher=None)

    def scoring() -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(traces), 200):
            out.extend(step(traces[i : i + 200]))
        return out

    scoring_s, outputs = _timed(scoring, repeat)
    rows = [r for kind, batch in outputs if kind == "scores" for r in batch]
    arrow_s, _ = _timed(lambda: scores_to_arrow(rows), repeat)
    flow_s = shards_s + windows_s + scoring_s + arrow_s
    stages = {
        "decode": decode_s,
        "shards": shards_s,
        "windows": windows_s,
        "scoring": scoring_s,
        "arrow": arrow_s,
        "flow (2-5)": flow_s,
    }
    return {
        "spans": spans,
        "traces": len(traces),
        "score_rows": len(rows),
        "rules": rules,
        "sampling_rate": sampling_rate,
        "us_per_span": {k: v / spans * 1e6 for k, v in stages.items()},
        "flow_spans_per_s": spans / flow_s,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['spans']:,} spans, {result['traces']:,} traces, {result['rules']} rules "
        f"(sampling {result['sampling_rate']}), {result['score_rows']:,} score rows",
        "",
        "| stage | us/span |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in result["us_per_span"].items()]
    lines.append(f"| flow, single thread | {result['flow_spans_per_s']:,.0f} spans/s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="requests of 500 spans (default 200)")
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--sampling-rate", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage; the best is reported")
    parser.add_argument("--per-item", type=int, default=1, help="log batches per flow item (default 1)")
    parser.add_argument(
        "--batch-filters",
        action="store_true",
        help="rule filters per batch in the spans step, not per span at close (to compare)",
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result = run(
        args.requests, args.rules, args.sampling_rate, args.repeat, args.per_item, args.batch_filters
    )
    print(render(result))
    if args.json_out:
        write_json(args.json_out, result, 2, announce=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
