"""One POST of a batch of scores to ``/api/v1/scores`` and what its answer means.

``encode`` makes a batch's body once (it is posted again as it is on a retry); ``post_batch`` never raises for
the network or the server's answer: it returns an :class:`Outcome` saying how
many scores were delivered, how many were refused, and whether (and after how long) to post the batch again.

* 200 / 201: every score delivered; 207: delivered except the items in ``errors`` (each logged, never retried);
* 429, 5xx, a connection error or a timeout: retry, after ``Retry-After`` when the server sent one, else after
  :func:`backoff`;
* any other status (400, 401, 404, 413 ...): refused, logged, not retried.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx

logger = logging.getLogger("tracejudge_client")

BACKOFF_BASE_S = 0.5
"""The first retry's delay before jitter; each further retry doubles it."""
BACKOFF_MAX_S = 30.0
"""The longest delay between two tries of a batch (without a ``Retry-After``)."""
RETRY_AFTER_MAX_S = 300.0
"""A server's ``Retry-After`` longer than this is cut to it."""
LOGGED_ERRORS = 5
"""How many of a 207's item errors are logged one by one (the rest as a count)."""

_JSON = {"content-type": "application/json"}
# Compact, and without the encoder's check for cycles (a score object is the client's own dicts, its metadata a
# copy made of JSON; a cycle would still fail, as a RecursionError, and be left out by ``encode``).
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), check_circular=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one POST of a batch came to."""

    sent: int
    """Scores the server accepted."""
    failed: int
    """Scores the server refused (not to be retried)."""
    retry: bool = False
    """Post the whole batch again (nothing was accepted)."""
    delay_s: float | None = None
    """The server's ``Retry-After`` in seconds; None: use the client's backoff."""


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0 first): 0.5, 1, 2 ... s capped at 30 s, times a random
    factor in [0.5, 1] so that many clients do not retry in step."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** min(attempt, 32)) * random.uniform(0.5, 1.0)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date; ``now`` is the epoch time to count
    from), clamped to [0, 300]; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def encode(batch: list[dict[str, Any]]) -> tuple[bytes, int]:
    """The batch as a JSON list, and how many scores were left out because they are not JSON (each logged);
    one score's odd ``metadata`` must not cost the other scores of its batch."""
    try:
        return _ENCODER.encode(batch).encode(), 0
    except Exception:  # TypeError, ValueError, RecursionError...: find the scores at fault
        pass
    kept: list[str] = []
    for body in batch:
        try:
            kept.append(_ENCODER.encode(body))
        except Exception as exc:
            logger.warning("tracejudge: score %r not sent: not JSON: %s", body.get("name"), exc)
    return ("[" + ",".join(kept) + "]").encode(), len(batch) - len(kept)


def post_batch(http: httpx.Client, url: str, content: bytes, n: int) -> Outcome:
    """POST ``content`` (``n`` score objects as a JSON list, from :func:`encode`) to ``url`` once; see the
    module docstring."""
    try:
        response = http.post(url, content=content, headers=_JSON)
    except httpx.TransportError as exc:
        logger.debug("tracejudge: POST %s failed: %r", url, exc)
        return Outcome(sent=0, failed=0, retry=True)
    return read_answer(response, n)


def read_answer(response: httpx.Response, n: int) -> Outcome:
    """What the server's answer to a POST of ``n`` scores means."""
    status = response.status_code
    if status in (200, 201):
        return Outcome(sent=n, failed=0)
    if status == 207:
        refused = _log_item_errors(response, n)
        return Outcome(sent=n - refused, failed=refused)
    if status == 429 or status >= 500:
        return Outcome(sent=0, failed=0, retry=True, delay_s=retry_after(response.headers.get("retry-after")))
    logger.warning("tracejudge: the server refused %d scores: HTTP %d %s", n, status, response.text[:500])
    return Outcome(sent=0, failed=n)


def _log_item_errors(response: httpx.Response, n: int) -> int:
    """Log a 207's item errors; how many scores they refused."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if not isinstance(errors, list):
        errors = []
    for error in errors[:LOGGED_ERRORS]:
        if isinstance(error, dict):
            logger.warning(
                "tracejudge: score %s of a batch refused: %s: %s",
                error.get("index"),
                error.get("field"),
                error.get("message"),
            )
    if len(errors) > LOGGED_ERRORS:
        logger.warning("tracejudge: %d more scores of that batch refused", len(errors) - LOGGED_ERRORS)
    return min(len(errors), n)
