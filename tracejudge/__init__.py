"""tracejudge: online scoring of LLM traces. OTLP in, ClickHouse out.

The package re-exports the Python client (``tracejudge_client``), so ``import tracejudge;
tracejudge.TraceJudge(...)`` works too. Keep this module light: importing it must not import the service's heavy
dependencies (chdb, bytewax, pyarrow, grpc); ``tests/client/test_imports.py`` checks.
"""

from __future__ import annotations

from tracejudge_client import TraceJudge, create_score, score_current_span, score_current_trace

__version__ = "0.1.0"

__all__ = ["TraceJudge", "create_score", "score_current_span", "score_current_trace"]
