"""tracejudge's Python client: scores from applications and people (issue 10).

    from tracejudge_client import TraceJudge
    judge = TraceJudge()                       # TRACEJUDGE_API_URL, TRACEJUDGE_API_KEY, TRACEJUDGE_PROJECT
    judge.score_current_span(name="relevance", value=0.85)   # inside an OpenTelemetry span
    judge.create_score(name="accuracy", value=0.92, trace_id="abcdef1234567890abcdef1234567890")

or the same through the module-level shortcuts (``tracejudge_client.create_score(...)``, ``score_current_span``,
``score_current_trace``, ``flush``, ``shutdown``), which use a default client made from the environment. Calls
never block and never raise: scores are validated in the caller's thread (``validation``, shared with the API),
queued, and posted in batches by a background thread (``_sender``, ``_wire``).
"""

from __future__ import annotations

from tracejudge_client._default import (
    create_score,
    flush,
    get_client,
    score_current_span,
    score_current_trace,
    shutdown,
)
from tracejudge_client.client import TraceJudge
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
    "TraceJudge",
    "ValidScore",
    "create_score",
    "flush",
    "get_client",
    "score_body",
    "score_current_span",
    "score_current_trace",
    "shutdown",
    "validate_score",
]
