"""Judge spans into the write-ahead log, so they reach `otel_traces` like every other span.

They carry the scope `tracejudge.judge`; the flow never windows them, so they never trigger a rule, a
late-span rescore or another judge.

Durable per epoch, as connectors/clickhouse/score_sink.py: the sink partition buffers an epoch's spans and
`snapshot()` (called before Bytewax commits the epoch) appends them to the log as one batch and waits until
the log says they are on disk, so a committed epoch never leaves its judge spans queued in memory (a kill -9
would lose them while their score rows stay). A large epoch is appended in several batches as it fills;
`snapshot()` waits for all of them. The log's size bound does not apply to them (it is back-pressure for
clients; judge spans have none to retry them, so they wait in the log while ClickHouse is away). An append
the log refuses (closed, failed, the disk full) or does not confirm
within `wait_s` is counted in `tracejudge_judge_spans_dropped_total` and logged, never retried or raised:
the score row is the record of the judgement, the span is its trace-view companion.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.otlp.builder import Normalizer, SpanBatchBuilder
from connectors.wal.log import Wal
from dataflow import metrics
from dataflow.errors import WalError
from dataflow.scoring.judge_step import JUDGE_SCOPE

logger = logging.getLogger(__name__)

_CLIENT = 3
_FLUSH_SPANS = 5_000  # an epoch's spans beyond this are appended early (and still awaited at the snapshot)


def judge_spans_batch(spans: list[dict[str, Any]], normalizer: Normalizer) -> Any:
    builder = SpanBatchBuilder(normalizer, time.time_ns())
    for i, s in enumerate(spans):
        project = s["project"]
        res = (["service.name", "tracejudge.project"], ["tracejudge", project], project, "tracejudge")
        attrs = {**s["attributes"], "tracejudge.input": s["input"], "tracejudge.output": s["output"]}
        if s["session_id"]:
            attrs["session.id"] = s["session_id"]
        event = s["event"]
        builder.add_span(
            res=res, scope_name=JUDGE_SCOPE, scope_version="1", trace_id=s["trace_id"], span_id=s["span_id"],
            parent_id=s["parent_span_id"], trace_state="", name=s["name"], kind=_CLIENT, start_ns=s["start_ns"],
            end_ns=s["end_ns"], attr_k=list(attrs), attr_v=list(attrs.values()), status_code=0, status_message="",
            events=[(s["end_ns"], "gen_ai.evaluation.result", list(event), list(event.values()))], links=[],
            index=str(i),
        )  # fmt: skip
    return builder.to_batch()


class _Partition(StatefulSinkPartition[dict[str, Any], None]):
    def __init__(self, wal: Wal, normalizer: Normalizer, wait_s: float, flush_spans: int) -> None:
        self._wal = wal
        self._normalizer = normalizer
        self._wait_s = wait_s
        self._flush_spans = flush_spans
        self._buffer: list[dict[str, Any]] = []
        self._appended: list[tuple[int, Future[None]]] = []  # (spans, durable) of this epoch's appends

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        self._buffer.extend(items)
        if len(self._buffer) >= self._flush_spans:
            self._append()

    def _append(self) -> None:
        spans, self._buffer = self._buffer, []
        batch = judge_spans_batch(spans, self._normalizer) if spans else None
        if batch is None:
            return
        try:
            self._appended.append((len(spans), self._wal.append(batch, bounded=False)))
        except WalError as exc:
            _dropped(len(spans), exc)

    def _sync(self) -> None:
        """Append what is buffered; wait (bounded) until every append of this epoch is durable."""
        self._append()
        appended, self._appended = self._appended, []
        deadline = time.monotonic() + self._wait_s
        for n, durable in appended:
            try:
                durable.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                _dropped(n, f"the write-ahead log did not confirm them within {self._wait_s:g}s")
            except Exception as exc:  # the log's error for this append (WalError...): counted, never raised
                _dropped(n, exc)

    def snapshot(self) -> None:
        self._sync()
        return None

    def close(self) -> None:
        self._sync()


def append_judge_spans(wal: Wal, spans: list[dict[str, Any]], normalizer: Normalizer, wait_s: float) -> None:
    """Append judge spans made outside the flow (re-scoring jobs) and wait until they are durable; a refusal
    is counted and logged as the sink's are, never raised."""
    if not spans:
        return
    try:
        wal.append(judge_spans_batch(spans, normalizer), bounded=False).result(timeout=wait_s)
    except TimeoutError:
        _dropped(len(spans), f"the write-ahead log did not confirm them within {wait_s:g}s")
    except Exception as exc:  # WalFull, WalError: counted, never raised (the score rows are the record)
        _dropped(len(spans), exc)


def _dropped(n: int, why: object) -> None:
    metrics.JUDGE_SPANS_DROPPED.inc(n)
    logger.warning("dropped %d judge spans: %s", n, why)


class JudgeSpanSink(FixedPartitionedSink[dict[str, Any], None]):
    """Takes ("judge_spans", span dict) items, as the judge step emits them; one partition.

    `wait_s` bounds how long an epoch's snapshot waits for the log to make its spans durable.
    """

    def __init__(
        self, wal: Wal, normalizer: Normalizer, wait_s: float = 60.0, flush_spans: int = _FLUSH_SPANS
    ) -> None:
        if wait_s <= 0 or flush_spans <= 0:
            msg = f"wait_s ({wait_s}) and flush_spans ({flush_spans}) must be positive"
            raise ValueError(msg)
        self._wal = wal
        self._normalizer = normalizer
        self._wait_s = wait_s
        self._flush_spans = flush_spans

    def list_parts(self) -> list[str]:
        return ["judge_spans"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(self._wal, self._normalizer, self._wait_s, self._flush_spans)
