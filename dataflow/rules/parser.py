"""The filter language's front end: sqlglot tokens and AST in, one typed tree out.

Two passes over sqlglot's output, so that every refusal names a position and a token:

1. the token pass (`_check_tokens`) refuses whatever is outside the language before parsing: unknown
   names and functions, operators that are not ours, `;`, `*`, casts, placeholders, string prefixes,
   values written back to back (`x = 1 y`, which sqlglot would read as an alias), and so on;
2. the tree pass (`_Builder`) walks sqlglot's AST, checks types and builds the typed tree below, which
   the compilers read. `IN` becomes a chain of `=` joined by OR and `BETWEEN` a pair of comparisons
   joined by AND, so the compilers cannot disagree on them.

The semantics are documented in `dataflow.rules.filter`; the shared value rules (number grammar, case
mapping) live in `dataflow.rules.python_compiler` (Python) and `dataflow.rules.sql_compiler` (SQL).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn

from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError
from sqlglot.parser import Parser
from sqlglot.tokenizer_core import Token
from sqlglot.tokenizer_core import TokenType as T
from sqlglot.tokens import Tokenizer

from dataflow.errors import RuleCompileError

MAX_TEXT = 100_000
MAX_DEPTH = 32
MAX_NODES = 2_000


class FilterError(RuleCompileError):
    """The filter text is not in the filter language; `position` is a 0-based offset into the text."""

    def __init__(self, reason: str, position: int, token: str) -> None:
        shown = token if len(token) <= 40 else token[:37] + "..."
        super().__init__(f"filter error at position {position} near {shown!r}: {reason}")
        self.reason = reason
        self.position = position
        self.token = token


class Type(Enum):
    TEXT = "text"
    NUMBER = "number"
    BOOL = "boolean"
    NULL = "NULL"


FIELDS: dict[str, Type] = {
    **dict.fromkeys(
        ("name", "input", "output", "kind", "status_code", "status_message", "service_name", "project"),
        Type.TEXT,
    ),
    "session_id": Type.TEXT,
    "duration_ms": Type.NUMBER,
    "is_root": Type.BOOL,
}
MAPS = ("attributes", "resource")
FUNCTIONS: dict[str, Type] = {"lower": Type.TEXT, "upper": Type.TEXT, "length": Type.NUMBER}
NUMBER_LITERAL = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# ---- the typed tree ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: Type


@dataclass(frozen=True, slots=True)
class MapValue:
    map: str  # "attributes" or "resource"
    key: str
    type: Type = Type.TEXT


@dataclass(frozen=True, slots=True)
class Const:
    value: str | float | bool | None
    type: Type


@dataclass(frozen=True, slots=True)
class Call:
    func: str  # "lower", "upper", "length"
    arg: Expr
    type: Type


@dataclass(frozen=True, slots=True)
class ToNumber:
    arg: Expr
    type: Type = Type.NUMBER


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # "=", "!=", "<", "<=", ">", ">="
    left: Expr
    right: Expr
    type: Type = Type.BOOL


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # "AND" or "OR"
    items: tuple[Expr, ...]
    type: Type = Type.BOOL


@dataclass(frozen=True, slots=True)
class Not:
    arg: Expr
    type: Type = Type.BOOL


@dataclass(frozen=True, slots=True)
class IsNull:
    arg: Expr
    type: Type = Type.BOOL


@dataclass(frozen=True, slots=True)
class Like:
    arg: Expr
    pattern: str
    caseless: bool
    type: Type = Type.BOOL


Expr = Field | MapValue | Const | Call | ToNumber | Compare | Logic | Not | IsNull | Like
NULL = Const(None, Type.NULL)


@dataclass(frozen=True)
class Parsed:
    tree: Expr | None  # None: the empty filter, which matches everything
    fields: frozenset[str]


def field_label(map_name: str, key: str) -> str:
    """How `fields` names an attribute read: `attributes['gen_ai.system']` (quotes doubled)."""
    return f"{map_name}[{_quote(key)}]"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parse(text: str) -> Parsed:
    """Parse and type-check a filter; raise FilterError naming the first problem's position and token."""
    if len(text) > MAX_TEXT:
        msg = f"a filter is at most {MAX_TEXT} characters"
        raise FilterError(msg, MAX_TEXT, text[MAX_TEXT : MAX_TEXT + 10])
    tokens = _tokenize(text)
    if not tokens:
        return Parsed(None, frozenset())
    _check_tokens(text, tokens)
    try:
        statements = Parser(error_level=ErrorLevel.RAISE, max_errors=1).parse(tokens, text)
    except ParseError as exc:
        raise _from_parse_error(text, tokens, exc) from None
    except (SqlglotError, RecursionError):
        msg = "cannot parse the filter"
        raise FilterError(msg, 0, _raw(text, tokens[0])) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Expression):
        msg = "expected one condition"
        raise FilterError(msg, 0, _raw(text, tokens[0]))
    builder = _Builder(text, tokens, statements[0])
    tree = builder.condition(statements[0])
    return Parsed(tree, frozenset(builder.fields))


