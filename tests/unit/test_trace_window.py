"""The window logic as an object, with a fake clock: each close reason, late spans, bounds, recovery."""

from __future__ import annotations

from typing import Any

from dataflow.config import WindowConfig
from dataflow.model import CloseReason, Span
from dataflow.windowing.trace_window import NS, WindowShard, shard_of
from tests import builders

T0 = 1_800_000_000 * NS


def span(trace: str = "a" * 32, sid: str = "1", parent: str = "p", start: int = 0, **kw: Any) -> Span:
    base: dict[str, Any] = dict(
        trace_id=trace, span_id=sid.rjust(16, "0"), parent_span_id=parent, name="s", kind="Internal",
        project="proj", start_ns=start, input="in", output="out", attributes={"k": "v"},
    )  # fmt: skip
    return builders.span(**(base | kw))


def cfg(**kw: object) -> WindowConfig:
    base: dict[str, object] = dict(settle_s=2, idle_gap_s=30, max_wait_s=600, max_spans=100, shards=1)
    base.update(kw)
    return WindowConfig(**base)  # type: ignore[arg-type]


def at(seconds: float) -> int:
    return T0 + int(seconds * NS)


def test_root_then_settle() -> None:
    shard = WindowShard.create(cfg())
    assert shard.add([span(sid="2")], at(0)) == []
    assert shard.add([span(sid="1", parent="")], at(1)) == []
    assert shard.next_deadline() == at(3)
    assert shard.due(at(2.9)) == []
    (trace,) = shard.due(at(3))
    assert trace.close_reason == CloseReason.ROOT_SETTLED
    assert [s.span_id[-1] for s in trace.spans] == ["1", "2"]
    assert trace.root is not None and trace.root.is_root
    assert shard.open_count == 0 and shard.next_deadline() is None


def test_a_new_span_after_the_root_restarts_the_settle_time() -> None:
    shard = WindowShard.create(cfg())
    shard.add([span(sid="1", parent="")], at(0))
    shard.add([span(sid="2")], at(1.5))
    assert shard.due(at(2.5)) == []
    (trace,) = shard.due(at(3.5))
    assert len(trace.spans) == 2


def test_idle_gap_without_root() -> None:
    shard = WindowShard.create(cfg())
    shard.add([span(sid="2")], at(0))
    assert shard.due(at(29)) == []
    (trace,) = shard.due(at(30))
    assert trace.close_reason == CloseReason.IDLE_GAP
    assert trace.root is not None and trace.root.span_id.endswith("2")  # earliest when no root


def test_max_wait() -> None:
    shard = WindowShard.create(cfg(idle_gap_s=30, max_wait_s=60))
    for i in range(7):
        shard.add([span(sid=str(i + 2))], at(i * 10))
    (trace,) = shard.due(at(60))
    assert trace.close_reason == CloseReason.MAX_WAIT
    assert len(trace.spans) == 7


def test_max_spans_closes_at_once() -> None:
    shard = WindowShard.create(cfg(max_spans=3))
    assert shard.add([span(sid="2"), span(sid="3")], at(0)) == []
    (trace,) = shard.add([span(sid="4"), span(sid="5", trace="b" * 32)], at(1))
    assert trace.close_reason == CloseReason.MAX_SPANS and len(trace.spans) == 3
    assert shard.open_count == 1


def test_duplicate_spans_count_once() -> None:
    shard = WindowShard.create(cfg())
    shard.add([span(sid="1", parent=""), span(sid="1", parent="")], at(0))
    (trace,) = shard.due(at(2))
    assert len(trace.spans) == 1


def test_open_traces_are_bounded_and_the_oldest_evicted() -> None:
    shard = WindowShard.create(cfg(max_open_traces=2))
    shard.add([span(trace="a" * 32)], at(0))
    shard.add([span(trace="b" * 32)], at(1))
    (evicted,) = shard.add([span(trace="c" * 32)], at(2))
    assert evicted.trace_id == "a" * 32 and evicted.close_reason == CloseReason.EVICTED
    assert shard.open_count == 2


def test_late_span_reopens_the_trace_marked_late() -> None:
    shard = WindowShard.create(cfg())
    shard.add([span(sid="1", parent="")], at(0))
    (first,) = shard.due(at(2))
    assert not first.late
    shard.add([span(sid="9")], at(12))
    (late,) = shard.due(at(14))  # settles like a rooted trace, not after the idle gap
    assert late.late and late.lateness_ns == 10 * NS
    assert [s.span_id[-1] for s in late.spans] == ["9"]


def test_closed_memory_is_bounded() -> None:
    shard = WindowShard.create(cfg(remember_closed=2))
    for i, tid in enumerate(["a", "b", "c"]):
        shard.add([span(trace=tid * 32, sid="1", parent="")], at(i))
    shard.due(at(100))
    shard.add([span(trace="a" * 32, sid="2")], at(101))  # forgotten: not recognised as late
    shard.add([span(trace="c" * 32, sid="2")], at(101))
    closed = {t.trace_id[0]: t.late for t in shard.due(at(200))}
    assert closed == {"a": False, "c": True}


def test_snapshot_is_slim_and_resumes_timers() -> None:
    shard = WindowShard.create(cfg())
    shard.add([span(sid="1", parent="")], at(0))
    state = shard.snapshot()
    (project, span_ids, roots, *_rest) = state["a" * 32]
    assert project == "proj"  # the scoring step picks the project's rules before completing the trace
    assert span_ids == roots == (f"{1:016x}",)  # ids only: no span text is copied into snapshots
    resumed = WindowShard.create(cfg(), state)
    assert resumed.next_deadline() == at(2)
    (trace,) = resumed.due(at(2))
    assert trace.complete is False and trace.close_reason == CloseReason.ROOT_SETTLED
    assert tuple(s.span_id for s in trace.spans) == span_ids and trace.root is not None and trace.root.is_root
    assert trace.project == "proj"


def test_close_all_for_shutdown_without_recovery() -> None:
    shard = WindowShard.create(cfg())
    shard.add([span(trace="a" * 32), span(trace="b" * 32)], at(0))
    closed = shard.close_all(CloseReason.SHUTDOWN, at(1))
    assert {t.close_reason for t in closed} == {CloseReason.SHUTDOWN} and shard.open_count == 0


def test_shard_keys_spread() -> None:
    import os

    counts: dict[str, int] = {}
    for _ in range(20_000):
        key = shard_of(os.urandom(16).hex(), 16)
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 16 and max(counts.values()) < 1.2 * min(counts.values())
    assert shard_of("not-hex", 16) == "0"
