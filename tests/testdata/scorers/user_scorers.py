"""User scorer functions for the tests (imported by path `tests.testdata.scorers.user_scorers:NAME`)."""

from __future__ import annotations

from typing import Any

from dataflow.scorers.code import ScoreResult


def word_count(target: Any) -> int:
    return len(target.output.split()) if hasattr(target, "output") else len(target.root.output.split())


def is_polite(target: Any) -> bool:
    return "please" in target.input.lower()


def tone(target: Any) -> str:
    return "positive" if "!" in target.output else "neutral"


def rich(target: Any, bonus: float = 0.0) -> dict[str, Any]:
    return {"value": 0.5 + bonus, "passed": True, "comment": "fine", "metadata": {"k": 1}}


def full(target: Any) -> ScoreResult:
    return ScoreResult(0.25, "NUMERIC", comment="explicit")


def boom(target: Any) -> float:
    raise ValueError("scorer exploded")


def weird(target: Any) -> object:
    return object()


NOT_CALLABLE = 3
