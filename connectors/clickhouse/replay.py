"""Reading spans back from ClickHouse as `Span`s: for late-span rescoring, traces resumed after a restart
(their snapshots are slim), "test rule" and rewind. Everything goes through the same trace/rule path. A rewind whose scorers read only a
trace's root span reads just that (`ROOTS_FOR_TRACES`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.migrate import SQL_DIR
from dataflow.model import Span
from dataflow.rules.model import SpanNeeds
from dataflow.windowing.step import spans_from_batch

_SPANS_FOR_TRACES = (SQL_DIR / "queries" / "spans_for_traces.sql").read_text(encoding="utf-8")
ROOTS_FOR_TRACES = (SQL_DIR / "queries" / "roots_for_traces.sql").read_text(encoding="utf-8")


class SpanFetcher:
    def __init__(self, ch: ClickHouse, batch: int = 500, sql: str = _SPANS_FOR_TRACES) -> None:
        self._ch = ch
        self._batch = batch
        self._sql = sql  # a query of parameter trace_ids with spans_for_traces.sql's columns

    def fetch(
        self, trace_ids: list[str], needs: SpanNeeds | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, list[Span]]:
        """The stored spans of each trace, in start order (a trace with none stored is absent); with `needs`,
        only those attribute keys become Python (the others stay out of the spans); `params`: the query's
        others."""
        out: dict[str, list[Span]] = defaultdict(list)
        for i in range(0, len(trace_ids), self._batch):
            chunk = trace_ids[i : i + self._batch]
            table = self._ch.query_arrow(self._sql, {**(params or {}), "trace_ids": chunk})
            keys = (needs.attributes, needs.resource) if needs is not None else (None, None)
            for span in spans_from_batch(table, None, *keys):
                out[span.trace_id].append(span)
        return dict(out)
