"""The filter language without ClickHouse: rejections (one per construct, with message, position and
token), the Python side's semantics, the SQL text's safety, and LIKE against a regular-expression model.
Agreement with ClickHouse is tests/integration/test_filter_differential.py."""

from __future__ import annotations

import random
import re
import time
from typing import Any

import pytest

from dataflow.errors import RuleCompileError, TracejudgeError
from dataflow.model import Span
from dataflow.rules import CompiledFilter, FilterError, compile_filter
from dataflow.rules.parser import MAX_DEPTH, MAX_TEXT
from dataflow.rules.python_compiler import like_matcher, to_lower, to_number, to_upper
from tests import builders


def span(**changes: Any) -> Span:
    fields: dict[str, Any] = dict(
        trace_id="0" * 31 + "1", span_id="0" * 15 + "1", name="chat", status_code="Ok", session_id="s1",
        duration_ns=1_500_000, input="hello", output="world",
    )  # fmt: skip
    return builders.span(**(fields | changes))


# (filter, position, token, part of the reason): one per construct outside the language.
REJECTIONS: list[tuple[str, int, str, str]] = [
    ("abs(duration_ms) > 1", 0, "abs", "function 'abs' is not supported"),
    ("coalesce(attributes['a'], '') = ''", 0, "coalesce", "function 'coalesce' is not supported"),
    ("if(is_root, 1, 0) = 1", 0, "if", "function 'if' is not supported"),
    ("match(name, 'a')", 0, "match", "function 'match' is not supported"),
    ("name REGEXP 'a'", 5, "REGEXP", "regular expressions are not supported"),
    ("name RLIKE 'a'", 5, "RLIKE", "regular expressions are not supported"),
    ("name SIMILAR TO 'a'", 5, "SIMILAR TO", "regular expressions are not supported"),
    ("name ~ 'a'", 5, "~", "regular expressions are not supported"),
    ("name GLOB 'a*'", 5, "GLOB", "regular expressions are not supported"),
    ("SELECT 1", 0, "SELECT", "subqueries are not supported"),
    ("name IN (SELECT name FROM otel_traces)", 9, "SELECT", "subqueries are not supported"),
    ("EXISTS (SELECT 1)", 0, "EXISTS", "subqueries are not supported"),
    ("name = 'a' UNION SELECT 1", 11, "UNION", "'UNION' is not supported"),
    ("name = *", 7, "*", "'*' is not supported"),
    ("duration_ms + 1 > 2", 12, "+", "arithmetic"),
    ("duration_ms - 1 > 2", 12, "-", "arithmetic"),
    ("duration_ms * 2 > 2", 12, "*", "'*' is not supported"),
    ("duration_ms / 2 > 2", 12, "/", "arithmetic"),
    ("duration_ms % 2 > 2", 12, "%", "arithmetic"),
    ("name || 'a' = 'b'", 5, "||", "arithmetic"),
    ("-duration_ms > 1", 0, "-", "only allowed in front of a number"),
    ("name = - -1", 7, "-", "only allowed in front of a number"),
    ("CASE WHEN is_root THEN 1 END = 1", 0, "CASE", "CASE is not supported"),
    ("CAST(duration_ms AS String) = '1'", 0, "CAST", "casts are not supported"),
    ("duration_ms::String = '1'", 11, "::", "casts are not supported"),
    ("SpanName = 'x'", 0, "SpanName", "unknown field 'SpanName'"),
    ("otel_traces.name = 'x'", 0, "otel_traces", "unknown field 'otel_traces'"),
    ("attributes.x = 'y'", 0, "attributes", "write attributes['key']"),
    ("Timestamp > 1", 0, "Timestamp", "'Timestamp' is not supported"),
    ("\"name\" = 'x'", 0, '"name"', "double quotes are not supported"),
    ('name = "x"', 7, '"x"', "double quotes are not supported"),
    ("name = 'a'; DROP TABLE otel_traces", 10, ";", "';' is not allowed"),
    ("name = 'a' 'b'", 11, "'b'", "expected an operator, AND, OR"),
    ("name = 'a' name", 11, "name", "expected an operator, AND, OR"),
    ("name = 'a')", 10, ")", "syntax error"),
    ("(name = 'a'", 8, "'a'", "syntax error: Expecting )"),
    ("name = 'a' AND", 11, "AND", "incomplete expression"),
    ("NOT", 0, "NOT", "incomplete expression"),
    ("name == 'a'", 5, "==", "write '='"),
    ("!is_root", 0, "!", "write NOT"),
    ("name <=> 'a'", 5, "<=>", "'<=>' is not supported"),
    ("name IS DISTINCT FROM 'a'", 8, "DISTINCT", "DISTINCT FROM is not supported"),
    ("is_root IS TRUE", 8, "IS", "IS only takes NULL"),
    ("name = NULL", 7, "NULL", "never true: write IS NULL"),
    ("NULL <> name", 0, "NULL", "never true: write IS NULL"),
    ("name LIKE name", 10, "name", "pattern must be a string literal"),
    ("name LIKE lower('A')", 10, "lower", "pattern must be a string literal"),
    ("name LIKE 'a\\'", 10, "'a\\'", "lone backslash"),
    ("name LIKE 'a' ESCAPE '!'", 14, "ESCAPE", "ESCAPE is not supported"),
    ("attributes[name] = 'x'", 11, "name", "key must be a string literal"),
    ("attributes = 'x'", 0, "attributes", "write attributes['key']"),
    ("attributes['a']['b'] = 'x'", 15, "[", "'[' only follows attributes or resource"),
    ("name['a'] = 'x'", 4, "[", "'[' only follows attributes or resource"),
    ("name('a') = 'x'", 0, "name", "is a field, not a function"),
    ("lower = 'x'", 0, "lower", "is a function"),
    ("lower(name, 'x') = 'a'", 15, ")", "syntax error"),
    ("lower(duration_ms) = 'x'", 0, "lower", "lower takes text, not number"),
    ("length(5) = 1", 0, "length", "length takes text, not number"),
    ("name", 0, "name", "expected a condition, found text"),
    ("is_root AND name", 12, "name", "expected a condition, found text"),
    ("NOT duration_ms", 4, "duration_ms", "expected a condition, found number"),
    ("duration_ms = 'x'", 14, "'x'", "write the number without quotes"),
    ("length(name) IN ('a')", 17, "'a'", "write the number without quotes"),
    ("is_root = 1", 8, "=", "cannot compare boolean with number"),
    ("is_root IN (1)", 8, "IN", "cannot compare boolean with number"),
    ("is_root > false", 8, ">", "booleans compare only with = and !="),
    ("name LIKE 'a' = 1", 14, "=", "cannot compare boolean with number"),
    ("duration_ms LIKE '1%'", 0, "duration_ms", "LIKE needs text"),
    ("duration_ms > 1e400", 14, "1e400", "number out of range"),
    ("duration_ms = 0x1F", 14, "0x1F", "malformed number"),
    ("duration_ms = 1_000", 14, "1_000", "malformed number"),
    ("duration_ms > .5", 14, ".5", "write a digit before the point"),
    ("name = x'41'", 7, "x'41'", "string prefixes"),
    ("name = e'\\n'", 7, "e'\\n'", "string prefixes"),
    ("name = N'x'", 7, "N'x'", "only plain '...' strings"),
    ("name = ?", 7, "?", "placeholders are not supported"),
    ("name = :x", 7, ":", "placeholders are not supported"),
    ("name = @x", 7, "@", "placeholders are not supported"),
    ("name = $1", 7, "$1", "placeholders are not supported"),
    ("name = 'unterminated", 7, "'unterminated", "unterminated"),
    ("name = 'a' /* no end", 11, "/* no end", "unterminated"),
    ('name = "a', 7, '"a', "unterminated"),
    ("name IN ()", 9, ")", "expected a value before this"),
    ("name IN ('a',)", 13, ")", "expected a value before this"),
    ("name IN 'a'", 5, "IN", "IN takes a parenthesised list"),
    ("name = ANY ('a')", 7, "ANY", "ANY/ALL/SOME are not supported"),
    ("duration_ms > INTERVAL 1 DAY", 14, "INTERVAL", "'INTERVAL' is not supported"),
    ("name = DATE '2020-01-01'", 7, "DATE", "'DATE' is not supported"),
    ("name = 'a'\n  AND lower(x) = 'b'", 23, "x", "unknown field 'x'"),
    ("(" * (MAX_DEPTH + 1) + "is_root" + ")" * (MAX_DEPTH + 1), MAX_DEPTH, "(", "nested deeper"),
]


