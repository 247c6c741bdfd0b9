"""Root-less trace parts in ClickHouse (`trace_fragments`, migration 0013): recorded by the process that scored
one with no root stored anywhere, looked up by the process that later closes the trace with its root
(`dataflow.scoring.foreign`)."""

from __future__ import annotations

from connectors.clickhouse.client import ClickHouse

_COLUMNS = ["TraceId", "Project", "Process"]
_TYPES = ["String", "LowCardinality(String)", "String"]
_KNOWN = "SELECT DISTINCT TraceId FROM trace_fragments WHERE TraceId IN {ids:Array(String)}"


class FragmentStore:
    def __init__(self, ch: ClickHouse, process: str, chunk: int = 5_000) -> None:
        self._ch = ch
        self._process = process
        self._chunk = chunk

    def record(self, fragments: list[tuple[str, str]]) -> None:
        """Record (trace id, project) pairs as this process's root-less parts."""
        self._ch.insert_rows(
            "trace_fragments", [(t, p, self._process) for t, p in fragments], _COLUMNS, _TYPES
        )

    def known(self, trace_ids: list[str]) -> set[str]:
        """Those of `trace_ids` of which some process recorded a root-less part (`chunk` ids a query)."""
        out: set[str] = set()
        for i in range(0, len(trace_ids), self._chunk):
            chunk = trace_ids[i : i + self._chunk]
            out.update(str(t) for (t,) in self._ch.query_rows(_KNOWN, {"ids": chunk}))
        return out
