"""Deterministic sampling of many (trace, rule) pairs at once.

The same arithmetic as `dataflow.rules.model.sample_point` (splitmix64 of the rule's and the trace's 64-bit
hashes, as a point in [0, 1) against the rate), on numpy arrays: one call for a batch of traces and all of a
project's rules instead of one Python call per pair. `tests/unit/test_rules.py` checks both agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dataflow.rules.model import CompiledRule

_U = np.uint64
_GOLDEN = _U(0x9E3779B97F4A7C15)
_M1 = _U(0xBF58476D1CE4E5B9)
_M2 = _U(0x94D049BB133111EB)
_SCALE = float(2**64)

# Per rule tuple (immutable, swapped whole on reload): its salts and rates as arrays.
_CACHE: dict[int, tuple[tuple[CompiledRule, ...], Any, Any]] = {}


def _arrays(rules: tuple[CompiledRule, ...]) -> tuple[Any, Any]:
    hit = _CACHE.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1], hit[2]
    if len(_CACHE) > 64:
        _CACHE.clear()
    salts = np.array([r.salt for r in rules], dtype=_U)
    rates = np.array([r.spec.sampling_rate for r in rules], dtype=np.float64)
    _CACHE[id(rules)] = (rules, salts, rates)
    return salts, rates


def sample_points(trace_hashes: Sequence[int], salts: Any) -> Any:
    """(traces x rules) points in [0, 1)."""
    th = np.array(trace_hashes, dtype=_U)[:, None]
    z = (th ^ salts[None, :]) + _GOLDEN
    z = (z ^ (z >> _U(30))) * _M1
    z = (z ^ (z >> _U(27))) * _M2
    z = z ^ (z >> _U(31))
    return z.astype(np.float64) / _SCALE


def sample_matrix(trace_hashes: Sequence[int], rules: tuple[CompiledRule, ...]) -> Any:
    """Boolean (traces x rules): is the trace in the rule's sample? Rate 1 keeps all, 0 none."""
    salts, rates = _arrays(rules)
    return (sample_points(trace_hashes, salts) < rates[None, :]) | (rates >= 1.0)[None, :]
