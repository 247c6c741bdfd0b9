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

import numpy as np
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
    Type,
)
from dataflow.rules.python_compiler import NUMBER_TEXT, to_lower, to_number, to_upper
from dataflow.rules.sql_compiler import COLUMNS, MAP_COLUMNS

Batch = Any  # pa.RecordBatch or pa.Table with `otel_traces` columns
# An Arrow array or scalar, or None: the literal NULL.
Value = Any
# Values already computed for this batch, by subtree: rules that share a subexpression compute it once.
Memo = dict[Expr, Value]
Node = Callable[[Batch, Memo], Value]
ArrowEval = Callable[[Batch, Memo | None], pa.BooleanArray]
_MISS = object()
_PLAIN = frozenset(COLUMNS) - {"duration_ms", "is_root"}  # fields that are a column as it is

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

    def evaluate(batch: Batch, memo: Memo | None = None) -> pa.BooleanArray:
        n = batch.num_rows
        value = node(batch, {} if memo is None else memo)
        if value is None:
            return pa.array([False] * n, pa.bool_())
        if isinstance(value, pa.Scalar):
            return pa.array([value.as_py() is True] * n, pa.bool_())
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        return pc.fill_null(value, False) if value.null_count else value

    return evaluate


def _compile(tree: Expr) -> Node:
    node = _node(tree)
    if isinstance(tree, Const) or (isinstance(tree, Field) and tree.name in _PLAIN):
        return node

    def evaluate(batch: Batch, memo: Memo) -> Value:
        value = memo.get(tree, _MISS)
        if value is _MISS:
            value = memo[tree] = node(batch, memo)
        return value

    return evaluate


def _node(tree: Expr) -> Node:
    if isinstance(tree, Field):
        return _field(tree.name)
    if isinstance(tree, MapValue):
        column, key = MAP_COLUMNS[tree.map], tree.key
        return lambda batch, memo: map_value(batch.column(column), key)
    if isinstance(tree, Const):
        value = None if tree.value is None else pa.scalar(tree.value)
        return lambda batch, memo: value
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
        return lambda batch, memo: pc.divide(pc.cast(batch.column("Duration"), pa.float64(), safe=False), 1e6)
    if name == "is_root":
        return lambda batch, memo: pc.equal(batch.column("ParentSpanId"), "")
    column = COLUMNS[name]
    return lambda batch, memo: batch.column(column)


def map_value(column: Any, key: str) -> pa.Array:
    """`pc.map_lookup(column, key, "first")` (null where the key is missing), several times faster: one
    comparison over all the batch's keys, then the first hit per row."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    # `offsets` are the slice's, `keys`/`items` the whole unsliced child arrays: look only between the ends.
    offsets = column.offsets.to_numpy()
    lo, hi = int(offsets[0]), int(offsets[-1])
    hits = np.flatnonzero(pc.equal(column.keys.slice(lo, hi - lo), key).to_numpy(zero_copy_only=False))
    if hits.size == 0:
        return pa.nulls(n, pa.string())
    rows, first = np.unique(np.searchsorted(offsets, hits + lo, side="right") - 1, return_index=True)
    index = np.zeros(n, dtype=np.int64)
    index[rows] = hits[first]
    missing = np.ones(n, dtype=bool)
    missing[rows] = False
    return column.items.slice(lo, hi - lo).take(pa.array(index, mask=missing))


def _unary(arg: Node, func: Callable[[Any], Any]) -> Node:
    def evaluate(batch: Batch, memo: Memo) -> Value:
        value = arg(batch, memo)
        return None if value is None else func(value)

    return evaluate


def _compare(op: Callable[[Any, Any], Any], left: Node, right: Node) -> Node:
    def evaluate(batch: Batch, memo: Memo) -> Value:
        a = left(batch, memo)
        b = right(batch, memo)
        return None if a is None or b is None else op(a, b)

    return evaluate


def _logic(op: str, items: tuple[Node, ...]) -> Node:
    kleene = pc.and_kleene if op == "AND" else pc.or_kleene
    null = pa.scalar(None, pa.bool_())

    def evaluate(batch: Batch, memo: Memo) -> Value:
        values = [item(batch, memo) for item in items]
        result = null if values[0] is None else values[0]
        for value in values[1:]:
            result = kleene(result, null if value is None else value)
        return result

    return evaluate


def _is_null(arg: Node) -> Node:
    def evaluate(batch: Batch, memo: Memo) -> Value:
        value = arg(batch, memo)
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


def _like_tokens(pattern: str) -> list[str | None]:
    """The pattern as literal characters, `None` for `%` and "" for `_` (as `python_compiler.like_matcher`)."""
    out: list[str | None] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.extend((nxt,) if nxt in "%_\\" else ("\\", nxt))
            i += 2
            continue
        out.append(None if ch == "%" else "" if ch == "_" else ch)
        i += 1
    return out


def like_regex(pattern: str) -> str:
    """ClickHouse LIKE as an RE2 search over code points: anchored only where the pattern does not start or
    end with `%` (an unanchored search is several times faster than a leading and trailing `.*`)."""
    tokens = _like_tokens(pattern)
    head = 0
    while head < len(tokens) and tokens[head] is None:
        head += 1
    tail = len(tokens)
    while tail > head and tokens[tail - 1] is None:
        tail -= 1
    body = "".join(".*" if t is None else "." if t == "" else _code_point(t) for t in tokens[head:tail])
    return "(?s)" + ("" if head else "^") + body + ("" if tail < len(tokens) else "$")


def _like_kernel(pattern: str) -> Callable[[Any], Any]:
    """The cheapest exact Arrow kernel for the pattern: equality, prefix, suffix, else an RE2 search."""
    tokens = _like_tokens(pattern)
    literal = [t for t in tokens if t]
    if len(literal) == len(tokens):
        text = "".join(literal)
        return lambda value: pc.equal(value, text)
    if len(literal) == len(tokens) - 1 and tokens[-1] is None:
        prefix = "".join(literal)
        return lambda value: pc.starts_with(value, prefix)
    if len(literal) == len(tokens) - 1 and tokens[0] is None:
        suffix = "".join(literal)
        return lambda value: pc.ends_with(value, suffix)
    regex = like_regex(pattern)

    def search(value: Any) -> Any:
        if isinstance(value, pa.Scalar):
            return pc.match_substring_regex(pa.array([value.as_py()], pa.string()), regex)[0]
        return pc.match_substring_regex(value, regex)

    return search


def _like(tree: Like) -> Node:
    if tree.caseless:
        arg = _compile(
            Call("lower", tree.arg, Type.TEXT)
        )  # shared with other rules' lower() of the same text
        return _unary(arg, _like_kernel(to_lower(tree.pattern)))
    return _unary(_compile(tree.arg), _like_kernel(tree.pattern))
