"""The module-level shortcuts (``tracejudge_client.create_score(...)`` ...) and the default client they use,
created on first use from the environment (``TRACEJUDGE_API_URL``, ``TRACEJUDGE_API_KEY``,
``TRACEJUDGE_PROJECT``)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from tracejudge_client.client import DataType, TraceJudge

_lock = threading.Lock()
_client: TraceJudge | None = None


def get_client() -> TraceJudge:
    """The default client, created on the first call."""
    global _client
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client = TraceJudge()
            client = _client
    return client


def create_score(
    *,
    name: str,
    value: float | str,
    session_id: str | None = None,
    dataset_run_id: str | None = None,
    trace_id: str | None = None,
    observation_id: str | None = None,
    score_id: str | None = None,
    data_type: DataType | None = None,
    comment: str | None = None,
    config_id: str | None = None,
    metadata: Any | None = None,
    timestamp: datetime | None = None,
) -> None:
    """:meth:`TraceJudge.create_score` on the default client."""
    get_client().create_score(
        name=name, value=value, session_id=session_id, dataset_run_id=dataset_run_id, trace_id=trace_id,
        observation_id=observation_id, score_id=score_id, data_type=data_type, comment=comment,
        config_id=config_id, metadata=metadata, timestamp=timestamp,
    )  # fmt: skip


def score_current_span(
    *,
    name: str,
    value: float | str,
    score_id: str | None = None,
    data_type: DataType | None = None,
    comment: str | None = None,
    config_id: str | None = None,
) -> None:
    """:meth:`TraceJudge.score_current_span` on the default client."""
    get_client().score_current_span(
        name=name, value=value, score_id=score_id, data_type=data_type, comment=comment, config_id=config_id
    )


def score_current_trace(
    *,
    name: str,
    value: float | str,
    score_id: str | None = None,
    data_type: DataType | None = None,
    comment: str | None = None,
    config_id: str | None = None,
) -> None:
    """:meth:`TraceJudge.score_current_trace` on the default client."""
    get_client().score_current_trace(
        name=name, value=value, score_id=score_id, data_type=data_type, comment=comment, config_id=config_id
    )


def flush(timeout_s: float | None = None) -> bool:
    """:meth:`TraceJudge.flush` on the default client (True when there is none yet)."""
    client = _client
    return True if client is None else client.flush(timeout_s)


def shutdown() -> None:
    """:meth:`TraceJudge.shutdown` on the default client, if there is one."""
    client = _client
    if client is not None:
        client.shutdown()
