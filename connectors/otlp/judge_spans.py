"""Judge spans into the write-ahead log, so they reach `otel_traces` like every other span.

They carry the scope `tracejudge.judge`; the flow never windows them, so they never trigger a rule, a
late-span rescore or another judge. An append refused by a full log is counted, not retried: the score row
is the record of the judgement, the span is its trace-view companion.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.otlp.builder import Normalizer, SpanBatchBuilder
from connectors.otlp.wal import Wal
from dataflow import metrics
from dataflow.errors import WalError
from dataflow.judging.step import JUDGE_SCOPE

logger = logging.getLogger(__name__)

_CLIENT = 3


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


class _Partition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, wal: Wal, normalizer: Normalizer) -> None:
        self._wal = wal
        self._normalizer = normalizer

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        batch = judge_spans_batch(items, self._normalizer)
        if batch is None:
            return
        try:
            self._wal.append(batch)
        except WalError as exc:
            metrics.JUDGE_SPANS_DROPPED.inc(len(items))
            logger.warning("dropped %d judge spans: %s", len(items), exc)


class JudgeSpanSink(DynamicSink[dict[str, Any]]):
    def __init__(self, wal: Wal, normalizer: Normalizer) -> None:
        self._wal = wal
        self._normalizer = normalizer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self._wal, self._normalizer)
