"""Reading the running service: its Prometheus ``/metrics`` (``scrape``, sums, histogram quantiles as
Prometheus computes them), rows by SQL (``sql_rows``) and the problems in its log (``log_problems``)."""

from __future__ import annotations

import math
import re
import urllib.request
from pathlib import Path
from typing import Any

from bench.service import sql


def scrape(api: str, timeout: float = 10.0) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of ``/metrics`` as (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(api + "/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return [
        (s.name, dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def metric_by(samples: list[tuple[str, dict[str, str], float]], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for n, lab, v in samples:
        if n == name:
            out[lab.get(label, "")] = out.get(lab.get(label, ""), 0.0) + v
    return out


def histogram_buckets(
    samples: list[tuple[str, dict[str, str], float]], name: str
) -> list[tuple[float, float]]:
    """Cumulative (le, count) pairs of a histogram, sorted, +Inf last."""
    return sorted((float(lab["le"]), v) for n, lab, v in samples if n == name + "_bucket")


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Prometheus' ``histogram_quantile``: (value, bucket lower bound, bucket upper bound)."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan, math.nan, math.nan
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):  # in the +Inf bucket: the highest finite bound, like Prometheus
                return prev_le, prev_le, le
            if c == prev_c:
                return le, prev_le, le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c), prev_le, le
        prev_le, prev_c = le, c
    return math.nan, math.nan, math.nan


def sql_rows(api: str, query: str, timeout: float = 60.0) -> list[list[Any]]:
    return list(sql(api, query, timeout)["data"])


def log_problems(path: Path, limit: int = 12) -> dict[str, Any]:
    """WARNING / ERROR / Traceback lines of the service log (counts by level, first samples)."""
    counts = {"WARNING": 0, "ERROR": 0, "CRITICAL": 0, "Traceback": 0}
    samples: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"counts": counts, "samples": samples}
    for line in lines:
        m = re.search(r" (WARNING|ERROR|CRITICAL) ", line)
        key = m.group(1) if m else ("Traceback" if line.startswith("Traceback") else None)
        if key is None:
            continue
        counts[key] += 1
        if len(samples) < limit:
            samples.append(line[:300])
    return {"counts": counts, "samples": samples}
