"""Braintrust `autoevals` LLM classifiers as scorers in a rule, run through a connection like LLM judges.

`{"type": "autoevals", "name": "Factuality", "connection": "openai", "evaluator"?, "args"?, "attributes"?,
"threshold"?}`. `evaluator` is the autoevals class (`Factuality`, `ClosedQA`, ...); when absent, `name` is.
The classifier's own prompt and choice scores are used; its score (0..1) is the row's Value, its choice the
string value, its reasoning the Comment; `Passed` is score >= threshold when a threshold is set.

What the evaluator reads: `input` and `output` are the scored span's (span scope) or the trace's root span's
(trace scope), each cut to `scorer.MAX_FIELD_CHARS`. Its other variables (Factuality's `expected`, ClosedQA's
`criteria`, Translation's `language`, Battle's `instructions`) come, first found wins, from the span attribute
named in `attributes` (default: `tracejudge.<variable>`, e.g. `tracejudge.expected`), then from the literal in
`args`; Battle's `instructions` fall back to the input. A variable that is still missing makes the call fail
before anything is sent (the judge step refuses it without using a budget, rate-limit or pending slot), so
the score row carries an error naming it.

Only autoevals' single-call LLM classifiers are accepted: the string, JSON and number scorers (use a `code`
scorer), embedding and moderation scorers and the multi-call RAGAS scorers are refused when the rule is saved.
Only OpenAI connections (`chat_completions` or `responses`) can run them: autoevals speaks the OpenAI API; the
rules API refuses to save a rule whose autoevals scorer names another connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from dataflow.errors import RuleCompileError
from dataflow.judging.client import JudgeAnswer, JudgeRequest
from dataflow.judging.scorer import MAX_FIELD_CHARS, JudgedScore, cut
from dataflow.model import Span, Trace

if TYPE_CHECKING:
    from dataflow.judging.connections import ConnectionSpec

# The LLM classifiers autoevals ships (autoevals/templates/*.yaml) -> their template variables other than
# `input` and `output`. tests/unit/test_autoevals_scorer.py holds this table to the installed templates.
EVALUATORS: dict[str, tuple[str, ...]] = {
    "Battle": ("instructions", "expected"),
    "ClosedQA": ("criteria",),
    "Factuality": ("expected",),
    "Humor": (),
    "Possible": (),
    "Security": (),
    "Sql": ("expected",),
    "Summary": ("expected",),
    "Translation": ("expected", "language"),
}
FROM_INPUT = frozenset({"instructions"})  # variables that default to the span's input
ATTRIBUTE_PREFIX = "tracejudge."

_NOT_LLM = "not an LLM classifier: use a code scorer (exact_match, contains, regex, json_valid, levenshtein)"
_REFUSED: dict[str, str] = {
    **dict.fromkeys(
        ("ExactMatch", "Levenshtein", "LevenshteinScorer", "NumericDiff", "JSONDiff", "ValidJSON", "ListContains"),
        _NOT_LLM,
    ),
    "EmbeddingSimilarity": "it calls the embeddings API, which connections do not serve",
    "AnswerSimilarity": "it calls the embeddings API, which connections do not serve",
    "Moderation": "it calls the moderations API, which connections do not serve",
    **dict.fromkeys(
        ("ContextEntityRecall", "ContextRelevancy", "ContextRecall", "ContextPrecision", "Faithfulness",
         "AnswerRelevancy", "AnswerCorrectness"),
        "a RAGAS scorer makes several LLM calls per score; only single-call classifiers run as scorers",
    ),
}  # fmt: skip


class AutoevalsSpec(BaseModel):
    """An autoevals LLM classifier in a rule's `scorers`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["autoevals"] = "autoevals"
    name: str = Field(
        ...,
        min_length=1,
        max_length=200,
        description="The score's name; the evaluator when `evaluator` is unset.",
    )
    evaluator: str | None = Field(
        None, min_length=1, description="autoevals class, e.g. Factuality; default: name."
    )
    connection: str = Field(..., min_length=1, description="Name of an OpenAI connection.")
    args: dict[str, str] = Field(
        default_factory=dict,
        description="Literal values of the evaluator's variables (expected, criteria...).",
    )
    attributes: dict[str, str] = Field(
        default_factory=dict,
        description="Variable -> span attribute key to read it from; default: tracejudge.<variable>.",
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Passed when score >= threshold; None: unset."
    )

    @property
    def evaluator_name(self) -> str:
        return self.evaluator or self.name

    def variables(self) -> tuple[str, ...]:
        """The evaluator's variables besides input and output (none for an unknown evaluator)."""
        return EVALUATORS.get(self.evaluator_name, ())

    def attribute_key(self, variable: str) -> str:
        return self.attributes.get(variable) or ATTRIBUTE_PREFIX + variable

    def attribute_keys(self) -> frozenset[str]:
        """The span attribute keys this scorer reads (the rules' `span_needs` must keep them)."""
        return frozenset(self.attribute_key(v) for v in self.variables())

    def compiled(self, where: str) -> AutoevalsSpec:
        """Check the evaluator and its variables; raise RuleCompileError naming the field."""
        key = f"{where}.evaluator" if self.evaluator else f"{where}.name"
        name = self.evaluator_name
        if name not in EVALUATORS:
            known = ", ".join(EVALUATORS)
            if name in _REFUSED:
                msg = (
                    f"{key}: autoevals {name!r} cannot run as a scorer ({_REFUSED[name]}); supported: {known}"
                )
                raise RuleCompileError(msg)
            close = [k for k in EVALUATORS if k.casefold() == name.casefold()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"{key}: unknown autoevals evaluator {name!r}{hint}; supported: {known}"
            raise RuleCompileError(msg)
        allowed = self.variables()
        for part in ("args", "attributes"):
            values: dict[str, str] = getattr(self, part)
            for variable, value in values.items():
                if variable not in allowed:
                    takes = ", ".join(allowed) if allowed else "nothing besides input and output"
                    msg = f"{where}.{part}.{variable}: {name} takes {takes} (input and output come from the span)"
                    raise RuleCompileError(msg)
                if part == "attributes" and not value.strip():
                    msg = f"{where}.attributes.{variable}: the attribute key must not be empty"
                    raise RuleCompileError(msg)
        return self

    def connection_problem(self, conn: ConnectionSpec) -> str:
        """'' for an OpenAI connection; else why it cannot run autoevals classifiers."""
        return connection_problem(conn)

    def build_request(self, trace: Trace, span: Span | None) -> AutoevalsRequest:
        """The evaluator's arguments from the span (span scope) or the trace's root span (trace scope); a
        variable that is missing sets the request's `problem`."""
        subject = span if span is not None else trace.root
        inp = cut(subject.input, MAX_FIELD_CHARS) if subject else ""
        out = cut(subject.output, MAX_FIELD_CHARS) if subject else ""
        attrs: Mapping[str, str] = subject.attributes if subject else {}
        arguments = {"input": inp, "output": out}
        missing: list[str] = []
        for variable in self.variables():
            value = attrs.get(self.attribute_key(variable)) or self.args.get(variable) or ""
            if not value and variable in FROM_INPUT:
                value = inp
            if not value:
                missing.append(variable)
            arguments[variable] = cut(value, MAX_FIELD_CHARS)
        name = self.evaluator_name
        problem = ""
        if missing:
            where = "the span" if span is not None else "the trace's root span"
            problem = "; ".join(
                f"autoevals {name} needs `{v}`: {where} has no attribute {self.attribute_key(v)!r} "
                f"(or it is empty) and args.{v} is not set"
                for v in missing
            )
        shown = "\n".join(f"<{k}>{v}</{k}>" for k, v in arguments.items())
        return AutoevalsRequest(
            system="",
            prompt=f"autoevals {name}\n{shown}",
            evaluator=name,
            arguments=arguments,
            problem=problem,
        )

    def interpret(self, answer: JudgeAnswer) -> JudgedScore:
        """autoevals already mapped its choice to a 0..1 score: that is the value, the choice the label."""
        value = answer.score
        passed = None if self.threshold is None or value is None else value >= self.threshold
        return JudgedScore(value, answer.choice or "", "CATEGORICAL", passed, value)


@dataclass(frozen=True)
class AutoevalsRequest(JudgeRequest):
    """A judge call that runs an autoevals classifier (connectors/llm/autoevals_client.py) instead of `prompt`.

    `prompt` shows what was scored (it is the judge span's input and the token estimate); `arguments` are the
    classifier's keyword arguments (output, input, expected...); a non-empty `problem` (a missing variable)
    fails the call unsent.
    """

    evaluator: str = ""
    arguments: Mapping[str, str] = field(default_factory=dict)


def connection_problem(conn: ConnectionSpec) -> str:
    """'' when `conn` can run autoevals classifiers; else why not (for the rules API and the call itself)."""
    if conn.provider == "openai" and conn.protocol in ("chat_completions", "responses"):
        return ""
    return (
        f"connection {conn.name!r} is {conn.provider} {conn.protocol}: autoevals scorers need an OpenAI "
        "connection (protocol chat_completions or responses)"
    )
