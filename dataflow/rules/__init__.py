"""Deciding what to score: rule filters (and, later, targeting and sampling)."""

from dataflow.rules.filter import CompiledFilter, FilterError, compile_filter

__all__ = ["CompiledFilter", "FilterError", "compile_filter"]
