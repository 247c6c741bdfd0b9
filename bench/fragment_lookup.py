"""The per-batch query of the scoring step's check for root-less parts (issue 14 item 2), on embedded chDB.

Two designs, the same batches: the look-up in `trace_fragments` that the step makes
(`connectors/clickhouse/fragments_store.py`), against asking `otel_traces` for the span ids of the batch's
traces (ids only, bounded by their projects and times; the first design). `otel_traces` gets `--traces` traces
of 10 spans at 2,000 traces/s in 4 projects x 3 services x 10 span names with 500-byte texts, `trace_fragments`
`--fragments` rows; a batch is `--batch` traces that began together, 5 of them recorded.

    python -m bench.fragment_lookup --data-dir /tmp/fragment-lookup
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import time
from pathlib import Path

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.fragments_store import FragmentStore
from connectors.clickhouse.migrate import migrate

NS = 1_000_000_000
T0 = 1_790_000_000 * NS
_SPANS = """
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, ServiceName, Project, Input, Output,
                         ScopeName, IngestedAt, Duration)
SELECT fromUnixTimestamp64Nano(toInt64({t0} + intDiv(number, 10) * 500000 + (number % 10) * 1000000)),
       lower(hex(cityHash64(intDiv(number, 10), 'tr'))) || lower(hex(cityHash64(intDiv(number, 10), 'x'))),
       lower(hex(cityHash64(number, 'sp'))),
       if(number % 10 = 0, '', lower(hex(cityHash64(intDiv(number, 10) * 10, 'sp')))),
       ['agent', 'llm.call', 'tool', 'retrieve', 'rerank', 'embed', 'plan', 'answer', 'guard', 'search'][number % 10 + 1],
       ['svc-a', 'svc-b', 'svc-c'][intDiv(number, 10) % 3 + 1],
       ['alpha', 'beta', 'gamma', 'delta'][intDiv(number, 10) % 4 + 1],
       repeat('question text ', 40), repeat('answer text ', 40), 'opentelemetry', now64(9), 5000000
FROM numbers({first}, {count})
"""
SPAN_IDS = """
SELECT TraceId, SpanId FROM otel_traces
WHERE Project IN {projects:Array(String)} AND TraceId IN {trace_ids:Array(String)}
  AND Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({hi:Int64})
  AND ScopeName != 'tracejudge.judge'
"""


def fill(ch: ClickHouse, traces: int, fragments: int) -> None:
    if ch.query_rows("SELECT count() FROM otel_traces")[0][0] == 0:
        for first in range(0, traces * 10, 500_000):
            ch.command(_SPANS.format(t0=T0, first=first, count=min(500_000, traces * 10 - first)))
    store = FragmentStore(ch, "bench")
    while (have := int(ch.query_rows("SELECT count() FROM trace_fragments")[0][0])) < fragments:
        store.record([(secrets.token_hex(16), "alpha") for _ in range(min(10_000, fragments - have))])


def measure(ch: ClickHouse, batch: int, repeat: int) -> dict[str, list[float]]:
    traces = ch.query_rows(
        "SELECT TraceId, toUnixTimestamp64Nano(min(Timestamp)), toUnixTimestamp64Nano(max(Timestamp)), "
        "any(Project) FROM otel_traces GROUP BY TraceId ORDER BY 2"
    )
    recorded = [str(r[0]) for r in ch.query_rows("SELECT TraceId FROM trace_fragments LIMIT 1000")]
    store = FragmentStore(ch, "bench")
    out: dict[str, list[float]] = {"span ids": [], "look-up": []}
    for _ in range(repeat):
        start = random.randrange(len(traces) // 2, len(traces) - batch)
        chunk = traces[start : start + batch]
        batch_ids = [str(r[0]) for r in chunk]
        params = {
            "trace_ids": batch_ids, "projects": sorted({str(r[3]) for r in chunk}),
            "lo": min(int(r[1]) for r in chunk) - 5 * NS, "hi": max(int(r[2]) for r in chunk) + 5 * NS,
        }  # fmt: skip
        t = time.perf_counter()
        ch.query_arrow(SPAN_IDS, params)
        out["span ids"].append(time.perf_counter() - t)
        ids = batch_ids[:-5] + random.sample(recorded, 5)
        t = time.perf_counter()
        store.known(ids)
        out["look-up"].append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.fragment_lookup", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", required=True, help="chDB data directory (kept: a second run reuses its rows)"
    )
    p.add_argument("--traces", type=int, default=200_000, help="traces of 10 spans in otel_traces")
    p.add_argument("--fragments", type=int, default=100_000, help="rows in trace_fragments")
    p.add_argument("--batch", type=int, nargs="+", default=[50, 200, 1000], help="traces a batch")
    p.add_argument("--repeat", type=int, default=7, help="batches per size")
    args = p.parse_args(argv)
    ch = ClickHouse(f"chdb://{Path(args.data_dir).resolve()}")
    migrate(ch)
    fill(ch, args.traces, args.fragments)
    for batch in args.batch:
        for name, times in measure(ch, batch, args.repeat).items():
            times.sort()
            print(f"batch {batch:5d} {name:9s} median {times[len(times) // 2] * 1e3:7.1f} ms  "
                  f"range {times[0] * 1e3:.1f}-{times[-1] * 1e3:.1f} ms")  # fmt: skip
    ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
