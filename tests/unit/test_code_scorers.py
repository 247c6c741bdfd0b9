"""Code scorers: built-ins with validated arguments, user functions by path, errors as data."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow.errors import RuleCompileError
from dataflow.model import Span
from dataflow.scorers.code import CodeScorerSpec, compile_code_scorer
from tests import builders

USER = "tests.testdata.scorers.user_scorers"


def span(
    output: str = "The capital of France is Paris!", inp: str = "Please: capital of France?", **kw: Any
) -> Span:
    return builders.span(**{"input": inp, "output": output, **kw})


def run(function: str, target: Any = None, **args: Any) -> Any:
    scorer = compile_code_scorer(CodeScorerSpec(name="s", function=function, args=args))
    return scorer.score(target if target is not None else span())


@pytest.mark.parametrize(
    ("function", "args", "value"),
    [
        ("exact_match", {"expected": "The capital of France is Paris!"}, 1.0),
        ("exact_match", {"expected": "the capital of france is paris!", "case_sensitive": False}, 1.0),
        ("exact_match", {"expected": "Paris"}, 0.0),
        ("contains", {"value": "Paris"}, 1.0),
        ("contains", {"value": "paris"}, 0.0),
        ("contains", {"value": "paris", "case_sensitive": False}, 1.0),
        ("contains", {"value": "Please", "field": "input"}, 1.0),
        ("regex", {"pattern": r"Paris!$"}, 1.0),
        ("regex", {"pattern": r"paris", "ignore_case": True}, 1.0),
        ("regex", {"pattern": r"Paris", "full_match": True}, 0.0),
        ("length_between", {"min": 5, "max": 6, "unit": "words"}, 1.0),
        ("length_between", {"max": 10}, 0.0),
        ("json_valid", {}, 0.0),
    ],
)
def test_builtins(function: str, args: dict[str, Any], value: float) -> None:
    result = run(function, **args)
    assert (result.value, result.data_type, result.error) == (value, "BOOLEAN", "")
    assert result.passed is bool(value)


def test_json_valid_with_required_keys() -> None:
    ok = run("json_valid", span(output='{"answer": 1, "why": "x"}'), required_keys=["answer"])
    assert ok.value == 1.0
    missing = run("json_valid", span(output='{"why": "x"}'), required_keys=["answer"])
    assert missing.value == 0.0 and "answer" in missing.comment


def test_levenshtein_similarity_and_threshold() -> None:
    result = run("levenshtein", span(output="kitten"), expected="sitting", threshold=0.5)
    assert result.data_type == "NUMERIC" and round(result.value, 4) == 0.5714 and result.passed is True


def test_trace_scope_reads_the_root() -> None:
    root = span(output="root says hi", span_id="1" * 16)
    child = span(output="child", span_id="2" * 16, parent_span_id="1" * 16)
    trace = builders.trace(child, root)
    assert run("contains", trace, value="root says").value == 1.0


@pytest.mark.parametrize(
    ("function", "args", "needle"),
    [
        ("nope", {}, "unknown built-in 'nope'"),
        ("contains", {}, "args: value: Field required"),
        ("contains", {"value": "x", "field": "colour"}, "args: field"),
        ("contains", {"value": "x", "extra": 1}, "extra: Extra inputs are not permitted"),
        ("regex", {"pattern": "(unclosed"}, "invalid regular expression at position 0"),
        ("length_between", {"min": 5, "max": 2}, "max must be >= min"),
        ("levenshtein", {"expected": "x", "threshold": 2}, "threshold"),
        (f"{USER}:missing", {}, "cannot import"),
        ("no_such_module_xyz:fn", {}, "cannot import"),
        (f"{USER}:NOT_CALLABLE", {}, "is not callable"),
    ],
)
def test_bad_scorers_are_refused_at_compile_time(function: str, args: dict[str, Any], needle: str) -> None:
    with pytest.raises(RuleCompileError, match=needle.replace("(", r"\(")):
        compile_code_scorer(CodeScorerSpec(name="s", function=function, args=args))


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("word_count", {}, (6.0, "NUMERIC", "", None)),
        ("is_polite", {}, (1.0, "BOOLEAN", "", True)),
        ("tone", {}, (None, "CATEGORICAL", "positive", None)),
        ("rich", {"bonus": 0.25}, (0.75, "NUMERIC", "", True)),
        ("full", {}, (0.25, "NUMERIC", "", None)),
    ],
)
def test_user_functions(name: str, args: dict[str, Any], expected: tuple[Any, ...]) -> None:
    r = run(f"{USER}:{name}", **args)
    assert (r.value, r.data_type, r.string_value, r.passed) == expected
    assert r.error == ""


def test_a_scorer_that_raises_becomes_an_error_result() -> None:
    r = run(f"{USER}:boom")
    assert r.value is None and r.error == "ValueError: scorer exploded"
    r = run(f"{USER}:weird")
    assert r.error.startswith("TypeError: a scorer returned object")
