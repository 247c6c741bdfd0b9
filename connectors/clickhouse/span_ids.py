"""Which span ids ClickHouse holds for some traces (`sql/queries/span_ids_for_traces.sql`): ids only, no text
column, for the scoring step's check for spans another process stored (`dataflow.scoring.foreign`)."""

from __future__ import annotations

from collections import defaultdict

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.migrate import SQL_DIR

_SPAN_IDS_FOR_TRACES = (SQL_DIR / "queries" / "span_ids_for_traces.sql").read_text(encoding="utf-8")


class StoredSpanIds:
    def __init__(self, ch: ClickHouse, batch: int = 2_000) -> None:
        self._ch = ch
        self._batch = batch

    def span_ids(
        self, trace_ids: list[str], projects: list[str], lo_ns: int, hi_ns: int
    ) -> dict[str, set[str]]:
        """The stored span ids of each trace (judge spans left out) that started in [lo_ns, hi_ns] in one of
        `projects`; a trace with none is absent."""
        out: dict[str, set[str]] = defaultdict(set)
        bounds = {"projects": projects, "lo": lo_ns, "hi": hi_ns}
        for i in range(0, len(trace_ids), self._batch):
            chunk = trace_ids[i : i + self._batch]
            table = self._ch.query_arrow(_SPAN_IDS_FOR_TRACES, {**bounds, "trace_ids": chunk})
            traces, spans = table.column("TraceId").to_pylist(), table.column("SpanId").to_pylist()
            for tid, sid in zip(traces, spans, strict=True):
                out[tid].add(sid)
        return dict(out)