# ---- pass 1: tokens --------------------------------------------------------------------------------------

_OPERATORS = {T.EQ, T.NEQ, T.LT, T.LTE, T.GT, T.GTE}
_VALUE_START = {T.VAR, T.STRING, T.NUMBER, T.NULL, T.TRUE, T.FALSE, T.L_PAREN}
_VALUE_END = {T.VAR, T.STRING, T.NUMBER, T.NULL, T.TRUE, T.FALSE, T.R_PAREN, T.R_BRACKET}
_KEYWORDS_BEFORE_PAREN = {T.AND, T.OR, T.NOT, T.IN, T.BETWEEN, T.LIKE, T.ILIKE, T.IS}
_ALLOWED = _OPERATORS | _VALUE_START | _KEYWORDS_BEFORE_PAREN | {T.R_PAREN, T.L_BRACKET, T.R_BRACKET}
_ALLOWED |= {T.COMMA, T.DASH}
_ARITHMETIC = "arithmetic and operators other than = != <> < <= > >= are not supported"
_REASONS: dict[T, str] = {
    T.SEMICOLON: "a filter is one condition; ';' is not allowed",
    T.STAR: "'*' is not supported (a filter names fields; arithmetic is not supported)",
    T.DCOLON: "casts are not supported",
    T.ALIAS: "casts and aliases are not supported",
    T.IDENTIFIER: "double quotes are not supported: write text in single quotes and field names bare",
    T.DOT: "'.' is not supported; write attributes['a.b'] for a dotted attribute key",
    T.ESCAPE: "LIKE ... ESCAPE is not supported; the escape character is the backslash",
    T.CASE: "CASE is not supported",
    T.DISTINCT: "IS [NOT] DISTINCT FROM is not supported; use IS NULL, =, !=",
    T.UNKNOWN: "unexpected character",
    **dict.fromkeys((T.SELECT, T.WITH, T.FROM, T.EXISTS, T.WHERE), "subqueries are not supported"),
    **dict.fromkeys((T.ANY, T.ALL, T.SOME), "ANY/ALL/SOME are not supported; use IN (...)"),
    **dict.fromkeys(
        (T.RLIKE, T.IRLIKE, T.GLOB, T.SIMILAR_TO, T.TILDE, T.SOUNDS_LIKE),
        "regular expressions are not supported; use LIKE or ILIKE",
    ),
    **dict.fromkeys(
        (T.PARAMETER, T.PLACEHOLDER, T.COLON, T.SESSION_PARAMETER, T.DOLLAR),
        "placeholders are not supported; write the value",
    ),
    **dict.fromkeys(
        (
            *(T.NATIONAL_STRING, T.HEX_STRING, T.BIT_STRING, T.BYTE_STRING, T.RAW_STRING),
            *(T.UNICODE_STRING, T.HEREDOC_STRING, T.NATIONAL_RAW_STRING),
        ),
        "only plain '...' strings are supported",
    ),
    **dict.fromkeys(
        (T.PLUS, T.SLASH, T.MOD, T.DIV, T.DPIPE, T.PIPE, T.AMP, T.DAMP, T.CARET),
        _ARITHMETIC,
    ),
    T.NULLSAFE_EQ: "'<=>' is not supported; use =, != or IS NULL",
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD_LIST = ", ".join([*FIELDS, "attributes['key']", "resource['key']"])


def _tokenize(text: str) -> list[Token]:
    try:
        return list(Tokenizer().tokenize(text))
    except TokenError:
        position, token = _unterminated(text)
        msg = "unterminated string, quoted name or comment"
        raise FilterError(msg, position, token) from None


def _unterminated(text: str) -> tuple[int, str]:
    """Where the construct that the tokenizer could not close starts (sqlglot's TokenError has no offset)."""
    i, n = 0, len(text)
    while i < n:
        two = text[i : i + 2]
        if text[i] in "'\"":
            end = text.find(text[i], i + 1)
            while end != -1 and text[end + 1 : end + 2] == text[i]:
                end = text.find(text[i], end + 2)
            if end == -1:
                return i, text[i : i + 20]
            i = end + 1
        elif two == "--":
            nl = text.find("\n", i)
            i = n if nl == -1 else nl + 1
        elif two == "/*":
            end = text.find("*/", i + 2)
            if end == -1:
                return i, text[i : i + 20]
            i = end + 2
        else:
            i += 1
    return 0, text[:20]


def _raw(text: str, tok: Token) -> str:
    return text[tok.start : tok.end + 1]


def _check_tokens(text: str, tokens: list[Token]) -> None:
    depth = 0
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i > 0 else None
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        glued = _glued(tok, nxt)
        if glued is not None and nxt is not None:
            raise FilterError(glued, tok.start, text[tok.start : nxt.end + 1])
        reason = _token_reason(tok, prev, nxt)
        if reason is None and tok.token_type == T.L_PAREN:
            depth += 1
            if depth > MAX_DEPTH:
                reason = f"parentheses nested deeper than {MAX_DEPTH} levels"
        elif tok.token_type == T.R_PAREN:
            depth -= 1
        after_value = prev is not None and prev.token_type in _VALUE_END and not _is_call(prev, tok)
        if reason is None and after_value and tok.token_type in _VALUE_START:
            reason = "expected an operator, AND, OR, ')' or the end here"
        if reason is not None:
            raise FilterError(reason, tok.start, _raw(text, tok))


def _is_call(tok: Token, nxt: Token | None) -> bool:
    return nxt is not None and nxt.token_type == T.L_PAREN and tok.text.lower() in FUNCTIONS


def _token_reason(tok: Token, prev: Token | None, nxt: Token | None) -> str | None:
    kind, word = tok.token_type, tok.text.lower()
    if kind in _REASONS:
        return _REASONS[kind]
    called = nxt is not None and nxt.token_type == T.L_PAREN and kind not in _KEYWORDS_BEFORE_PAREN
    if called and _WORD.fullmatch(tok.text) and word not in FUNCTIONS:
        if word in FIELDS or word in MAPS:
            return f"{tok.text!r} is a field, not a function"
        if word in ("cast", "try_cast", "convert"):
            return "casts are not supported"
        return f"function {tok.text!r} is not supported; the functions are lower, upper, length"
    if kind not in _ALLOWED:
        return f"{tok.text!r} is not supported in a filter; the fields are {_FIELD_LIST}"
    if kind == T.EQ and tok.text != "=":
        return "write '=' to compare"
    if kind == T.NOT and word != "not":
        return "write NOT"
    if kind == T.DASH:
        return _dash_reason(prev, nxt)
    if kind == T.VAR:
        return _name_reason(tok, nxt)
    if kind == T.L_BRACKET and (prev is None or prev.token_type != T.VAR or prev.text.lower() not in MAPS):
        return "'[' only follows attributes or resource"
    if kind in (T.R_PAREN, T.R_BRACKET) and prev is not None and prev.token_type in (T.COMMA, T.L_PAREN):
        return "expected a value before this"
    return None


def _dash_reason(prev: Token | None, nxt: Token | None) -> str | None:
    if prev is not None and prev.token_type in _VALUE_END:
        return _ARITHMETIC
    if nxt is None or nxt.token_type != T.NUMBER:
        return "'-' is only allowed in front of a number"
    return None


def _name_reason(tok: Token, nxt: Token | None) -> str | None:
    word = tok.text.lower()
    after = nxt.token_type if nxt is not None else None
    if word in FUNCTIONS:
        return None if after == T.L_PAREN else f"{tok.text!r} is a function: write {word}(...)"
    if word in MAPS:
        return None if after == T.L_BRACKET else f"write {word}['key'] with the key in single quotes"
    if word in FIELDS:
        return None
    if word.startswith("$"):
        return "placeholders are not supported; write the value"
    return f"unknown field {tok.text!r}; the fields are {_FIELD_LIST}"


def _glued(tok: Token, nxt: Token | None) -> str | None:
    """Two tokens with nothing between them that the SQL tokenizer splits: `0x1F`, `1_000`, `x'ab'`, `.5`."""
    if nxt is None or tok.end + 1 != nxt.start:
        return None
    if tok.token_type == T.NUMBER and nxt.token_type in (T.VAR, T.NUMBER):
        return "malformed number"
    if tok.token_type == T.VAR and nxt.token_type == T.STRING:
        return "string prefixes such as x'...' or e'...' are not supported"
    if tok.token_type == T.DOT and nxt.token_type == T.NUMBER:
        return "write a digit before the point: 0.5"
    return None


def _from_parse_error(text: str, tokens: list[Token], exc: ParseError) -> FilterError:
    err = exc.errors[0] if exc.errors else {}
    line, col = int(err.get("line") or 1), int(err.get("col") or 1)
    offset = sum(len(part) + 1 for part in text.split("\n")[: line - 1]) + col - 1
    tok = next((t for t in tokens if t.start <= offset <= t.end), None)
    if tok is None:
        tok = next((t for t in tokens if t.start >= offset), tokens[-1])
    description = str(err.get("description") or "syntax error").split(" for <class")[0]
    if "Required keyword" in description:
        description = "incomplete expression"
    return FilterError(f"syntax error: {description}", tok.start, _raw(text, tok))


# ---- pass 2: the tree ------------------------------------------------------------------------------------

_COMPARISONS: dict[type[exp.Expression], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_OPERATOR_TOKENS: dict[type[exp.Expression], set[T]] = {
    exp.EQ: {T.EQ},
    exp.NEQ: {T.NEQ},
    exp.In: {T.IN},
    exp.Between: {T.BETWEEN},
}
_NULL_COMPARE = "a comparison with NULL is never true: write IS NULL or IS NOT NULL"


class _Builder:
    """sqlglot AST -> typed tree, checking types and recording which fields the filter reads."""

    def __init__(self, text: str, tokens: list[Token], root: exp.Expression) -> None:
        self.text = text
        self.tokens = tokens
        self.fields: set[str] = set()
        self.nodes = 0
        # sqlglot gives NULL, TRUE and FALSE no position; in this grammar the tree, walked depth first,
        # meets them in source order, so pair them with their tokens.
        leaves = [n for n in root.dfs() if isinstance(n, exp.Null | exp.Boolean)]
        words = [t for t in tokens if t.token_type in (T.NULL, T.TRUE, T.FALSE)]
        pairs = zip(leaves, words, strict=True) if len(leaves) == len(words) else ()
        self.leaf_tokens = {id(node): tok for node, tok in pairs}

    # -- positions

    def _span(self, node: exp.Expression) -> tuple[int, int] | None:
        starts, ends = [], []
        for sub in node.walk():
            tok = self.leaf_tokens.get(id(sub))
            if tok is not None:
                starts.append(tok.start)
                ends.append(tok.end)
            elif isinstance(sub, exp.Expression) and "start" in (sub.meta or {}):
                starts.append(int(sub.meta["start"]))
                ends.append(int(sub.meta["end"]))
        return (min(starts), max(ends)) if starts else None

    def fail(self, reason: str, node: exp.Expression, types: set[T] | None = None) -> NoReturn:
        span = self._span(node)
        lo = span[0] if span else -1
        tok = None
        if types:
            this = node.args.get("this")
            left = self._span(this) if isinstance(this, exp.Expression) else None
            after = left[1] if left else lo - 1
            tok = next((t for t in self.tokens if t.token_type in types and t.start > after), None)
        if tok is None:
            tok = next((t for t in self.tokens if t.start >= lo), self.tokens[0])
        raise FilterError(reason, tok.start, _raw(self.text, tok))

    # -- entry points

    def condition(self, node: exp.Expression, depth: int = 0) -> Expr:
        expr = self.build(node, depth)
        if expr.type not in (Type.BOOL, Type.NULL):
            self.fail(f"expected a condition, found {expr.type.value}: compare it with a value", node)
        return expr

    def build(self, node: exp.Expression, depth: int) -> Expr:
        while isinstance(node, exp.Paren):
            node = node.this
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            self.fail(f"the filter is too complex (over {MAX_DEPTH} levels or {MAX_NODES} parts)", node)
        expr = self._build(node, depth + 1)
        if node.args.get("negate"):
            return Not(expr)
        return expr

    def _build(self, node: exp.Expression, depth: int) -> Expr:
        if isinstance(node, exp.And | exp.Or):
            return self._logic(node, depth)
        if isinstance(node, exp.Not):
            return Not(self.condition(node.this, depth))
        op = _COMPARISONS.get(type(node))
        if op is not None:
            left, right = self.build(node.this, depth), self.build(node.expression, depth)
            return self._compare(op, left, right, node, (node.this, node.expression), allow_null=False)
        if isinstance(node, exp.Is):
            return self._is(node, depth)
        if isinstance(node, exp.In):
            return self._in(node, depth)
        if isinstance(node, exp.Between):
            return self._between(node, depth)
        if isinstance(node, exp.Like | exp.ILike):
            return self._like(node, depth)
        if isinstance(node, exp.Lower | exp.Upper | exp.Length):
            return self._call(node, depth)
        return self._leaf(node)

    # -- conditions

    def _logic(self, node: exp.And | exp.Or, depth: int) -> Expr:
        kind = type(node)
        items: list[exp.Expression] = []
        stack: list[exp.Expression] = [node]
        while stack:
            cur = stack.pop()
            if type(cur) is kind and not cur.args.get("negate"):
                stack.extend((cur.expression, cur.this))
            else:
                items.append(cur)
        return Logic("AND" if kind is exp.And else "OR", tuple(self.condition(i, depth) for i in items))

    def _compare(
        self,
        op: str,
        left: Expr,
        right: Expr,
        node: exp.Expression,
        sources: tuple[exp.Expression, exp.Expression],
        allow_null: bool,
    ) -> Expr:
        types = _OPERATOR_TOKENS.get(type(node), _OPERATORS)
        for side, source in zip((left, right), sources, strict=True):
            if side.type is Type.NULL:
                if not allow_null:
                    self.fail(_NULL_COMPARE, source)
                return NULL
        if left.type is right.type:
            if left.type is Type.BOOL and op not in ("=", "!="):
                self.fail("booleans compare only with = and !=", node, types)
            return Compare(op, left, right)
        if Type.BOOL in (left.type, right.type):
            self.fail(f"cannot compare {left.type.value} with {right.type.value}", node, types)
        text_side, source = (left, sources[0]) if left.type is Type.TEXT else (right, sources[1])
        if isinstance(text_side, Const):
            self.fail("this text is compared with a number: write the number without quotes", source)
        if text_side is left:
            return Compare(op, ToNumber(left), right)
        return Compare(op, left, ToNumber(right))

    def _is(self, node: exp.Is, depth: int) -> Expr:
        if not isinstance(node.expression, exp.Null):
            self.fail("IS only takes NULL or NOT NULL", node, {T.IS})
        return IsNull(self.build(node.this, depth))

    def _in(self, node: exp.In, depth: int) -> Expr:
        if any(node.args.get(k) for k in ("query", "unnest", "field", "is_global")) or not node.expressions:
            self.fail("IN takes a parenthesised list of values", node, {T.IN})
        left = self.build(node.this, depth)
        chain = []
        for item in node.expressions:
            value = self.build(item, depth)
            chain.append(self._compare("=", left, value, node, (node.this, item), allow_null=True))
        return chain[0] if len(chain) == 1 else Logic("OR", tuple(chain))

    def _between(self, node: exp.Between, depth: int) -> Expr:
        if node.args.get("symmetric") is not None:
            self.fail("BETWEEN SYMMETRIC is not supported", node, {T.BETWEEN})
        value = self.build(node.this, depth)
        low, high = self.build(node.args["low"], depth), self.build(node.args["high"], depth)
        pairs = ((">=", low, node.args["low"]), ("<=", high, node.args["high"]))
        parts = tuple(self._compare(op, value, b, node, (node.this, s), True) for op, b, s in pairs)
        return Logic("AND", parts)

    def _like(self, node: exp.Like | exp.ILike, depth: int) -> Expr:
        pattern = node.expression
        while isinstance(pattern, exp.Paren):
            pattern = pattern.this
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            self.fail("the LIKE pattern must be a string literal", pattern)
        text = str(pattern.this)
        if (len(text) - len(text.rstrip("\\"))) % 2 == 1:
            self.fail("a LIKE pattern cannot end with a lone backslash: write \\\\ for a backslash", pattern)
        arg = self.build(node.this, depth)
        if arg.type is Type.NULL:
            return NULL
        if arg.type is not Type.TEXT:
            self.fail(f"LIKE needs text on its left, not {arg.type.value}", node.this)
        return Like(arg, text, caseless=isinstance(node, exp.ILike))

    # -- values

    def _call(self, node: exp.Lower | exp.Upper | exp.Length, depth: int) -> Expr:
        name = {exp.Lower: "lower", exp.Upper: "upper", exp.Length: "length"}[type(node)]
        if any(v for k, v in node.args.items() if k != "this"):
            self.fail(f"{name} takes one argument", node)
        arg = self.build(node.this, depth)
        if arg.type is Type.NULL:
            return NULL
        if arg.type is not Type.TEXT:
            self.fail(f"{name} takes text, not {arg.type.value}", node)
        return Call(name, arg, FUNCTIONS[name])

    def _leaf(self, node: exp.Expression) -> Expr:
        if isinstance(node, exp.Column) and not any(node.args.get(k) for k in ("table", "db", "catalog")):
            name = node.name.lower()
            if name in FIELDS and not node.this.quoted:
                self.fields.add(name)
                return Field(name, FIELDS[name])
        if isinstance(node, exp.Bracket):
            return self._map_value(node)
        if isinstance(node, exp.Literal):
            return self._literal(node, negative=False)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            return self._literal(node.this, negative=True)
        if isinstance(node, exp.Boolean):
            return Const(bool(node.this), Type.BOOL)
        if isinstance(node, exp.Null):
            return NULL
        self.fail(f"{node.key} is not supported in a filter", node)

    def _map_value(self, node: exp.Bracket) -> Expr:
        target, keys = node.this, node.expressions
        ok = isinstance(target, exp.Column) and target.name.lower() in MAPS and len(keys) == 1
        if not ok or any(v for k, v in node.args.items() if k not in ("this", "expressions")):
            self.fail("write attributes['key'] or resource['key']", node)
        key = keys[0]
        if not (isinstance(key, exp.Literal) and key.is_string):
            self.fail("an attribute key must be a string literal", key)
        map_name = target.name.lower()
        self.fields.add(field_label(map_name, str(key.this)))
        return MapValue(map_name, str(key.this))

    def _literal(self, node: exp.Literal, negative: bool) -> Expr:
        if node.is_string:
            return Const(str(node.this), Type.TEXT)
        raw = str(node.this)
        if not NUMBER_LITERAL.fullmatch(raw):
            self.fail("malformed number", node)
        value = float(raw)
        if not math.isfinite(value):
            self.fail("number out of range", node)
        return Const(-value if negative else value, Type.NUMBER)
