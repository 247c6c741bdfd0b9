"""The judge client port: what a judge asks an LLM, what comes back, and the client that asks.

The judge step and its executor call this interface; the provider clients in `connectors/llm/` implement it
(`connectors.llm.factory.make_client` builds one per connection), so the core never imports the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call: the prompt, and the structure the answer must have.

    Numeric judges answer `{"score": number in [min_score, max_score], "rationale": str}`; categorical judges
    (`choices` set) answer `{"choice": one of the labels, "rationale": str}`. A non-empty `problem` says why
    the call cannot be sent (e.g. a variable it needs is missing): the judge step refuses it unsent.
    """

    system: str
    prompt: str
    min_score: float = 0.0
    max_score: float = 1.0
    choices: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


@dataclass(frozen=True)
class JudgeAnswer:
    score: float | None
    choice: str | None
    rationale: str
    input_tokens: int
    output_tokens: int
    model: str
    raw: str


class JudgeClient(Protocol):
    """A provider client. Raises the JudgeError subclasses of dataflow.errors; never retries by itself."""

    async def judge(self, request: JudgeRequest) -> JudgeAnswer: ...

    async def aclose(self) -> None: ...
