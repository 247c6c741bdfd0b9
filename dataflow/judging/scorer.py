"""What every judge scorer shares: the `JudgeScorer` interface the judge step calls, the score it makes of an
answer (`JudgedScore`), and how a text is cut to the prompt budget (`cut`, `MAX_FIELD_CHARS`).

The scorer types (`judge.LlmJudgeSpec`, `autoevals_scorer.AutoevalsSpec`) each implement `JudgeScorer`; the
judge step and the rule checks call its methods and never ask which type they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from dataflow.judging.client import JudgeAnswer, JudgeRequest
    from dataflow.judging.connections import ConnectionSpec
    from dataflow.model import Span, Trace

MAX_FIELD_CHARS = 8_000  # characters of a span's input or output sent to a judge (each)


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the cut marked "[... N more characters]"."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}[... {len(text) - limit} more characters]"


@dataclass(frozen=True)
class JudgedScore:
    """A judge's answer as a score row's fields."""

    value: float | None
    string_value: str
    data_type: str
    passed: bool | None
    raw_score: float | None


class JudgeScorer(Protocol):
    """A scorer in a rule that asks a connection's LLM (`type`, `name` and `connection` are its spec's)."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def connection(self) -> str: ...

    def compiled(self, where: str) -> Self:
        """The scorer checked for a rule (RuleCompileError naming the field under `where`, e.g. `scorers[0]`)."""

    def build_request(self, trace: Trace, span: Span | None) -> JudgeRequest:
        """The call for `span` (span scope) or the whole `trace` (span None); a request whose `problem` is set
        cannot be sent."""

    def interpret(self, answer: JudgeAnswer) -> JudgedScore:
        """The answer as a score: value, label, pass/fail."""

    def connection_problem(self, conn: ConnectionSpec) -> str:
        """'' when `conn` can run this scorer; else why not (for the rules API, start-up and the judge step)."""

    def attribute_keys(self) -> frozenset[str]:
        """The span attribute keys the scorer reads (the rules' `span_needs` must keep them)."""
