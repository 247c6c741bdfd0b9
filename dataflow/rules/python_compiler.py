"""The typed filter tree compiled to a Python predicate over `Span`, for the stream.

Each node becomes a closure; a value is `str`, `float`, `int` (from `length`), `bool` or `None` (SQL NULL),
and every operator follows SQL's three-valued logic exactly as ClickHouse evaluates the SQL compiler's
output (see `dataflow.rules.filter` for the rules and the facts they rest on). No regular-expression
backtracking: LIKE is matched segment by segment, in time linear in the text times the pattern.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

from dataflow.model import Span
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

Value = str | float | int | bool | None
Eval = Callable[[Span], Value]

# Text that converts to a number, in every compiler: sign, digits with an optional point, optional exponent.
NUMBER_TEXT = r"[+-]?(?:[0-9]+[.]?[0-9]*|[.][0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER_TEXT = re.compile(NUMBER_TEXT)

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@functools.cache
def case_maps() -> tuple[dict[int, int], dict[int, int]]:
    """Lower- and upper-case maps: every code point whose Python case mapping is one other code point.

    Both compilers use these same maps (`str.translate` here, `translateUTF8` in ClickHouse), so lower,
    upper and ILIKE agree everywhere; mappings to several code points ('ß' -> 'SS', 'İ' -> 'i̇') and the
    contextual final sigma are left out on purpose.
    """
    lower: dict[int, int] = {}
    upper: dict[int, int] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        lo, up = ch.lower(), ch.upper()
        if lo != ch and len(lo) == 1:
            lower[cp] = ord(lo)
        if up != ch and len(up) == 1:
            upper[cp] = ord(up)
    return lower, upper


def to_lower(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(case_maps()[0])


def to_upper(text: str) -> str:
    return text.upper() if text.isascii() else text.translate(case_maps()[1])


def to_number(text: str) -> float | None:
    """Text as a number when it is entirely NUMBER_TEXT (correctly rounded, as ClickHouse's parser); else None."""
    return float(text) if _NUMBER_TEXT.fullmatch(text) else None


def like_matcher(pattern: str) -> Callable[[str], bool]:
    """ClickHouse LIKE: `%` any run of code points, `_` one code point, `\\` escapes `%`, `_` and `\\` and is
    literal before anything else; the whole text must match; newlines and NUL are ordinary characters."""
    segments: list[list[str | None]] = [[]]  # split at each unescaped %; None is `_`
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            segments[-1].extend((nxt,) if nxt in "%_\\" else ("\\", nxt))
            i += 2
            continue
        if ch == "%":
            segments.append([])
        else:
            segments[-1].append(None if ch == "_" else ch)
        i += 1
    if all(None not in s for s in segments):
        # No `_`: every segment is a literal, matched with str methods (the commonest patterns, and several
        # times faster than a regular expression over long inputs and outputs).
        literals = ["".join(s) for s in segments]  # type: ignore[arg-type]
        if len(literals) == 1:
            return literals[0].__eq__
        return functools.partial(_like_literal, literals[0], tuple(literals[1:-1]), literals[-1])
    parts = [
        (re.compile("".join("." if c is None else re.escape(c) for c in s), re.DOTALL), len(s))
        for s in segments
    ]
    return functools.partial(_like, parts)


def _like_literal(first: str, middle: tuple[str, ...], last: str, text: str) -> bool:
    if not text.startswith(first):
        return False
    pos = len(first)
    for lit in middle:
        if lit:
            found = text.find(lit, pos)
            if found < 0:
                return False
            pos = found + len(lit)
    return len(text) - len(last) >= pos and text.endswith(last)


def _like(parts: Sequence[tuple[re.Pattern[str], int]], text: str) -> bool:
    if len(parts) == 1:
        rx, size = parts[0]
        return len(text) == size and rx.match(text) is not None
    (first, pos), *middle, (last, last_size) = parts
    if first.match(text) is None:
        return False
    for rx, size in middle:
        if size:
            found = rx.search(text, pos)
            if found is None:
                return False
            pos = found.end()
    tail = len(text) - last_size
    return tail >= pos and last.match(text, tail) is not None


def compile_python(tree: Expr) -> Eval:
    """A function of a span giving the filter's value: True, False or None (NULL)."""
    if isinstance(tree, Field):
        return operator.attrgetter(tree.name)
    if isinstance(tree, MapValue):
        key, getter = tree.key, operator.attrgetter(tree.map)
        return lambda span: getter(span).get(key)
    if isinstance(tree, Const):
        value = tree.value
        return lambda span: value
    if isinstance(tree, Call | ToNumber):
        return _unary(compile_python(tree.arg), _FUNCTIONS[tree.func if isinstance(tree, Call) else ""])
    if isinstance(tree, Compare):
        return _compare(_OPS[tree.op], compile_python(tree.left), compile_python(tree.right))
    if isinstance(tree, Logic):
        items = tuple(compile_python(item) for item in tree.items)
        return functools.partial(_and if tree.op == "AND" else _or, items)
    if isinstance(tree, Not):
        return _unary(compile_python(tree.arg), operator.not_)
    if isinstance(tree, IsNull):
        arg = compile_python(tree.arg)
        return lambda span: arg(span) is None
    return _like_eval(tree)


_FUNCTIONS: dict[str, Callable[[str], Value]] = {
    "lower": to_lower,
    "upper": to_upper,
    "length": len,
    "": to_number,
}


def _unary(arg: Eval, func: Callable[..., Value]) -> Eval:
    def evaluate(span: Span) -> Value:
        value = arg(span)
        return None if value is None else func(value)

    return evaluate


def _compare(op: Callable[[Any, Any], Any], left: Eval, right: Eval) -> Eval:
    def evaluate(span: Span) -> Value:
        a = left(span)
        if a is None:
            return None
        b = right(span)
        return None if b is None else bool(op(a, b))

    return evaluate


def _and(items: Sequence[Eval], span: Span) -> Value:
    result: Value = True
    for item in items:
        value = item(span)
        if value is False:
            return False
        if value is None:
            result = None
    return result


def _or(items: Sequence[Eval], span: Span) -> Value:
    result: Value = False
    for item in items:
        value = item(span)
        if value is True:
            return True
        if value is None:
            result = None
    return result


def _like_eval(tree: Like) -> Eval:
    arg = compile_python(tree.arg)
    if tree.caseless:
        matcher = like_matcher(to_lower(tree.pattern))
        return _unary(arg, lambda text: matcher(to_lower(text)))
    return _unary(arg, like_matcher(tree.pattern))
