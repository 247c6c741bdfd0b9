"""`eventually`: the one way tests wait for something that happens asynchronously (rows, requests, state).

Timeouts are generous on purpose (tests run on a loaded 2-core CI): a passing check returns at once, so a
long timeout only costs time when the test fails anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    *,
    until: Callable[[T], object] = bool,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `check` until it passes and return its value.

    It passes when it returns a value `until` accepts (by default: a truthy one) without raising
    AssertionError. When `timeout` seconds pass first, raise AssertionError with the last value or failure
    and `message` (a callable is asked only then, e.g. for a process's log as it is at that moment).
    """
    deadline = time.monotonic() + timeout
    while True:
        failure: AssertionError | None = None
        try:
            value = check()
        except AssertionError as exc:
            failure = exc
        else:
            if until(value):
                return value
        if time.monotonic() >= deadline:
            last = f"last failure: {failure}" if failure is not None else f"last value: {value!r}"
            text = message() if callable(message) else message
            msg = f"not true within {timeout} s; {last}\n{text}".rstrip()
            raise AssertionError(msg) from failure
        time.sleep(interval)
