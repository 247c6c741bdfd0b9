"""Code scorers: built-ins with typed, validated arguments, and user functions by import path.

A rule names one as `{"type": "code", "name": "<score name>", "function": "<built-in or pkg.mod:fn>",
"args": {...}}`. Everything is validated and compiled when the rule is saved; at run time a scorer that
raises becomes a score row carrying the error, never a crash.

A scorer reads the span (span scope) or the trace (trace scope, whose root span, or earliest span when no
root arrived, supplies `input` and `output`). User functions receive that `Span` or `Trace` and return a
number, a bool, a string (a category) or a `ScoreResult`.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from rapidfuzz.distance import Levenshtein

from dataflow.errors import RuleCompileError
from dataflow.model import Span, Trace

DataType = Literal["NUMERIC", "BOOLEAN", "CATEGORICAL"]
Target = Span | Trace
TextField = Literal["input", "output", "name"]


@dataclass(frozen=True)
class ScoreResult:
    """What one scorer said about one span or trace."""

    value: float | None
    data_type: DataType = "NUMERIC"
    string_value: str = ""
    passed: bool | None = None
    comment: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @classmethod
    def failed(cls, error: str) -> ScoreResult:
        return cls(None, "NUMERIC", error=error)


def boolean(ok: bool, comment: str = "") -> ScoreResult:
    if not comment:
        return _TRUE if ok else _FALSE
    return ScoreResult(1.0 if ok else 0.0, "BOOLEAN", passed=ok, comment=comment)


# Results are immutable: the two commonest are shared.
_TRUE = ScoreResult(1.0, "BOOLEAN", passed=True)
_FALSE = ScoreResult(0.0, "BOOLEAN", passed=False)


def text_of(target: Target, name: str) -> str:
    span = target.root if isinstance(target, Trace) else target
    if span is None:
        return ""
    return str(getattr(span, name))


# --- built-ins ----------------------------------------------------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    field: TextField = Field("output", description="Which text to score: input, output or name.")


class ExactMatchArgs(_Args):
    expected: str
    case_sensitive: bool = True
    strip: bool = True


class ContainsArgs(_Args):
    value: str = Field(..., min_length=1)
    case_sensitive: bool = True


class RegexArgs(_Args):
    pattern: str
    ignore_case: bool = False
    full_match: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            msg = f"invalid regular expression at position {exc.pos}: {exc.msg}"
            raise ValueError(msg) from exc
        return value


class JsonValidArgs(_Args):
    required_keys: list[str] = Field(default_factory=list, description="Keys the JSON object must have.")


class LevenshteinArgs(_Args):
    expected: str
    threshold: float | None = Field(None, ge=0, le=1, description="Passed when similarity >= threshold.")


class LengthBetweenArgs(_Args):
    min: int = Field(0, ge=0)
    max: int | None = Field(None, ge=0)
    unit: Literal["chars", "words"] = "chars"

    @model_validator(mode="after")
    def _order(self) -> LengthBetweenArgs:
        if self.max is not None and self.max < self.min:
            msg = "max must be >= min"
            raise ValueError(msg)
        return self


def _exact_match(a: ExactMatchArgs) -> Callable[[Target], ScoreResult]:
    def norm(s: str) -> str:
        s = s.strip() if a.strip else s
        return s if a.case_sensitive else s.casefold()

    expected = norm(a.expected)
    return lambda t: boolean(norm(text_of(t, a.field)) == expected)


def _contains(a: ContainsArgs) -> Callable[[Target], ScoreResult]:
    needle = a.value if a.case_sensitive else a.value.casefold()
    if a.case_sensitive:
        return lambda t: boolean(needle in text_of(t, a.field))
    return lambda t: boolean(needle in text_of(t, a.field).casefold())


def _regex(a: RegexArgs) -> Callable[[Target], ScoreResult]:
    rx = re.compile(a.pattern, re.IGNORECASE if a.ignore_case else 0)
    find = rx.fullmatch if a.full_match else rx.search
    return lambda t: boolean(find(text_of(t, a.field)) is not None)


def _json_valid(a: JsonValidArgs) -> Callable[[Target], ScoreResult]:
    def score(t: Target) -> ScoreResult:
        try:
            doc = json.loads(text_of(t, a.field))
        except ValueError as exc:
            return boolean(False, f"not JSON: {exc}")
        missing = [k for k in a.required_keys if not isinstance(doc, dict) or k not in doc]
        return boolean(not missing, f"missing keys: {', '.join(missing)}" if missing else "")

    return score


def _levenshtein(a: LevenshteinArgs) -> Callable[[Target], ScoreResult]:
    def score(t: Target) -> ScoreResult:
        sim = float(Levenshtein.normalized_similarity(text_of(t, a.field), a.expected))
        passed = None if a.threshold is None else sim >= a.threshold
        return ScoreResult(sim, "NUMERIC", passed=passed)

    return score


def _length_between(a: LengthBetweenArgs) -> Callable[[Target], ScoreResult]:
    def score(t: Target) -> ScoreResult:
        text = text_of(t, a.field)
        n = len(text.split()) if a.unit == "words" else len(text)
        ok = n >= a.min and (a.max is None or n <= a.max)
        return boolean(ok, f"{n} {a.unit}")

    return score


BUILTINS: dict[str, tuple[type[_Args], Callable[[Any], Callable[[Target], ScoreResult]]]] = {
    "exact_match": (ExactMatchArgs, _exact_match),
    "contains": (ContainsArgs, _contains),
    "regex": (RegexArgs, _regex),
    "json_valid": (JsonValidArgs, _json_valid),
    "levenshtein": (LevenshteinArgs, _levenshtein),
    "length_between": (LengthBetweenArgs, _length_between),
}


# --- compiling a scorer spec ----------------------------------------------------------------------------------


class CodeScorerSpec(BaseModel):
    """A code scorer in a rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["code"] = "code"
    name: str = Field(..., min_length=1, max_length=200, description="The score's name.")
    function: str = Field(..., min_length=1, description="A built-in's name or `package.module:function`.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments; validated per built-in.")


