"""tracejudge's Python client: scores from applications and people (issue 10). For now the score validation the
API and the client share; the client runtime joins it here."""

from __future__ import annotations

from tracejudge_client.validation import (
    DATA_TYPES,
    MAX_BATCH,
    SOURCES,
    ScoreInvalid,
    ValidScore,
    score_body,
    validate_score,
)

__all__ = [
    "DATA_TYPES",
    "MAX_BATCH",
    "SOURCES",
    "ScoreInvalid",
    "ValidScore",
    "score_body",
    "validate_score",
]