@pytest.mark.parametrize(
    ("text", "position", "token", "reason"), REJECTIONS, ids=[r[0][:40] for r in REJECTIONS]
)
def test_rejected_with_position_and_token(text: str, position: int, token: str, reason: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    err = info.value
    assert (err.position, err.token) == (position, token)
    assert reason in err.reason
    assert f"position {position}" in str(err) and reason in str(err)
    assert text[err.position :].startswith(err.token)


def test_filter_error_is_a_rule_compile_error() -> None:
    with pytest.raises(RuleCompileError):
        compile_filter("nope")
    assert issubclass(FilterError, TracejudgeError)


def test_too_long_and_too_complex() -> None:
    with pytest.raises(FilterError, match="at most") as info:
        compile_filter("name = '" + "x" * MAX_TEXT + "'")
    assert info.value.position == MAX_TEXT
    with pytest.raises(FilterError, match="too complex"):
        compile_filter(" AND ".join(["NOT " * 40 + "is_root"]))
    with pytest.raises(FilterError, match="too complex"):
        compile_filter("name IN (" + ", ".join(f"'{i}'" for i in range(3000)) + ")")
    long_chain = " AND ".join(f"name != '{i}'" for i in range(600))  # flat chains do not nest
    assert compile_filter(long_chain).matches(span())


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "-- only a comment", "/* c */"])
def test_empty_filter_matches_everything(text: str) -> None:
    compiled = compile_filter(text)
    assert compiled.sql == "1" and compiled.params == {} and compiled.fields == frozenset()
    assert compiled.matches(span())


