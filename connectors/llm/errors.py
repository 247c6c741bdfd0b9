"""SDK and HTTP errors mapped onto the `JudgeError` tree of dataflow.errors, with Retry-After.

`sdk_error` maps the exceptions the official `openai` and `anthropic` SDKs share (status, timeout, connection,
validation); `local_error` what is not the SDK's own (a 200 whose body is not JSON, the SDK refusing a request).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pydantic

from connectors.llm.answers import snippet, who
from dataflow.errors import (
    JudgeAuthError,
    JudgeBadResponse,
    JudgeError,
    JudgeRateLimited,
    JudgeRequestError,
    JudgeServerError,
    JudgeTimeout,
)
from dataflow.judging.connections import ConnectionSpec


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date); None when absent."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        value = float(ra)
    except ValueError:
        try:
            when = parsedate_to_datetime(ra)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return value if math.isfinite(value) and value >= 0 else None


def api_message(body: object, fallback: str) -> str:
    """The provider's error message from an error body (OpenAI: `{message}`; Anthropic: `{error: {message}}`)."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return snippet(inner["message"])
        if isinstance(body.get("message"), str):
            return snippet(body["message"])
    if isinstance(body, str) and body.strip():
        return snippet(body)
    return snippet(fallback)


def status_error(
    spec: ConnectionSpec, status: int, headers: Mapping[str, str] | None, detail: str
) -> JudgeError:
    """The JudgeError for an HTTP error status."""
    wait = retry_after_s(headers)
    after = f" (Retry-After {wait:g} s)" if wait is not None else ""
    prefix = f"{who(spec)}: HTTP {status}"
    if status == 429:
        return JudgeRateLimited(f"{prefix} rate limited{after}: {detail}", retry_after_s=wait)
    if status in (401, 403):
        kind = "unauthorized" if status == 401 else "forbidden"
        return JudgeAuthError(f"{prefix} {kind}: {detail} (key from env var {spec.api_key_env})")
    if status == 408:
        return JudgeTimeout(f"{prefix} request timeout: {detail}")
    if 400 <= status < 500:
        return JudgeRequestError(f"{prefix} request refused: {detail}")
    return JudgeServerError(f"{prefix} server error{after}: {detail}", retry_after_s=wait)


def timeout_error(spec: ConnectionSpec) -> JudgeTimeout:
    return JudgeTimeout(f"{who(spec)}: no answer within {spec.timeout_s:g} s (timeout)")


def connection_error(
    spec: ConnectionSpec, exc: BaseException, cause: BaseException | None = None
) -> JudgeServerError:
    cause = cause or exc.__cause__ or exc.__context__
    reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    target = spec.base_url or "the provider's default URL"
    return JudgeServerError(f"{who(spec)}: connection to {target} failed: {snippet(reason)}")


def sdk_error(spec: ConnectionSpec, exc: Exception, sdk: Any, base: type[Exception]) -> JudgeError | None:
    """The JudgeError for an exception of an official SDK (`sdk`: the `openai` or `anthropic` module, whose
    generated clients share these exception classes; `base`: the SDK's root error); None when not the SDK's."""
    if isinstance(exc, sdk.APITimeoutError):
        refused = _connection_failure(exc)
        return timeout_error(spec) if refused is None else connection_error(spec, exc, refused)
    if isinstance(exc, sdk.APIConnectionError):
        return connection_error(spec, exc)
    if isinstance(exc, sdk.APIStatusError):
        detail = api_message(exc.body, exc.message)
        return status_error(spec, exc.status_code, exc.response.headers, detail)
    if isinstance(exc, sdk.APIResponseValidationError):
        return JudgeBadResponse(f"{who(spec)}: HTTP {exc.status_code} with an unexpected body: {exc.message}")
    if isinstance(exc, base):
        return JudgeRequestError(f"{who(spec)}: {type(exc).__name__}: {exc}")
    return None


def _connection_failure(exc: BaseException) -> BaseException | None:
    """The aiohttp connection error behind an SDK timeout, if there is one.

    The SDKs' aiohttp transport (`DefaultAioHttpClient`) turns every `aiohttp.ClientConnectionError`, a refused
    or reset connection too, into httpx's `ConnectTimeout`, which the SDK raises as `APITimeoutError`. A real
    timeout is aiohttp's `ServerTimeoutError` (a `TimeoutError`) or our own deadline; anything else in the
    cause chain is a connection failure and is reported as one (both are retried).
    """
    import aiohttp

    cause = exc.__cause__ or exc.__context__
    for _ in range(8):  # a short chain: SDK error <- httpx error <- aiohttp error
        if cause is None:
            return None
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def local_error(spec: ConnectionSpec, exc: Exception) -> JudgeError | None:
    """Errors that are not the SDK's own: a 200 whose body is not JSON, and the SDK refusing a request."""
    if isinstance(exc, json.JSONDecodeError):
        return JudgeBadResponse(
            f"{who(spec)}: HTTP 200 but the response body is not JSON ({exc.msg}, char {exc.pos}): "
            f"{snippet(exc.doc) or '(empty)'}"
        )
    if isinstance(exc, pydantic.ValidationError):
        return JudgeBadResponse(
            f"{who(spec)}: the response does not have the API's shape: {snippet(str(exc))}"
        )
    if isinstance(exc, ValueError):  # e.g. the SDK checking arguments before sending
        return JudgeRequestError(f"{who(spec)}: the SDK refused the request: {snippet(str(exc))}")
    return None
