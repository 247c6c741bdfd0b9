"""The judge-spans sink partition as an object, over a fake log: spans are appended at the epoch's snapshot
(not on arrival), the snapshot waits until the log says they are durable, and a refused, failed or
unconfirmed append is counted, never raised."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pyarrow as pa
import pytest

from connectors.otlp.ingest import normalizer_from
from connectors.otlp.judge_spans import JudgeSpanSink, _Partition
from dataflow import metrics
from dataflow.config import IngestConfig
from dataflow.errors import WalError, WalFull


class Durable(Future[None]):
    """A log append's future that records the waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def result(self, timeout: float | None = None) -> None:
        self.waits.append(timeout)
        return super().result(timeout)


class FakeWal:
    """`append` as the log's: a future per batch; `outcome` says how the futures end (or never do)."""

    def __init__(self, outcome: str = "ok") -> None:
        self.outcome = outcome  # ok | fail | never | full | closed
        self.appended: list[tuple[pa.RecordBatch, Durable]] = []

    def append(self, batch: pa.RecordBatch, bounded: bool = True) -> Durable:
        if self.outcome == "full" and bounded:
            raise WalFull("write-ahead log is full (9 of 9 bytes)", 1.0)
        if self.outcome == "closed":
            raise WalError("the write-ahead log is closed")
        durable = Durable()
        if self.outcome in ("ok", "full"):
            durable.set_result(None)
        elif self.outcome == "fail":
            durable.set_exception(WalError("write-ahead log write failed: No space left on device"))
        self.appended.append((batch, durable))
        return durable

    def trace_ids(self) -> list[list[str]]:
        return [b.column("TraceId").to_pylist() for b, _ in self.appended]


def span(n: int) -> dict[str, Any]:
    return {
        "trace_id": f"{n:032x}", "span_id": f"{n:016x}", "parent_span_id": "c" * 16, "name": "judge r/helpful",
        "project": "p", "session_id": "", "start_ns": 1_700_000_000 * 10**9, "end_ns": 1_700_000_001 * 10**9,
        "attributes": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"},
        "event": {"gen_ai.evaluation.name": "helpful", "gen_ai.evaluation.score.value": "0.5"},
        "input": "the prompt", "output": "the rationale",
    }  # fmt: skip


def part(wal: FakeWal, **kw: Any) -> _Partition:
    sink = JudgeSpanSink(wal, normalizer_from(IngestConfig()), **kw)  # type: ignore[arg-type]
    assert sink.list_parts() == ["judge_spans"] and sink.part_fn("judge_spans") == 0
    return sink.build_part("judge_spans", "judge_spans", None)


def dropped() -> float:
    value = metrics.REGISTRY.get_sample_value("tracejudge_judge_spans_dropped_total")
    assert value is not None
    return value


def test_spans_are_appended_at_the_snapshot_as_one_batch_and_awaited() -> None:
    wal = FakeWal()
    p = part(wal, wait_s=5.0)
    p.write_batch([span(1), span(2)])
    p.write_batch([span(3)])
    assert wal.appended == []  # nothing reaches the log before the epoch ends
    before = dropped()
    assert p.snapshot() is None
    assert wal.trace_ids() == [[f"{n:032x}" for n in (1, 2, 3)]]
    ((_, durable),) = wal.appended
    assert durable.waits and all(t is not None and 0 < t <= 5.0 for t in durable.waits)  # a bounded wait
    assert dropped() == before
    p.snapshot()  # an empty epoch appends nothing
    p.write_batch([span(4)])
    p.close()  # what is left is appended and awaited at close too
    assert wal.trace_ids()[1:] == [[f"{4:032x}"]] and wal.appended[1][1].waits


def test_a_large_epoch_is_appended_as_it_fills_and_all_of_it_awaited_at_the_snapshot() -> None:
    wal = FakeWal()
    p = part(wal, flush_spans=3)
    p.write_batch([span(1), span(2)])
    assert wal.appended == []
    p.write_batch([span(3), span(4)])
    assert len(wal.trace_ids()[0]) == 4 and not wal.appended[0][1].waits  # appended, not waited for yet
    p.write_batch([span(5)])
    p.snapshot()
    assert [len(ids) for ids in wal.trace_ids()] == [4, 1]
    assert all(durable.waits for _, durable in wal.appended)


def test_the_logs_size_bound_does_not_refuse_judge_spans() -> None:
    wal = FakeWal("full")  # full for clients: judge spans wait in the log until ClickHouse takes it
    p = part(wal, wait_s=0.05, flush_spans=2)
    before = dropped()
    p.write_batch([span(1), span(2), span(3)])
    p.snapshot()
    assert dropped() == before
    assert sum(len(ids) for ids in wal.trace_ids()) == 3


@pytest.mark.parametrize("outcome", ["fail", "closed", "never"])
def test_a_refused_failed_or_unconfirmed_append_is_counted_not_raised(
    outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    wal = FakeWal(outcome)
    p = part(wal, wait_s=0.05, flush_spans=2)
    before = dropped()
    p.write_batch([span(1), span(2)])  # appended early (or refused there)
    p.write_batch([span(3)])
    p.snapshot()
    assert dropped() == before + 3
    assert "dropped" in caplog.text and "judge spans" in caplog.text
    wal.outcome = "ok"  # the next epoch is fine again and counts nothing
    p.write_batch([span(4)])
    p.snapshot()
    assert dropped() == before + 3 and wal.trace_ids()[-1] == [f"{4:032x}"]


def test_the_sink_checks_its_arguments() -> None:
    for kw in ({"wait_s": 0.0}, {"flush_spans": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            JudgeSpanSink(FakeWal(), normalizer_from(IngestConfig()), **kw)  # type: ignore[arg-type]
