"""The Bytewax dataflow, assembled from its steps and edges.

    wal_records (batches as soon as durable) -> spans of projects with rules -> key by shard
        -> windows (trace windows, one logic per shard) -> scoring (rules, code scorers) -> scores (ClickHouse)
                                                        -> judge jobs -> judges (async executor) -> scores
                                                                                             -> judge spans (log)

Spans themselves reach `otel_traces` outside the flow (connectors.clickhouse.sink.SpanStore), so storage
never waits for scoring.

Step ids are part of the recovery state: renaming the flow or a step discards its snapshots (a full replay).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from dataflow.config import WindowConfig
from dataflow.flow_timing import TimedLogic, timed
from dataflow.model import ScoreRow, Span, SpanRecords, Trace
from dataflow.rules.engine import sampled_by_any
from dataflow.rules.matching import MatchedTraces, match_batch
from dataflow.rules.model import RuleSet
from dataflow.scoring.judge_step import JudgeContext, JudgeLogic
from dataflow.windowing.step import Marks, Match, WindowShardLogic, spans_from_batch
from dataflow.windowing.trace_window import ShardState, shard_of

# Recovery snapshots name their classes by module (pickle). The judge step's snapshot (pending JudgeJobs with
# their JudgeRequests) taken before these modules moved names the old paths; aliasing them lets such a store
# resume after an upgrade instead of failing the flow at every start. Snapshots taken since need none of it.
MOVED_MODULES = {
    "dataflow.judging.step": "dataflow.scoring.judge_step",
    "connectors.llm.base": "dataflow.judging.client",
}
for _old, _new in MOVED_MODULES.items():
    sys.modules.setdefault(_old, importlib.import_module(_new))

FLOW_ID = "tracejudge"
RECORDS_STEP = "wal_records"
SOURCE_STEPS = (f"{FLOW_ID}.{RECORDS_STEP}",)


@dataclass(frozen=True)
class ScoringPlan:
    """What the scoring branch needs: where spans come from, which projects have rules, how to score."""

    records: Source[SpanRecords]
    rules: Callable[[], RuleSet]
    windows: WindowConfig
    keep_open_at_eof: bool
    score: Callable[[list[Trace]], list[tuple[str, Any]]]
    scores_sink: Sink[tuple[str, ScoreRow | list[ScoreRow]]]
    judges: JudgeContext | None = None
    judge_spans_sink: Sink[tuple[str, dict[str, Any]]] | None = None
    judge_shards: int = 4
    # Rule filters evaluated per batch in the spans step (vectorised, `dataflow.rules.matching`), so that only
    # spans of matched traces are built in full; False: per span when a trace closes (the reference predicates).
    # Off by default: with bench/rules.py's 50-rule mix it costs more than it saves (bench/RESULTS.md, "Rule
    # filters per batch").
    batch_filters: bool = False


def shard_batches(
    records: list[SpanRecords], ruleset: RuleSet, shards: int, recent: MatchedTraces | None = None
) -> list[tuple[str, list[Span]]]:
    """Spans of projects with rules, grouped by window shard: one item per shard per batch, not one
    per span (Bytewax's per-item cost was a fifth of the scoring branch).

    With `recent` (batch filters on), the rules' filters run over the whole batch (`match_batch`) and only
    spans of traces that some rule samples and matched, in this batch or lately (`recent`), are built in
    full; without, spans of traces that some rule samples are built in full and filtered span by span when
    their trace closes. The others stay partial."""
    projects = ruleset.projects
    if not projects or not records:
        return []
    needs = ruleset.needs
    match: Match | None = None
    if recent is not None:
        matched = recent

        def match(batch: Any) -> Marks:
            tags, bits = match_batch(batch, ruleset.for_project)
            return matched.full_rows(batch.column("TraceId").to_pylist(), bits), tags, bits

    def wanted(trace_ids: list[str], row_projects: list[str]) -> list[bool] | None:
        return sampled_by_any(ruleset.for_project, trace_ids, row_projects)

    groups: dict[str, list[Span]] = {}
    keys: dict[str, list[Span]] = {}  # trace id -> its shard's group (spans of a trace come together)
    # One table of the item's batches: the filters' per-call cost is paid once per item, not once per batch.
    tables: list[Any] = [r.batch for r in records]
    if match is not None and len(tables) > 1 and all(t.schema == tables[0].schema for t in tables):
        tables = [pa.Table.from_batches(tables)]
    spans = (
        s
        for t in tables
        for s in spans_from_batch(t, projects, needs.attributes, needs.resource, wanted, match)
    )
    for span in spans:
        group = keys.get(span.trace_id)
        if group is None:
            key = shard_of(span.trace_id, shards)
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            keys[span.trace_id] = group
        group.append(span)
    return list(groups.items())


def build_flow(scoring: ScoringPlan) -> Dataflow:
    flow = Dataflow(FLOW_ID)
    add_scoring(flow, scoring)
    return flow


def add_scoring(flow: Dataflow, plan: ScoringPlan) -> None:
    shards = plan.windows.shards

    recent = MatchedTraces() if plan.batch_filters else None

    def to_shards(records: list[SpanRecords]) -> list[tuple[str, list[Span]]]:
        return shard_batches(records, plan.rules(), shards, recent)

    def build(state: ShardState | None) -> TimedLogic[list[Span], Trace, ShardState]:
        return TimedLogic("windows", WindowShardLogic(plan.windows, plan.keep_open_at_eof, state))

    records = op.input(RECORDS_STEP, flow, plan.records)
    keyed: Any = op.flat_map_batch("spans", records, timed("spans", to_shards))
    closed = op.stateful_batch("windows", keyed, build)
    traces = op.key_rm("traces", closed)
    scored = op.flat_map_batch("scoring", traces, timed("scoring", plan.score))
    split = op.branch("split", scored, lambda kv: kv[0] == "scores")
    rows: Any = split.trues
    if plan.judges is not None and plan.judge_spans_sink is not None:
        ctx = plan.judges
        jobs = op.map("job", split.falses, lambda kv: kv[1])
        keyed_jobs = op.key_on(
            "by_judge_shard", jobs, lambda j: f"j{int(j.score_id[:8], 16) % plan.judge_shards}"
        )
        judged = op.key_rm(
            "judged",
            op.stateful_batch("judges", keyed_jobs, lambda st: TimedLogic("judges", JudgeLogic(ctx, st))),
        )
        out = op.branch("judge_out", judged, lambda kv: kv[0] == "scores")
        rows = op.merge("all_scores", rows, out.trues)
        op.output("judge_spans", out.falses, plan.judge_spans_sink)  # ("judge_spans", span) items
    op.output("scores", rows, plan.scores_sink)