@dataclass(frozen=True)
class CompiledScorer:
    name: str
    kind: str
    call: Callable[[Target], ScoreResult]

    def score(self, target: Target) -> ScoreResult:
        """Run the scorer; an exception becomes a result carrying the error."""
        try:
            return self.call(target)
        except Exception as exc:  # a user's scorer failing is data, not a crash
            return ScoreResult.failed(f"{type(exc).__name__}: {exc}"[:2000])


def compile_code_scorer(spec: CodeScorerSpec, where: str = "scorer") -> CompiledScorer:
    if ":" not in spec.function:
        entry = BUILTINS.get(spec.function)
        if entry is None:
            names = ", ".join(sorted(BUILTINS))
            msg = f"{where}.function: unknown built-in {spec.function!r} (built-ins: {names}; or pkg.module:function)"
            raise RuleCompileError(msg)
        args_model, factory = entry
        try:
            args = args_model.model_validate(spec.args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            msg = f"{where}.args: {problems}"
            raise RuleCompileError(msg) from exc
        return CompiledScorer(spec.name, spec.function, factory(args))
    module_name, _, attr = spec.function.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        msg = f"{where}.function: cannot import {spec.function!r}: {exc}"
        raise RuleCompileError(msg) from exc
    if not callable(fn):
        msg = f"{where}.function: {spec.function!r} is not callable"
        raise RuleCompileError(msg)
    extra = dict(spec.args)
    return CompiledScorer(spec.name, spec.function, lambda t: to_result(fn(t, **extra)))


def to_result(value: Any) -> ScoreResult:
    """A user function's return value as a ScoreResult."""
    if isinstance(value, ScoreResult):
        return value
    if isinstance(value, bool):
        return boolean(value)
    if isinstance(value, int | float):
        return ScoreResult(float(value), "NUMERIC")
    if isinstance(value, str):
        return ScoreResult(None, "CATEGORICAL", string_value=value)
    if (isinstance(value, dict) and "value" in value) or (isinstance(value, dict) and "label" in value):
        inner = to_result(value.get("value", value.get("label")))
        return ScoreResult(
            inner.value,
            inner.data_type,
            inner.string_value,
            value.get("passed", inner.passed),
            str(value.get("comment", "")),
            {str(k): str(v) for k, v in (value.get("metadata") or {}).items()},
        )
    msg = f"a scorer returned {type(value).__name__}; expected a number, bool, str, dict or ScoreResult"
    raise TypeError(msg)