def test_comments_and_case_insensitive_names() -> None:
    compiled = compile_filter("NaMe = 'chat' -- the chat spans\n aNd /* roots */ Is_Root")
    assert compiled.matches(span())
    assert compiled.fields == frozenset({"name", "is_root"})


# (filter, span changes, expected) on the Python side; the same table runs on chDB in the integration tier.
SEMANTICS: list[tuple[str, dict[str, Any], bool]] = [
    ("name = 'chat'", {}, True),
    ("name != 'chat'", {}, False),
    ("name <> 'x'", {}, True),
    ("attributes['x'] != 'a'", {}, False),  # missing key: NULL
    ("NOT attributes['x'] = 'a'", {}, False),
    ("attributes['x'] IS NULL", {}, True),
    ("attributes['x'] IS NOT NULL", {"attributes": {"x": ""}}, True),
    ("attributes['x'] = ''", {"attributes": {"x": ""}}, True),
    ("attributes['x'] = 'a' OR TRUE", {}, True),
    ("attributes['x'] = 'a' AND FALSE", {}, False),
    ("NOT (attributes['x'] = 'a' AND TRUE)", {}, False),
    ("resource['service.version'] = '1'", {"resource": {"service.version": "1"}}, True),
    ("attributes['n'] > 5", {"attributes": {"n": "42"}}, True),
    ("attributes['n'] = 42", {"attributes": {"n": "4.2e1"}}, True),
    ("attributes['n'] = 7", {"attributes": {"n": " 7"}}, False),
    ("attributes['n'] IS NULL OR attributes['n'] > 0", {"attributes": {"n": "nan"}}, False),
    ("attributes['n'] < 9", {"attributes": {"n": "10"}}, False),
    ("attributes['n'] < '9'", {"attributes": {"n": "10"}}, True),
    ("name IN ('a', 'chat')", {}, True),
    ("name IN ('a', NULL)", {}, False),
    ("NOT name IN ('a', NULL)", {}, False),
    ("name NOT IN ('a', 'b')", {}, True),
    ("attributes['x'] NOT IN ('a')", {}, False),
    ("duration_ms BETWEEN 1 AND 2", {}, True),
    ("duration_ms NOT BETWEEN 1 AND 2", {}, False),
    ("duration_ms BETWEEN 1 AND NULL", {}, False),
    ("duration_ms NOT BETWEEN 2 AND NULL", {}, True),
    ("duration_ms = 1.5 AND duration_ms > -1", {}, True),
    ("duration_ms >= 1.5e0", {}, True),
    ("is_root", {}, True),
    ("is_root = true", {}, True),
    ("NOT is_root", {"parent_span_id": "00000000000000aa"}, True),
    ("is_root != TRUE", {"parent_span_id": "00000000000000aa"}, True),
    ("lower(name) = 'chat'", {"name": "CHAT"}, True),
    ("upper(name) = 'STRASSE'", {"name": "straße"}, False),
    ("upper(name) = 'STRAßE'", {"name": "straße"}, True),
    ("lower(name) = 'i̇'", {"name": "İ"}, False),
    ("lower(name) = 'İ'", {"name": "İ"}, True),
    ("lower(name) = 'οδο\u03c3'", {"name": "ΟΔΟΣ"}, True),
    ("name ILIKE '%ẞ%'", {"name": "ß"}, True),
    ("name ILIKE 'ÄB_'", {"name": "äbc"}, True),
    ("name ILIKE 'SS'", {"name": "ß"}, False),
    ("length(name) = 6", {"name": "Straße"}, True),
    ("length(name) = 1", {"name": "😀"}, True),
    ("name LIKE 'a\\%b'", {"name": "a%b"}, True),
    ("name LIKE 'a\\%b'", {"name": "axb"}, False),
    ("name LIKE 'a\\b'", {"name": "a\\b"}, True),
    ("name LIKE 'a\\\\b'", {"name": "a\\b"}, True),
    ("name LIKE 'a_b' AND name LIKE 'a%b'", {"name": "a\nb"}, True),
    ("name NOT LIKE 'c%'", {}, False),
    ("name = 'it''s'", {"name": "it's"}, True),
    ("name = 'a\\nb'", {"name": "a\\nb"}, True),
    ("name > 'z'", {"name": "é"}, True),
    ("NULL", {}, False),
    ("NOT NULL", {}, False),
    ("NULL IS NULL", {}, True),
    ("length(attributes['x']) IS NULL", {}, True),
    ("(is_root = (name = 'chat')) = TRUE", {}, True),
]


