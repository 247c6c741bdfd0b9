"""`POST /api/v1/sql`'s query run: the read-only clients' answer, or the error the API answers for it.

The caller's own failed query is a 400 `query_error` naming the limit it hit (elsewhere a failed query is the
store's, a 503); every query slot taken past the wait is a 429 `too_many_requests` with Retry-After.
"""

from __future__ import annotations

import math
from typing import Any

from connectors.api.errors import ApiError
from connectors.clickhouse.readonly import ReadOnlyClient
from dataflow import metrics
from dataflow.errors import QueryBusy, QueryError


def query_outcome(exc: QueryError) -> str:
    """The `outcome` label of a failed query: busy (no free slot), refused (not read-only) or error."""
    if isinstance(exc, QueryBusy):
        return "busy"
    return "refused" if "readonly" in str(exc).lower() else "error"


def sql_answer(
    readonly: ReadOnlyClient, query: str
) -> tuple[list[str], list[str], list[tuple[Any, ...]], bool]:
    """Columns, types, rows and the cut flag of `query`; raises ApiError. Blocking."""
    try:
        answer = readonly.query(query)
    except QueryBusy as exc:
        metrics.API_SQL_QUERIES.labels(query_outcome(exc)).inc()
        retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        raise ApiError(429, str(exc), code="too_many_requests", headers=retry) from exc
    except QueryError as exc:
        metrics.API_SQL_QUERIES.labels(query_outcome(exc)).inc()
        raise ApiError(400, str(exc), code="query_error") from exc
    metrics.API_SQL_QUERIES.labels("ok").inc()
    return answer
