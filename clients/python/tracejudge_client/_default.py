"""The module-level shortcuts (``tracejudge_client.create_score(...)`` ...) and the default client they use,
created on first use from the environment (``TRACEJUDGE_API_URL``, ``TRACEJUDGE_API_KEY``,
``TRACEJUDGE_PROJECT``).

Each shortcut is the client's method bound to the default client at call time, with the method's own
keyword-only signature (for type checkers, ``inspect.signature`` and ``help``)."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from tracejudge_client.client import TraceJudge

P = ParamSpec("P")
R = TypeVar("R")

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


def _on_default_client(method: Callable[Concatenate[TraceJudge, P], R]) -> Callable[P, R]:
    """``method`` called on the default client."""

    @functools.wraps(method)
    def shortcut(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(get_client(), *args, **kwargs)

    signature = inspect.signature(method)
    shortcut.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return shortcut


create_score = _on_default_client(TraceJudge.create_score)
score_current_span = _on_default_client(TraceJudge.score_current_span)
score_current_trace = _on_default_client(TraceJudge.score_current_trace)


def flush(timeout_s: float | None = None) -> bool:
    """:meth:`TraceJudge.flush` on the default client (True when there is none yet)."""
    client = _client
    return True if client is None else client.flush(timeout_s)


def shutdown() -> None:
    """:meth:`TraceJudge.shutdown` on the default client, if there is one."""
    client = _client
    if client is not None:
        client.shutdown()
