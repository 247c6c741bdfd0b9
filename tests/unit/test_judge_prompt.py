"""LLM-judge scorer specs, the prompt they send (with its budgets), and how answers become scores."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dataflow.judging.client import JudgeAnswer
from dataflow.judging.judge import LlmJudgeSpec
from dataflow.judging.scorer import MAX_FIELD_CHARS
from dataflow.model import Span
from tests import builders


def span(sid: str, parent: str, inp: str, out: str, name: str = "llm") -> Span:
    return builders.span(
        span_id=sid, parent_span_id=parent, name=name, status_code="Ok", start_ns=int(sid, 16),
        duration_ns=2_000_000, input=inp, output=out,
    )  # fmt: skip


ROOT = span("1" * 16, "", "What is the capital of France?", "Paris", name="agent")
CHILD = span("2" * 16, "1" * 16, "lookup France", "capital=Paris", name="tool")
TRACE = builders.trace(ROOT, CHILD)


def judge(**kw: Any) -> LlmJudgeSpec:
    base: dict[str, Any] = {"name": "helpful", "connection": "c", "criteria": "Answers the question."}
    base.update(kw)
    return LlmJudgeSpec(**base)


def test_span_scope_prompt_has_criteria_input_output() -> None:
    req = judge(min_score=1, max_score=5).build_request(TRACE, CHILD)
    assert "Answers the question." in req.prompt
    assert "<input>lookup France</input>" in req.prompt and "<output>capital=Paris</output>" in req.prompt
    assert "from 1 to 5" in req.prompt and (req.min_score, req.max_score) == (1, 5)
    assert "[1]" not in req.prompt


def test_trace_scope_prompt_lists_spans_in_order_and_the_root_io() -> None:
    req = judge().build_request(TRACE, None)
    assert req.prompt.index("[1] agent") < req.prompt.index("[2] tool")
    assert "<output>Paris</output>" in req.prompt


def test_fields_are_cut_to_the_budget() -> None:
    long = span("3" * 16, "", "x" * (MAX_FIELD_CHARS + 500), "y")
    req = judge().build_request(builders.trace(long), long)
    assert "[... 500 more characters]" in req.prompt


def test_custom_prompt_and_choices() -> None:
    spec = judge(prompt="Q: {input}\nA: {output}\nCriteria: {criteria}", choices={"good": 1, "bad": 0})
    req = spec.build_request(TRACE, ROOT)
    assert req.prompt == "Q: What is the capital of France?\nA: Paris\nCriteria: Answers the question."
    assert req.choices == ("good", "bad")


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"min_score": 1, "max_score": 1}, "max_score must be greater"),
        ({"threshold": 2}, "threshold must lie within"),
        ({"prompt": "{unknown}"}, "unknown or malformed placeholder"),
        ({"choices": {}}, "choices must map"),
        ({"criteria": ""}, "criteria"),
    ],
)
def test_invalid_judges(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        judge(**kw)


def ans(score: float | None = None, choice: str | None = None) -> JudgeAnswer:
    return JudgeAnswer(score, choice, "because", 10, 5, "m", "{}")


def test_interpret_numeric_normalises_and_thresholds() -> None:
    spec = judge(min_score=1, max_score=5, threshold=4)
    s = spec.interpret(ans(4))
    assert (s.value, s.passed, s.raw_score, s.data_type) == (0.75, True, 4, "NUMERIC")
    assert spec.interpret(ans(3)).passed is False
    assert judge().interpret(ans(0.5)).passed is None


def test_interpret_categorical() -> None:
    spec = judge(choices={"great": 5, "ok": 3, "bad": 1}, threshold=3)
    assert (spec.min_score, spec.max_score) == (1, 5)
    s = spec.interpret(ans(choice="ok"))
    assert (s.string_value, s.value, s.passed, s.data_type) == ("ok", 0.5, True, "CATEGORICAL")
