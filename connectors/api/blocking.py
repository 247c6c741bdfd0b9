"""Blocking calls from the API's async routes: ClickHouse and the stores run in anyio's worker threads, so the
event loop keeps serving while they wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a worker thread; its result, or its exception."""
    return await anyio.to_thread.run_sync(fn, *args)