@pytest.mark.parametrize(("text", "changes", "expected"), SEMANTICS, ids=[s[0][:40] for s in SEMANTICS])
def test_python_semantics(text: str, changes: dict[str, Any], expected: bool) -> None:
    assert compile_filter(text).matches(span(**changes)) is expected


def test_arrow_semantics_over_one_batch() -> None:
    """The same table through the vectorised form, every case a row of one batch (chDB: integration tier)."""
    spans = [span(span_id=f"{i:016x}", **changes) for i, (_, changes, _) in enumerate(SEMANTICS)]
    table = builders.span_table(spans)
    wrong = [
        text
        for i, (text, _, expected) in enumerate(SEMANTICS)
        if compile_filter(text).mask(table)[i].as_py() is not expected
    ]
    assert not wrong


def test_arrow_mask_of_the_empty_filter_and_of_no_rows() -> None:
    spans = [span(), span(span_id="c" * 16, parent_span_id="b" * 16)]
    assert compile_filter("").mask(builders.span_table(spans)).to_pylist() == [True, True]
    assert compile_filter("NOT is_root").mask(builders.span_table(spans)).to_pylist() == [False, True]
    assert compile_filter("name LIKE 'x%'").mask(builders.span_table([])).to_pylist() == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        *[(t, float(t)) for t in ("42", "4.2e1", "-0", "+5", "5.", ".5", "-.5", "007", "1e400", "1e-400")],
        *[
            (t, None)
            for t in (
                " 7",
                "7 ",
                "\t7",
                "nan",
                "inf",
                "Infinity",
                "0x1F",
                "1_000",
                "\uff11\uff12",
                "",
                "1e",
                ".",
            )
        ],
    ],
)
def test_text_to_number(text: str, number: float | None) -> None:
    assert to_number(text) == number


