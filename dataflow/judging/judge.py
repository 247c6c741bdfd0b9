"""LLM-judge scorers in a rule, the prompt they send, and turning the answer into a score.

`{"type": "llm_judge", "name", "connection", "criteria", "min_score", "max_score", "threshold", "prompt"?,
"choices"?}`. The judge answers a score in [min_score, max_score] (or one of `choices`' labels, mapped to
values) and a rationale. The score row's Value is the score normalised to 0..1 ((score - min) / (max - min));
`Passed` is score >= threshold, threshold on the judge's own scale; the raw score is kept in Metadata.

Prompt budget (characters, documented here and in the README): span scope sends the span's input and output,
each cut to `MAX_FIELD_CHARS`; trace scope sends the spans in start order with name, kind, status, input and
output, each input/output cut to `MAX_SPAN_FIELD_CHARS`, the whole list cut to `MAX_TRACE_CHARS`. A cut is
marked "[... N more characters]".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataflow.judging.client import JudgeAnswer, JudgeRequest
from dataflow.judging.scorer import MAX_FIELD_CHARS, JudgedScore, cut
from dataflow.model import Span, Trace

if TYPE_CHECKING:
    from dataflow.judging.connections import ConnectionSpec

MAX_SPAN_FIELD_CHARS = 1_500
MAX_TRACE_CHARS = 24_000

SYSTEM_PROMPT = (
    "You are an impartial evaluator of an AI application's behaviour. Judge only against the criteria. "
    "Answer with the structured fields you are given: a score (or a choice) and a short rationale."
)

DEFAULT_TEMPLATE = """Criteria:
{criteria}

{subject}

Give a score from {min_score} to {max_score}{choices_hint}."""


class LlmJudgeSpec(BaseModel):
    """An LLM judge in a rule's `scorers`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["llm_judge"] = "llm_judge"
    name: str = Field(..., min_length=1, max_length=200, description="The score's name.")
    connection: str = Field(..., min_length=1, description="Name of an LLM connection.")
    criteria: str = Field(..., min_length=1, max_length=20_000)
    min_score: float = 0.0
    max_score: float = 1.0
    threshold: float | None = Field(None, description="Passed when score >= threshold (the judge's scale).")
    prompt: str | None = Field(
        None, description="Template with {criteria}, {input}, {output}, {spans}; default: a built-in prompt."
    )
    choices: dict[str, float] | None = Field(None, description="Categorical judge: label -> value.")

    @model_validator(mode="after")
    def _check(self) -> LlmJudgeSpec:
        if self.choices is not None:
            if not self.choices or any(not k.strip() for k in self.choices):
                msg = "choices must map non-empty labels to values"
                raise ValueError(msg)
            lo, hi = min(self.choices.values()), max(self.choices.values())
            if (self.min_score, self.max_score) == (0.0, 1.0) and (lo < 0 or hi > 1):
                object.__setattr__(self, "min_score", lo)
                object.__setattr__(self, "max_score", hi)
        if self.max_score <= self.min_score:
            msg = "max_score must be greater than min_score"
            raise ValueError(msg)
        if self.threshold is not None and not self.min_score <= self.threshold <= self.max_score:
            msg = "threshold must lie within [min_score, max_score]"
            raise ValueError(msg)
        if self.prompt is not None:
            try:
                self.prompt.format(criteria="", input="", output="", spans="")
            except (KeyError, IndexError, ValueError) as exc:
                msg = f"prompt: unknown or malformed placeholder {exc}; use {{criteria}} {{input}} {{output}} {{spans}}"
                raise ValueError(msg) from exc
        return self

    def compiled(self, where: str) -> LlmJudgeSpec:
        """Nothing to check beyond the model's own validation."""
        return self

    def connection_problem(self, conn: ConnectionSpec) -> str:
        """Every connection can run an LLM judge."""
        return ""

    def attribute_keys(self) -> frozenset[str]:
        """An LLM judge reads the input and output only."""
        return frozenset()

    def build_request(self, trace: Trace, span: Span | None) -> JudgeRequest:
        """The prompt for `span` (span scope) or the whole trace (span None), cut to the prompt budget."""
        subject_span = span if span is not None else trace.root
        inp = cut(subject_span.input if subject_span else "", MAX_FIELD_CHARS)
        out = cut(subject_span.output if subject_span else "", MAX_FIELD_CHARS)
        spans = render_spans(trace) if span is None else ""
        if self.prompt is not None:
            prompt = self.prompt.format(criteria=self.criteria, input=inp, output=out, spans=spans)
        else:
            if span is None:
                subject = f"The trace's spans, in order:\n{spans}\n\nThe trace's input and output:\n<input>{inp}</input>\n<output>{out}</output>"
            else:
                subject = f"<input>{inp}</input>\n<output>{out}</output>"
            hint = f" (or choose one of: {', '.join(self.choices)})" if self.choices else ""
            prompt = DEFAULT_TEMPLATE.format(
                criteria=self.criteria, subject=subject, min_score=_num(self.min_score), max_score=_num(self.max_score),
                choices_hint=hint,
            )  # fmt: skip
        return JudgeRequest(
            system=SYSTEM_PROMPT,
            prompt=prompt,
            min_score=self.min_score,
            max_score=self.max_score,
            choices=tuple(self.choices) if self.choices else (),
        )

    def interpret(self, answer: JudgeAnswer) -> JudgedScore:
        """The answer as a score: normalised value, label for categorical judges, pass/fail by threshold."""
        raw = answer.score
        label = ""
        if self.choices:
            label = answer.choice or ""
            raw = self.choices.get(label)
        if raw is None:
            return JudgedScore(None, label, "CATEGORICAL" if self.choices else "NUMERIC", None, None)
        value = (raw - self.min_score) / (self.max_score - self.min_score)
        passed = None if self.threshold is None else raw >= self.threshold
        return JudgedScore(value, label, "CATEGORICAL" if self.choices else "NUMERIC", passed, raw)


def render_spans(trace: Trace) -> str:
    parts = []
    for i, s in enumerate(trace.spans):
        parts.append(
            f"[{i + 1}] {s.name} ({s.kind}, status {s.status_code}, {s.duration_ms:.0f} ms)\n"
            f"<input>{cut(s.input, MAX_SPAN_FIELD_CHARS)}</input>\n<output>{cut(s.output, MAX_SPAN_FIELD_CHARS)}</output>"
        )
    return cut("\n".join(parts), MAX_TRACE_CHARS)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
