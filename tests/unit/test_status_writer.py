"""The rule status writer: a write that fails keeps its counts for the next tick, which writes them."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from connectors.clickhouse.rules_store import StatusRow
from dataflow import metrics
from dataflow.errors import SinkError
from dataflow.rules.engine import Tally
from dataflow.rules.model import CompiledRule, RuleSpec, compile_rule
from dataflow.rules.status import RuleStats
from tracejudge.components import StatusWriter


class FlakyStore:
    """A status store whose first write fails (ClickHouse unreachable) and whose later writes succeed."""

    def __init__(self) -> None:
        self.calls = 0
        self.written: list[list[StatusRow]] = []
        self.second_write = threading.Event()

    def write_status(self, rows: Iterable[StatusRow]) -> None:
        self.calls += 1
        if self.calls == 1:
            msg = "ClickHouse unreachable"
            raise SinkError(msg)
        self.written.append(list(rows))
        self.second_write.set()


def write_errors() -> float:
    return metrics.REGISTRY.get_sample_value("tracejudge_rule_status_write_errors_total") or 0.0


def rule(rule_id: str) -> CompiledRule:
    scorer = {"type": "code", "name": "has_paris", "function": "contains", "args": {"value": "x"}}
    return compile_rule(
        RuleSpec.model_validate(
            {"id": rule_id, "name": rule_id, "project": "p", "version": 2, "scorers": [scorer]}
        )
    )


QUIET, BUSY = rule("rid-quiet"), rule("rid-busy")


def scored(stats: RuleStats, compiled: CompiledRule, traces: int) -> None:
    """Record `traces` traces seen and scored by a rule."""
    stats.record_tally(Tally((compiled,), [[0, 0, 0, traces]], latest_trace_ns=1))


def test_a_failed_write_is_written_again_at_the_next_tick() -> None:
    stats, store = RuleStats(), FlakyStore()
    writer = StatusWriter(stats, store, "proc-1", interval_s=60)
    scored(stats, QUIET, 3)
    scored(stats, BUSY, 1)
    failures = write_errors()
    with pytest.raises(SinkError):  # the Poller logs it and ticks again
        writer.write()
    assert write_errors() == failures + 1  # the failure is visible
    scored(stats, BUSY, 2)  # the quiet rule counts nothing more: only the failed write can bring it back
    writer.write()
    [rows] = store.written
    assert sorted(
        (r.rule_id, r.process, r.counts.rule_version, r.counts.traces_seen, r.counts.scored) for r in rows
    ) == [
        ("rid-busy", "proc-1", 2, 3, 3),
        ("rid-quiet", "proc-1", 2, 3, 3),
    ]
    writer.write()  # written: nothing changed since
    assert len(store.written) == 1


def test_the_poller_retries_a_failed_write_until_it_is_written() -> None:
    stats, store = RuleStats(), FlakyStore()
    writer = StatusWriter(stats, store, "proc-1", interval_s=0.01)
    scored(stats, QUIET, 4)
    writer.start()
    try:
        assert store.second_write.wait(10), "the failed write was not retried"
    finally:
        writer.stop()
    assert [r.counts.traces_seen for r in store.written[0]] == [4]
