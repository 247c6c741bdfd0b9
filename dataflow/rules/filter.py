"""The rule filter language: a SQL WHERE subset, parsed once with sqlglot, compiled three times.

`compile_filter(text)` parses the text into one typed tree (`dataflow.rules.parser`) and compiles it to a
Python predicate over `Span` (`python_compiler`, the reference), to vectorised `pyarrow.compute` over a span
batch for the stream (`arrow_compiler`: one boolean per row), and to a parameterised ClickHouse WHERE
fragment over `otel_traces` for replay, backfill and "test rule" (`sql_compiler`). The three agree on every
input, NULLs included: a differential test runs random filters over random spans through all three, on chDB.

Language
    fields        name input output kind status_code status_message service_name project session_id (text),
                  duration_ms (number), is_root (boolean), attributes['key'] and resource['key'] (text;
                  NULL when the key is missing). Names are case-insensitive; keys are string literals.
    literals      'text' (standard SQL: '' is a quote, a backslash is an ordinary character), numbers
                  (42, -4.2, 0.5, 5., 1e3, -2E-3; not .5), TRUE, FALSE, NULL.
    operators     = != <> < <= > >=, AND OR NOT, IS [NOT] NULL, [NOT] IN (...), [NOT] LIKE, [NOT] ILIKE,
                  [NOT] BETWEEN a AND b, parentheses. `-- comments` and `/* comments */` are ignored.
    functions     lower(text), upper(text), length(text).
    The empty (or blank) filter matches every span (SQL `1`).

Semantics (identical on both sides; the ClickHouse facts were checked on chDB 4.4 / ClickHouse 26.9)
    NULL          SQL three-valued logic. A missing attribute is NULL (SQL: `if(mapContains(m, k), m[k],
                  NULL)`, since ClickHouse's `m['missing']` is ''); an attribute set to '' is ''. A comparison,
                  function or LIKE with a NULL operand is NULL; NOT NULL is NULL; AND is FALSE if any side is
                  FALSE, else NULL if any is NULL; OR is TRUE if any side is TRUE, else NULL if any is NULL.
                  A span matches only when the filter is TRUE (NULL and FALSE do not match).
    IN            `x IN (a, b)` is `x = a OR x = b`, so `x IN (1, NULL)` is TRUE when x = 1, else NULL, and
                  `NULL IN (...)` is NULL (ClickHouse's own IN answers FALSE for `3 IN (1, NULL)`: not used).
    BETWEEN       `x BETWEEN a AND b` is `x >= a AND x <= b` (NULL bounds allowed: that half is NULL).
    `= NULL`      refused when the rule is saved (it is never true): write IS NULL / IS NOT NULL.
    text          compared as UTF-8 bytes (Python compares code points, which orders the same).
    text/number   when one side is a number and the other text (a field, attribute or function of them),
                  the text converts to a number if it is entirely `[+-]digits[.digits][e[+-]digits]` (also
                  `5.` and `.5`), correctly rounded; anything else (' 7', '1_000', 'nan', 'inf', '0x1F', '')
                  is NULL. ClickHouse's `toFloat64OrNull` alone would accept 'nan' and 'inf', Python's
                  `float` also ' 7' and '1_000', so both sides gate on that pattern first. Overflow gives
                  +-inf on both sides. A quoted literal compared with a number ('5' = duration_ms) is
                  refused; text with text is never converted ('10' < '9' is TRUE).
    numbers       64-bit floats; -0 equals 0 (the SQL adds `+ 0.` to every converted number and sends -0 as
                  0: ClickHouse turns chains of 3+ `=` (or `!=`) into IN (NOT IN), whose hash set tells -0.
                  from 0.); duration_ms is Duration / 1e6 (UInt64 nanoseconds, rounded to a double
                  first, as Python's int / float does); length() is an integer.
    booleans      is_root and comparisons are booleans; booleans compare only with = and !=; `is_root`
                  and `NOT is_root` are conditions on their own. A filter must be a condition.
    lower/upper   one code point to one code point, from Python's Unicode tables: every code point whose
                  Python lower()/upper() is a single other code point (ClickHouse: `translateUTF8` with those
                  maps as parameters). So 'Ä' -> 'ä' and capital sigma -> small sigma (never the final 'ς'),
                  while 'ß', 'İ' and 'ŉ', whose mappings are several code points, stay as they are.
                  ClickHouse's own functions would not match Python: `lower`/`upper` are ASCII-only, and
                  `lowerUTF8`/`upperUTF8` (ICU, Unicode 16) differ from Python 3.11 (Unicode 14) on 55 code
                  points each, plus context rules; an integration test compares the maps on all code points.
    length        characters (code points): `lengthUTF8`.
    LIKE          ClickHouse LIKE: `%` any run of characters, `_` exactly one character (code point,
                  newlines and NUL included), backslash escapes `%`, `_` and backslash, and is an ordinary
                  character before anything else ('a\\b' LIKE 'a\\b'); the whole text must match. A pattern
                  ending in a lone backslash is refused (ClickHouse raises). Patterns are string literals.
    ILIKE         `lower(x) LIKE lower(pattern)` with the lower() above. ClickHouse's own ILIKE is not used:
                  it folds differently in its substring fast path and its regex path ('ß' ILIKE 'ẞ' is TRUE
                  but 'ß' ILIKE '%ẞ%' is FALSE; likewise long s / 's' and final / small sigma).

Refused when the rule is saved, with the position and token: unknown fields and functions, other operators
(`==`, `!`, `<=>`, `||`, arithmetic, `*`), casts, CASE, subqueries, regular expressions, placeholders,
double-quoted names, string prefixes, `;`, values written back to back, `= NULL`, type mismatches, a
non-literal LIKE pattern or attribute key, texts over 100,000 characters, nesting over 32 levels.

`fields` lists what a filter reads: field names, and `attributes['key']` / `resource['key']` with quotes
doubled inside the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dataflow.model import SPAN_SCHEMA, Span
from dataflow.rules.arrow_compiler import ArrowEval, Memo, compile_arrow
from dataflow.rules.parser import Expr, FilterError, parse
from dataflow.rules.python_compiler import Eval, compile_python
from dataflow.rules.sql_compiler import compile_sql

__all__ = ["CompiledFilter", "FilterError", "compile_filter"]

logger = logging.getLogger(__name__)


def _everything(span: Span) -> bool:
    return True


def _all_rows(batch: pa.RecordBatch | pa.Table, memo: Memo | None = None) -> pa.BooleanArray:
    return pa.array([True] * batch.num_rows, pa.bool_())


@dataclass(frozen=True)
class CompiledFilter:
    """A filter compiled for the stream (`matches`) and for ClickHouse (`sql` with `params`)."""

    text: str
    sql: str
    params: dict[str, Any]
    fields: frozenset[str]
    _predicate: Eval = field(default=_everything, repr=False, compare=False)
    _arrow: ArrowEval | None = field(default=_all_rows, repr=False, compare=False)

    def matches(self, span: Span) -> bool:
        """True only when the filter is TRUE for the span (FALSE and NULL are no match)."""
        return self._predicate(span) is True

    @property
    def vectorised(self) -> bool:
        """False when the filter could not be compiled for Arrow: use `matches` span by span."""
        return self._arrow is not None

    def mask(self, batch: pa.RecordBatch | pa.Table, memo: Memo | None = None) -> pa.BooleanArray:
        """Per row of a batch with `otel_traces`' columns: True only where the filter is TRUE (as `matches`).
        Filters evaluated over the same batch with the same `memo` share their common subexpressions."""
        if self._arrow is None:
            msg = "this filter is not vectorised; use matches()"
            raise ValueError(msg)
        return self._arrow(batch, memo)


def compile_filter(text: str, *, param_prefix: str = "f") -> CompiledFilter:
    """Compile a filter or raise FilterError naming the position and token of the first problem.

    `param_prefix` names the SQL parameters (`{f0:String}`, ...), so that several filters, or a filter and
    the query around it, can share one parameter namespace.
    """
    parsed = parse(text)
    sql, params = compile_sql(parsed.tree, param_prefix)
    if parsed.tree is None:
        return CompiledFilter(text, sql, params, parsed.fields)
    return CompiledFilter(
        text, sql, params, parsed.fields, compile_python(parsed.tree), _vectorised(parsed.tree)
    )


_EMPTY = SPAN_SCHEMA.empty_table()


def _vectorised(tree: Expr) -> ArrowEval | None:
    """The Arrow form, or None when Arrow refuses it (e.g. a LIKE pattern too large for RE2): that rule's
    filter is then evaluated span by span (`matches`)."""
    try:
        arrow = compile_arrow(tree)
        arrow(_EMPTY, None)
    except (pa.ArrowException, ValueError, TypeError):
        logger.warning("filter not vectorised, evaluated span by span", exc_info=True)
        return None
    return arrow
