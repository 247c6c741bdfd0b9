"""Counters and histograms of ingest worker processes, added into the main process's `/metrics`.

A worker counts into its own copy of `dataflow.metrics` (receiver requests, spans, bytes, durations, its log
partition's appends). Every second it sends what grew since the last time (`Deltas.take`) as one JSON line;
the main process adds that to its own metrics (`apply`), so `/metrics` shows one sum over every process and a
restarted worker only ever adds. Gauges stay each process's own (the main process's log gauges count every
partition).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.utils import floatToGoString

from dataflow import metrics

# (sample name, sorted label pairs) -> value, for counter and histogram samples
Sample = tuple[str, tuple[tuple[str, str], ...]]


def _samples() -> dict[Sample, float]:
    out: dict[Sample, float] = {}
    for family in metrics.REGISTRY.collect():
        if family.type not in ("counter", "histogram"):
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Deltas:
    """The worker side: what grew since the previous `take`."""

    def __init__(self) -> None:
        self._last: dict[Sample, float] = {}

    def take(self) -> list[list[Any]]:
        now = _samples()
        out = [
            [name, dict(labels), value - self._last.get((name, labels), 0.0)]
            for (name, labels), value in now.items()
            if value != self._last.get((name, labels), 0.0)
        ]
        self._last = now
        return out


def apply(deltas: list[list[Any]]) -> None:
    """The main side: add a worker's deltas to this process's metrics of the same names."""
    collectors = metrics.REGISTRY._names_to_collectors
    buckets: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, float]] = {}
    for name, labels, delta in deltas:
        collector = collectors.get(name)
        if isinstance(collector, Counter) and name.endswith("_total"):
            (collector.labels(**labels) if labels else collector).inc(delta)
        elif isinstance(collector, Histogram) and name.endswith("_bucket"):
            le = labels.pop("le")
            buckets.setdefault((name[: -len("_bucket")], tuple(sorted(labels.items()))), {})[le] = delta
        elif isinstance(collector, Histogram) and name.endswith("_sum"):
            child = collector.labels(**labels) if labels else collector
            child._sum.inc(delta)
    for (name, labels), by_le in buckets.items():
        histogram = collectors[name + "_bucket"]
        assert isinstance(histogram, Histogram)
        child = histogram.labels(**dict(labels)) if labels else histogram
        below = 0.0
        for bound, bucket in zip(child._upper_bounds, child._buckets, strict=True):
            cumulative = by_le.get(_le(bound), below)
            bucket.inc(cumulative - below)
            below = cumulative


def _le(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]
