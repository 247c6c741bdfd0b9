"""The API's one error shape, `{"error": {"code", "message", "field"?}}`, and the handlers that produce it.

    ApiError (an HTTPException)  a refusal our routes raise: status, message, field, code
    HTTPException (Starlette's)  404 of an unknown path, 405 ...: code from the status
    RequestValidationError       422 `validation_error`: the first few problems, never the input
    invalid(ValidationError)     400 `validation_error`: our own parsing of a body (a route raises it)
    QueryError, SinkError        503 `unavailable` with Retry-After: ClickHouse failed a query or write of ours
                                 (`POST /api/v1/sql` answers the caller's own failed query 400 `query_error`)
    anything else                500 `internal_error` (the server logs the traceback)

`code` is a stable snake_case string; `field` the dotted path of the offending field where one is known.
Messages are cut to a bounded length and never carry the request body back. The OTLP receivers (and the
OTLP answers of `POST /api/v1/traces`) keep OTLP's `Status` bodies; they are not built here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dataflow.errors import QueryError, SinkError

MAX_MESSAGE = 1_000
STORE_RETRY_AFTER_S = "1"  # seconds, for a 503 after a failed ClickHouse query or write
_MAX_PROBLEMS = 5
_MAX_PROBLEM = 200
_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}
# Where a request value comes from; the field path starts after it.
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable snake_case: validation_error, not_found, conflict, query_error...")
    message: str = Field(description=f"What went wrong, at most {MAX_MESSAGE} characters.")
    field: str | None = Field(
        None,
        description=f"Dotted path of the field at fault, when one is known (at most {_MAX_PROBLEM} characters).",
    )


class ErrorBody(BaseModel):
    """Every error answer of the API (the OTLP ingest answers aside)."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses answer an `ErrorBody`."""
    return {s: {"model": ErrorBody, "description": _CODES.get(s, "error")} for s in statuses}


class ApiError(HTTPException):
    """A refusal of one of our routes; `code` defaults to the status' (400: `validation_error`)."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, dict(headers) if headers else None)
        self.message = message
        self.field = field or None
        self.code = code or _CODES.get(status, "error")


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` cut to `limit` characters, marked as cut."""
    return text if len(text) <= limit else text[: limit - 15] + " ...(truncated)"


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    # the field path too: a body's key is the caller's input (a 100,000-character key came back whole)
    detail = ErrorDetail(
        code=code, message=bounded(message), field=bounded(field, _MAX_PROBLEM) if field else None
    )
    body = ErrorBody(error=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic location as a dotted path, without the request part it came from."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    return ".".join(parts)


def problems_text(errors: Sequence[Any]) -> str:
    """'field: problem; ...' of the first few errors; pydantic's `input` is left out on purpose."""
    texts = [
        bounded(f"{field_path(e['loc']) or '(body)'}: {e['msg']}", _MAX_PROBLEM)
        for e in errors[:_MAX_PROBLEMS]
    ]
    more = len(errors) - _MAX_PROBLEMS
    return "; ".join(texts) + (f"; and {more} more" if more > 0 else "")


def invalid(exc: ValidationError) -> ApiError:
    """A 400 `validation_error` for a body our route parsed itself, naming the first field at fault. Only a
    route's parsing makes one: a pydantic error anywhere else is the server's fault (500 `internal_error`)."""
    errors = exc.errors(include_input=False)
    field = field_path(errors[0]["loc"]) if errors else None
    return ApiError(400, problems_text(errors), field)


def _validation(status: int, errors: Sequence[Any]) -> JSONResponse:
    if errors and errors[0]["type"] == "json_invalid":  # its location is a character position, not a field
        return error_response(status, "validation_error", f"the body is not valid JSON: {errors[0]['msg']}")
    field = field_path(errors[0]["loc"]) if errors else ""
    return error_response(status, "validation_error", problems_text(errors), field)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` with an `ErrorBody`."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, ApiError):
            return error_response(exc.status_code, exc.code, exc.message, exc.field, exc.headers)
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation(422, exc.errors())

    @app.exception_handler(QueryError)
    @app.exception_handler(SinkError)
    async def store_failed(_: Request, exc: QueryError | SinkError) -> JSONResponse:
        message = f"the store failed, retry: {exc}"
        return error_response(503, "unavailable", message, None, {"Retry-After": STORE_RETRY_AFTER_S})

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises `exc` after this answer is sent, and the server logs it with its traceback.
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__})")
