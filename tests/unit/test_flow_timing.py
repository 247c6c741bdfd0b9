"""The flow's per-stage CPU counters (`dataflow/flow_timing.py`): a timed step answers as the step does and adds
its thread time to its stage; a timed stateful logic forwards every call and attribute to the logic it wraps."""

from __future__ import annotations

from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflow import metrics
from dataflow.flow_timing import TimedLogic, timed
from dataflow.model import Trace
from dataflow.windowing.step import WindowShardLogic
from dataflow.windowing.trace_window import ShardState, shard_of
from tests.flow.test_windows_flow import CFG, check, items_for

# Root-settled closes need the settle time to pass before EOF (as test_windows_flow's own runs do).


def stage_seconds(stage: str) -> float:
    return float(metrics.FLOW_STAGE_SECONDS.labels(stage)._value.get())


def test_a_timed_step_answers_as_the_step_and_counts_its_cpu() -> None:
    before = stage_seconds("scoring")
    busy = timed("scoring", lambda n: sum(i * i for i in range(n)))
    assert busy(300_000) == sum(i * i for i in range(300_000))
    assert stage_seconds("scoring") > before


def test_timed_windows_close_every_trace_as_the_plain_logic_and_count_their_cpu() -> None:
    before = stage_seconds("windows")
    out: list[Trace] = []
    flow = Dataflow("timed_windows_test")
    spans = op.input(
        "in", flow, TestingSource([*items_for(200), TestingSource.PAUSE(timedelta(seconds=0.8))])
    )
    keyed = op.map_value(
        "group", op.key_on("shard", spans, lambda s: shard_of(s.trace_id, CFG.shards)), lambda s: [s]
    )

    def logic(state: ShardState | None) -> TimedLogic[list, Trace, ShardState]:  # type: ignore[type-arg]
        return TimedLogic("windows", WindowShardLogic(CFG, False, state))

    op.output("out", op.key_rm("unkey", op.stateful_batch("windows", keyed, logic)), TestingSink(out))
    run_main(flow)
    check(out, 200)
    assert stage_seconds("windows") > before
    wrapped = logic(None)
    assert wrapped.notify_at() == wrapped.inner.notify_at()
    assert wrapped._shard is wrapped.inner._shard  # other attributes are the inner logic's