def test_case_mapping_is_one_code_point_to_one() -> None:
    assert to_lower("ÄÖÜ ΑΣ K") == "äöü ασ k"  # noqa: RUF001
    assert to_upper("straße ǆ") == "STRAßE Ǆ"
    assert to_lower("İ") == "İ" and to_upper("ŉ") == "ŉ"
    assert to_lower("ABC") == "abc" and to_upper("abc") == "ABC"


def test_sql_text_has_no_user_text() -> None:
    hostile = "'); DROP TABLE otel_traces; -- {x:String} %(y)s \\ \x00"
    literal = "'" + hostile.replace("'", "''") + "'"
    compiled = compile_filter(
        f"attributes[{literal}] = {literal} OR name LIKE {literal} OR resource[{literal}] IN ({literal}, 5)"
    )
    assert "DROP" not in compiled.sql and "%(y)s" not in compiled.sql and "\x00" not in compiled.sql
    assert set(compiled.params.values()) == {hostile, 5.0}
    quoted = re.findall(r"'[^']*'", compiled.sql)
    assert set(quoted) <= {"''", "'^[+-]?(?:[0-9]+[.]?[0-9]*|[.][0-9]+)(?:[eE][+-]?[0-9]+)?$'"}
    names = re.findall(r"\{(\w+):(\w+)\}", compiled.sql)
    assert {n for n, _ in names} == set(compiled.params)
    assert compiled.fields == frozenset({"name", f"attributes[{literal}]", f"resource[{literal}]"})


def test_sql_shape_and_param_prefix() -> None:
    compiled = compile_filter("name = 'a' AND duration_ms > 2 AND is_root = false", param_prefix="flt_")
    assert compiled.sql == (
        "((SpanName = {flt_0:String}) AND ((Duration / 1e6) > {flt_1:Float64}) AND "
        "((ParentSpanId = '') = {flt_2:Bool}))"
    )
    assert compiled.params == {"flt_0": "a", "flt_1": 2.0, "flt_2": False}
    again = compile_filter("attributes['k'] = 'k' OR attributes['k'] = 'v'")
    assert again.params == {"f0": "k", "f1": "v"}  # equal values share one parameter
    with pytest.raises(ValueError, match="prefix"):
        compile_filter("is_root", param_prefix="x; DROP")


def test_compiled_filter_is_a_frozen_record() -> None:
    compiled = compile_filter("is_root")
    assert isinstance(compiled, CompiledFilter) and compiled.text == "is_root"
    with pytest.raises(AttributeError):
        compiled.text = "x"  # type: ignore[misc]


def _like_model(pattern: str) -> re.Pattern[str]:
    """ClickHouse's LIKE as a regular expression (the form it compiles to), for small inputs only."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(re.escape(nxt) if nxt in "%_\\" else re.escape("\\" + nxt))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def test_like_matcher_agrees_with_the_regex_model() -> None:
    rnd = random.Random(7)
    alphabet = ["a", "b", "%", "_", "\\", "é", "😀", "\n", "\x00", ".", "*"]
    for _ in range(20_000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 7)))
        pattern = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 6)))
        if rnd.random() < 0.3 and text:
            pattern = "%" + text[rnd.randint(0, len(text) - 1) :]
        expected = _like_model(pattern).fullmatch(text) is not None
        assert like_matcher(pattern)(text) is expected, (text, pattern)


def test_like_has_no_catastrophic_backtracking() -> None:
    compiled = compile_filter("input LIKE '%a%a%a%a%a%a%a%a%a%a%b' OR input ILIKE '%_%_%_%_%_%_%_%c'")
    started = time.perf_counter()
    assert not compiled.matches(span(input="a" * 100_000))
    assert time.perf_counter() - started < 1.0
