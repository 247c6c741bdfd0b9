"""Which rules each span of a batch matched: the rules' filters over a whole Arrow batch at once.

The flow's spans step calls `match_batch` on each log batch (rows of projects with rules). Per row it gives
the tag of the row's project's rules and a bitmask: bit i is set when the i-th rule samples the row's trace
and its filter is TRUE for the row (`CompiledFilter.mask`, one vectorised evaluation per rule over the rows
that rule samples). The span carries both (`Span.rules_tag`, `Span.matched`); the engine reads the bit instead
of calling the predicate when the tag is still its rules' (`matcher`).

A tag names the rules by content (ids, versions, filters, in order), so it survives a reload that changed
nothing and means the same in every process; a different tag (the rules changed since the span arrived), or
none, falls back to the predicate. A rule whose filter is not vectorised is marked as matched on every row it
samples (so those spans are built in full) and always decided by its predicate.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataflow.model import Span
from dataflow.rules.arrow_compiler import Memo
from dataflow.rules.model import CompiledRule, hash64
from dataflow.rules.sampling import sample_matrix

logger = logging.getLogger(__name__)

Rules = tuple[CompiledRule, ...]
_TAGS: dict[int, tuple[Rules, int]] = {}


def rules_tag(rules: Rules) -> int:
    """A nonzero 64-bit tag for a project's rules, the same for the same rules in any process."""
    hit = _TAGS.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1]
    if len(_TAGS) > 64:
        _TAGS.clear()
    text = "\x00".join(f"{r.id}\x01{r.spec.version}\x01{r.filter.text}" for r in rules)
    tag = hash64(text) | 1
    _TAGS[id(rules)] = (rules, tag)
    return tag


def matcher(rule: CompiledRule, index: int, tag: int) -> Callable[[Span], bool]:
    """`rule.filter.matches`, answered from the span's bits when they were computed for `tag`'s rules."""
    predicate = rule.filter.matches
    if not rule.filter.vectorised:
        return predicate
    bit = 1 << index

    def matches(span: Span) -> bool:
        if span.rules_tag == tag:
            return bool(span.matched & bit)
        return predicate(span)

    return matches


def settled_unmatched(spans: tuple[Span, ...], rules: Rules) -> bool:
    """True when every span carries its match bits for `rules` and none matched: every sampled rule's decision
    (filtered out) is known without the spans' text, so partial spans need not be completed."""
    tag = rules_tag(rules)
    return all(s.rules_tag == tag and not s.matched for s in spans)


class _Rows:
    """Some rows of a batch, each column taken when a filter first reads it (filters read few columns)."""

    def __init__(self, batch: Any, rows: pa.Array) -> None:
        self._batch = batch
        self._rows = rows
        self._columns: dict[str, Any] = {}
        self.num_rows = len(rows)

    def column(self, name: str) -> Any:
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = self._batch.column(name).take(self._rows)
        return col


def _pack(matched: Any) -> list[int]:
    """Rows x rules booleans -> one int per row, bit i for column i."""
    bits = [0] * matched.shape[0]
    for start in range(0, matched.shape[1], 62):
        chunk = matched[:, start : start + 62].astype(np.int64)
        weights = np.left_shift(np.int64(1), np.arange(chunk.shape[1], dtype=np.int64))
        values = (chunk @ weights).tolist()
        bits = values if start == 0 else [b | (v << start) for b, v in zip(bits, values, strict=True)]
    return bits


def match_rows(batch: Any, rules: Rules) -> list[int]:
    """Per row of `batch` (one project's rows): the bits of `rules` that sample its trace and match it."""
    trace_ids = batch.column("TraceId")
    if isinstance(trace_ids, pa.ChunkedArray):
        trace_ids = trace_ids.combine_chunks()
    encoded = pc.dictionary_encode(trace_ids)
    traces = [hash64(t) for t in encoded.dictionary.to_pylist()]
    sampled = sample_matrix(traces, rules)[encoded.indices.to_numpy(zero_copy_only=False)]
    matched = np.zeros(sampled.shape, dtype=bool)
    memo: Memo = {}
    for r, rule in enumerate(rules):
        rows = sampled[:, r]
        if not rows.any():
            continue
        if not rule.filter.vectorised:
            matched[:, r] = rows
            continue
        matched[:, r] = rows & rule.filter.mask(batch, memo).to_numpy(zero_copy_only=False)
    return _pack(matched)


def match_batch(batch: Any, rules_of: Callable[[str], Rules]) -> tuple[list[int], list[int]]:
    """Per row: its project's rules' tag and its match bits. A batch Arrow cannot evaluate (logged) gets tag 0
    and every bit set: its spans are built in full and decided by the predicates, as before this path."""
    n = batch.num_rows
    projects = batch.column("Project")
    names = pc.unique(projects).to_pylist()
    try:
        if len(names) == 1:
            rules = rules_of(names[0])
            return [rules_tag(rules)] * n, match_rows(batch, rules)
        tags, bits = [0] * n, [0] * n
        for name in names:
            rows = pc.indices_nonzero(pc.equal(projects, name))
            rules = rules_of(name)
            tag = rules_tag(rules)
            for row, value in zip(rows.to_pylist(), match_rows(batch.take(rows), rules), strict=True):
                tags[row], bits[row] = tag, value
    except (pa.ArrowException, ValueError, TypeError):
        logger.warning("rule filters could not be evaluated over a batch; span by span", exc_info=True)
        return [0] * n, [-1] * n
    return tags, bits


class MatchedTraces:
    """Trace ids that matched some rule lately, so that a trace's later spans are built in full too.

    Bounded (the oldest are forgotten) and not recovery state: a trace it forgot, or forgot across a restart,
    holds partial spans and is completed from ClickHouse when it closes.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def full_rows(self, trace_ids: list[str], bits: list[int]) -> list[bool]:
        """Per row: does its trace match some rule, in this batch (`bits`) or an earlier one?"""
        ids = self._ids
        for tid, b in zip(trace_ids, bits, strict=True):
            if b and tid not in ids:
                ids[tid] = None
                if len(ids) > self._limit:
                    ids.popitem(last=False)
        if not ids:
            return [False] * len(trace_ids)
        return [t in ids for t in trace_ids]
