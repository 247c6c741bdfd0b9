"""Checks of a rule's judge scorers against the connections they name: the same for the rules API (a 400) and
the rules file applied at start-up (start-up fails), so a rule that can never call its judge is refused
wherever it comes from."""

from __future__ import annotations

from collections.abc import Callable

from dataflow.judging.connections import ConnectionSpec
from dataflow.rules.model import RuleSpec


def scorer_connection_problems(
    spec: RuleSpec, connection: Callable[[str], ConnectionSpec | None]
) -> list[tuple[str, str]]:
    """(field, message) for each scorer whose connection does not exist, or cannot run it (an autoevals scorer
    on a non-OpenAI connection); [] when every judge scorer can call its connection. A missing API key is not
    a problem here: it is reported by `config check`, the API's rule documents and the rule status."""
    problems = []
    for i, scorer in spec.judge_scorers():
        field = f"scorers[{i}].connection"
        conn = connection(scorer.connection)
        if conn is None:
            problems.append((field, f"{field}: no connection named {scorer.connection!r}"))
        elif problem := scorer.connection_problem(conn):
            problems.append((field, f"{field}: {problem}"))
    return problems
