"""The trace-window step inside real Bytewax dataflows (testing source and sink), on 1 and 2 workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflow.config import WindowConfig
from dataflow.model import CloseReason, Span, Trace
from dataflow.windowing.step import WindowShardLogic
from dataflow.windowing.trace_window import ShardState, shard_of
from tests import builders

CFG = WindowConfig(settle_s=0.2, idle_gap_s=0.6, max_wait_s=5, shards=8)


def span(trace: int, sid: int, root: bool = False) -> Span:
    parent = "" if root else f"{sid + 1000:016x}"
    return builders.span(
        trace_id=f"{trace:032x}", span_id=f"{sid:016x}", parent_span_id=parent, name="s", kind="Internal",
        start_ns=sid, input="in", output="out",
    )  # fmt: skip


def build(items: list[Any], out: list[Trace], keep_open: bool = False) -> Dataflow:
    flow = Dataflow("windows_test")
    spans = op.input("in", flow, TestingSource(items))
    keyed = op.map_value(
        "group", op.key_on("shard", spans, lambda s: shard_of(s.trace_id, CFG.shards)), lambda s: [s]
    )

    def logic(state: ShardState | None) -> WindowShardLogic:
        return WindowShardLogic(CFG, keep_open, state)

    closed = op.stateful_batch("windows", keyed, logic)
    op.output("out", op.key_rm("unkey", closed), TestingSink(out))
    return flow


def items_for(n_traces: int) -> list[Any]:
    items: list[Any] = []
    for t in range(n_traces):
        items += [span(t, 10 * t + 1), span(t, 10 * t + 2)]
    for t in range(n_traces):
        items.append(span(t, 10 * t, root=True))
    return items


def check(out: list[Trace], n_traces: int) -> None:
    by_id = {t.trace_id: t for t in out}
    assert len(out) == n_traces == len(by_id), "each trace closes exactly once"
    for t in range(n_traces):
        trace = by_id[f"{t:032x}"]
        assert trace.close_reason == CloseReason.ROOT_SETTLED
        assert len(trace.spans) == 3 and trace.root is not None and trace.root.is_root


def test_one_worker_each_close_reason_and_late_spans() -> None:
    items = items_for(20)
    items.append(span(99, 1))  # no root: closes on the idle gap
    items.append(TestingSource.PAUSE(timedelta(seconds=1.0)))
    items.append(span(0, 5))  # late: trace 0 closed during the pause
    items.append(span(98, 1))  # open at EOF: closed as shutdown (no recovery here)
    out: list[Trace] = []
    run_main(build(items, out))
    settled = [t for t in out if t.close_reason == CloseReason.ROOT_SETTLED]
    check(settled, 20)
    idle = [t for t in out if t.close_reason == CloseReason.IDLE_GAP]
    assert [t.trace_id for t in idle] == [f"{99:032x}"]
    late = [t for t in out if t.late]
    assert [(t.trace_id, len(t.spans)) for t in late] == [(f"{0:032x}", 1)]
    assert late[0].close_reason == CloseReason.SHUTDOWN and late[0].lateness_ns > 0
    assert f"{98:032x}" in {t.trace_id for t in out if t.close_reason == CloseReason.SHUTDOWN}


def test_two_workers_close_every_trace_once() -> None:
    items = [*items_for(200), TestingSource.PAUSE(timedelta(seconds=0.8))]
    out: list[Trace] = []
    cluster_main(build(items, out), [], 0, worker_count_per_proc=2)
    check(out, 200)


def test_open_traces_are_kept_at_eof_when_recovery_would_resume_them() -> None:
    out: list[Trace] = []
    run_main(build([span(1, 1), span(1, 2, root=True)], out, keep_open=True))
    assert out == []


def test_open_windows_resume_from_recovery_slim(tmp_path: Any) -> None:
    from bytewax.recovery import RecoveryConfig, init_db_dir

    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    first: list[Trace] = []
    run_main(build([span(1, 1), span(1, 2, root=True)], first, keep_open=True), recovery_config=recovery)
    assert first == []
    second: list[Trace] = []
    items: list[Any] = [TestingSource.PAUSE(timedelta(seconds=0.5))]
    # The second execution resumes the snapshot (the testing source resumes past what it already emitted).
    run_main(
        build([span(1, 1), span(1, 2, root=True), *items], second, keep_open=True), recovery_config=recovery
    )
    (trace,) = second
    assert trace.trace_id == f"{1:032x}" and len(trace.spans) == 2
    assert trace.complete is False  # slim spans: scoring completes them from ClickHouse
    assert all(s.input == "" for s in trace.spans)
