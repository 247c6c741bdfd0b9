"""The typed filter tree compiled a third time: vectorised `pyarrow.compute` over a span batch.

`compile_arrow(tree)` gives a function of an Arrow batch with `otel_traces`' columns (`SPAN_SCHEMA`) that
returns one boolean per row: True only where the filter is TRUE, exactly as the Python predicate answers for
the same span (see `dataflow.rules.filter` for the semantics). Values are Arrow arrays or scalars, SQL NULL is
Arrow's null, AND/OR are Kleene logic, and `None` stands for the literal NULL (whose type is unknown).

What Arrow does not do the same way is done with the shared Python rules, on the few rows that need it:
lower/upper of non-ASCII text use `to_lower`/`to_upper` (Arrow's own UTF-8 case mapping follows another
Unicode version and maps some code points to several); numbers from text are gated by the same pattern
(RE2 here: `$` is the end of the text) before Arrow's correctly rounded cast. LIKE becomes an RE2 expression
with every pattern character written as a `\\x{...}` code point, so nothing the user wrote is RE2 syntax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataflow.rules.parser import (
    Call,
    Compare,
    Const,
    Expr,
    Field,
    IsNull,
    Like,
    Logic,
    MapValue,
    Not,
    ToNumber,
)
from dataflow.rules.python_compiler import NUMBER_TEXT, to_lower, to_number, to_upper
from dataflow.rules.sql_compiler import COLUMNS, MAP_COLUMNS

Batch = Any  # pa.RecordBatch or pa.Table with `otel_traces` columns
# An Arrow array or scalar, or None: the literal NULL.
Value = Any
Node = Callable[[Batch], Value]
ArrowEval = Callable[[Batch], pa.BooleanArray]

_NUMBER = f"^{NUMBER_TEXT}$"
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


def compile_arrow(tree: Expr) -> ArrowEval:
    """A function of a span batch: a boolean array, True where the filter is TRUE (FALSE and NULL: False)."""
    node = _compile(tree)

    def evaluate(batch: Batch) -> pa.BooleanArray:
        n = batch.num_rows
        value = node(batch)
        if value is None:
            return pa.array([False] * n, pa.bool_())
        if isinstance(value, pa.Scalar):
            return pa.array([value.as_py() is True] * n, pa.bool_())
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        return pc.fill_null(value, False)

    return evaluate


def _compile(tree: Expr) -> Node:
    if isinstance(tree, Field):
        return _field(tree.name)
    if isinstance(tree, MapValue):
        column, key = MAP_COLUMNS[tree.map], pa.scalar(tree.key, pa.string())
        return lambda batch: pc.map_lookup(batch.column(column), key, "first")
    if isinstance(tree, Const):
        value = None if tree.value is None else pa.scalar(tree.value)
        return lambda batch: value
    if isinstance(tree, Call):
        return _unary(_compile(tree.arg), _FUNCTIONS[tree.func])
    if isinstance(tree, ToNumber):
        return _unary(_compile(tree.arg), _to_number)
    if isinstance(tree, Compare):
        return _compare(_COMPARE[tree.op], _compile(tree.left), _compile(tree.right))
    if isinstance(tree, Logic):
        return _logic(tree.op, tuple(_compile(item) for item in tree.items))
    if isinstance(tree, Not):
        return _unary(_compile(tree.arg), pc.invert)
    if isinstance(tree, IsNull):
        return _is_null(_compile(tree.arg))
    return _like(tree)


def _field(name: str) -> Node:
    if name == "duration_ms":
        return lambda batch: pc.divide(pc.cast(batch.column("Duration"), pa.float64(), safe=False), 1e6)
    if name == "is_root":
        return lambda batch: pc.equal(batch.column("ParentSpanId"), "")
    column = COLUMNS[name]
    return lambda batch: batch.column(column)


def _unary(arg: Node, func: Callable[[Any], Any]) -> Node:
    def evaluate(batch: Batch) -> Value:
        value = arg(batch)
        return None if value is None else func(value)

    return evaluate


def _compare(op: Callable[[Any, Any], Any], left: Node, right: Node) -> Node:
    def evaluate(batch: Batch) -> Value:
        a = left(batch)
        b = right(batch)
        return None if a is None or b is None else op(a, b)

    return evaluate


def _logic(op: str, items: tuple[Node, ...]) -> Node:
    kleene = pc.and_kleene if op == "AND" else pc.or_kleene
    null = pa.scalar(None, pa.bool_())

    def evaluate(batch: Batch) -> Value:
        values = [item(batch) for item in items]
        result = null if values[0] is None else values[0]
        for value in values[1:]:
            result = kleene(result, null if value is None else value)
        return result

    return evaluate


def _is_null(arg: Node) -> Node:
    def evaluate(batch: Batch) -> Value:
        value = arg(batch)
        if value is None:
            return pa.scalar(True)
        if isinstance(value, pa.Scalar):
            return pa.scalar(not value.is_valid)
        return pc.is_null(value)

    return evaluate


def _text_map(ascii_func: Callable[[Any], Any], func: Callable[[str], str]) -> Callable[[Any], Any]:
    """Arrow's ASCII case mapping, with `func` (the shared Python mapping) on the rows that are not ASCII."""

    def apply(value: Any) -> Any:
        if isinstance(value, pa.Scalar):
            return value if not value.is_valid else pa.scalar(func(value.as_py()), pa.string())
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        mapped = ascii_func(value)
        other = pc.fill_null(pc.invert(pc.string_is_ascii(value)), False)
        rows = pc.indices_nonzero(other)
        if len(rows) == 0:
            return mapped
        texts = [func(text) for text in value.take(rows).to_pylist()]
        return pc.replace_with_mask(mapped, other, pa.array(texts, pa.string()))

    return apply


def _length(value: Any) -> Any:
    return pc.cast(pc.utf8_length(value), pa.float64())


def _to_number(value: Any) -> Any:
    """Text as a number where it is entirely NUMBER_TEXT, else null (`python_compiler.to_number`)."""
    if isinstance(value, pa.Scalar):
        number = None if not value.is_valid else to_number(value.as_py())
        return pa.scalar(number, pa.float64())
    ok = pc.match_substring_regex(value, _NUMBER)
    return pc.cast(pc.if_else(ok, value, pa.scalar(None, pa.string())), pa.float64())


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "lower": _text_map(pc.ascii_lower, to_lower),
    "upper": _text_map(pc.ascii_upper, to_upper),
    "length": _length,
}


def _code_point(ch: str) -> str:
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):x}}}"


def like_regex(pattern: str) -> str:
    """ClickHouse LIKE (as `python_compiler.like_matcher`) as an anchored RE2 expression over code points."""
    out = ["(?s)^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(_code_point(nxt) if nxt in "%_\\" else _code_point("\\") + _code_point(nxt))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else _code_point(ch))
        i += 1
    out.append("$")
    return "".join(out)


def _like(tree: Like) -> Node:
    regex = like_regex(to_lower(tree.pattern) if tree.caseless else tree.pattern)
    lower = _FUNCTIONS["lower"]

    def match(value: Any) -> Any:
        if isinstance(value, pa.Scalar):
            return pc.match_substring_regex(pa.array([value.as_py()], pa.string()), regex)[0]
        return pc.match_substring_regex(value, regex)

    arg = _compile(tree.arg)
    if tree.caseless:
        arg = _unary(arg, lower)
    return _unary(arg, match)
