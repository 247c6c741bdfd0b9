"""OTLP/HTTP receiver (`POST /v1/traces`) and the export handling shared with the API's `/api/v1/traces`.

Follows the OTLP/HTTP spec: protobuf or JSON by Content-Type (415 otherwise), gzip or deflate bodies, the
size limit counted after decompression (413), 400 with a Status body for an undecodable request, 429 with
Retry-After when the log is full, 503 when it is unusable, and a response in the request's encoding.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
import orjson
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from connectors.auth.middleware import AuthMiddleware, caller_projects
from connectors.auth.ring import KeyRing
from connectors.otlp.ingest import Encoding, ExportResult, Ingestor
from dataflow import metrics
from dataflow.errors import DecodeError, WalError, WalFull

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class HttpError(Exception):
    def __init__(
        self, status: int, outcome: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class ExportRequest:
    body: bytes
    encoding: Encoding


def request_encoding(content_type: str | None) -> Encoding:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return "protobuf"
    if media == JSON:
        return "json"
    raise HttpError(
        415, "unsupported", f"unsupported Content-Type {media or '(none)'!r}; use {PROTOBUF} or {JSON}"
    )


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    decomp = zlib.decompressobj(wbits)
    try:
        out = decomp.decompress(data, limit + 1)
    except zlib.error as exc:
        raise HttpError(400, "bad_request", f"body could not be decompressed: {exc}") from exc
    if len(out) > limit:
        raise HttpError(413, "too_large", f"decompressed body is over the {limit}-byte limit")
    if not decomp.eof:
        raise HttpError(400, "bad_request", "compressed body is truncated")
    return out


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo gzip or deflate; enforce `limit` on the decompressed size."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise HttpError(413, "too_large", f"body is over the {limit}-byte limit")
        return body
    if enc in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit)
    if enc == "deflate":
        # RFC 9110 deflate is zlib-wrapped; accept raw deflate too, as browsers and some clients send it.
        try:
            return _inflate(body, zlib.MAX_WBITS, limit)
        except HttpError as exc:
            if exc.status == 413:
                raise
            return _inflate(body, -zlib.MAX_WBITS, limit)
    raise HttpError(415, "unsupported", f"unsupported Content-Encoding {enc!r}; use gzip or deflate")


async def read_export_request(request: Request, limit: int) -> ExportRequest:
    encoding = request_encoding(request.headers.get("content-type"))
    declared = request.headers.get("content-length")
    if (
        declared
        and declared.isdigit()
        and int(declared) > limit
        and not request.headers.get("content-encoding")
    ):
        raise HttpError(413, "too_large", f"body is over the {limit}-byte limit")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit * 4 + 1024:  # even a compressed body this large is refused outright
                raise HttpError(413, "too_large", f"body is over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect as exc:  # gone mid-body, or cut by limits.http_body_timeout_s: no server error
        raise HttpError(
            400, "bad_request", "the client closed the connection before sending the whole body"
        ) from exc
    body = decompress(b"".join(chunks), request.headers.get("content-encoding"), limit)
    return ExportRequest(body, encoding)


def status_body(encoding: Encoding, code: int, message: str) -> tuple[bytes, str]:
    if encoding == "json":
        return orjson.dumps({"code": code, "message": message}), JSON
    return status_pb2.Status(code=code, message=message).SerializeToString(), PROTOBUF


def otlp_success(encoding: Encoding, result: ExportResult) -> Response:
    if encoding == "json":
        doc: dict[str, object] = {}
        if result.rejected:
            doc["partialSuccess"] = {"rejectedSpans": str(result.rejected), "errorMessage": result.message}
        return Response(orjson.dumps(doc), 200, media_type=JSON)
    response = ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.rejected_spans = result.rejected
        response.partial_success.error_message = result.message
    return Response(response.SerializeToString(), 200, media_type=PROTOBUF)


_RPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.UNAVAILABLE,
    503: code_pb2.UNAVAILABLE,
}


async def handle_export(
    request: Request,
    ingestor: Ingestor,
    transport: str,
    success: Callable[[Encoding, ExportResult], Response],
    project: str | None = None,
    allowed: frozenset[str] | None = None,
) -> Response:
    """Run one export request through the shared path and answer it; never raises for bad input. `project`,
    when given, is every span's project (else each resource's); spans of projects outside `allowed` (the
    caller's API key's, None: every project) are rejected, a partial success naming why."""
    started = time.perf_counter()
    outcome = "error"
    encoding: Encoding = "json" if "json" in (request.headers.get("content-type") or "") else "protobuf"
    try:
        export = await read_export_request(request, ingestor.config.max_body_bytes)
        encoding = export.encoding
        result = await anyio.to_thread.run_sync(
            ingestor.export, export.body, export.encoding, transport, project, allowed
        )
        outcome = "partial" if result.rejected else "ok"
        return success(export.encoding, result)
    except HttpError as exc:
        outcome = exc.outcome
        return _error(encoding, exc.status, exc.message, exc.headers)
    except DecodeError as exc:
        outcome = "bad_request"
        return _error(encoding, 400, str(exc))
    except WalFull as exc:
        outcome = "throttled"
        return _error(encoding, 429, str(exc), {"Retry-After": str(max(1, round(exc.retry_after_s)))})
    except WalError as exc:  # logged once by the log itself (dataflow.health), not once per request
        return _error(encoding, 503, str(exc), {"Retry-After": "5"})
    finally:
        metrics.RECEIVER_REQUESTS.labels(transport, outcome).inc()
        metrics.RECEIVER_REQUEST_DURATION.labels(transport).observe(time.perf_counter() - started)


def _error(encoding: Encoding, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body, media = status_body(encoding, _RPC_CODES.get(status, code_pb2.INTERNAL), message)
    return Response(body, status, media_type=media, headers=headers)


def _deny(status: int, message: str, scope: Scope) -> Response:
    """A refusal by the key check, as an OTLP Status in the request's encoding."""
    content_type = Headers(scope=scope).get("content-type") or ""
    encoding: Encoding = "json" if "json" in content_type else "protobuf"
    code = code_pb2.UNAUTHENTICATED if status == 401 else code_pb2.PERMISSION_DENIED
    body, media = status_body(encoding, code, message)
    return Response(body, status, media_type=media)


def build_otlp_http_app(ingestor: Ingestor, ring: KeyRing | None = None) -> ASGIApp:
    """The OTLP/HTTP receiver app for port 4318; with a key ring, every export needs the `ingest` scope."""

    async def export(request: Request) -> Response:
        return await handle_export(request, ingestor, "http", otlp_success, allowed=caller_projects(request))

    app = Starlette(routes=[Route("/v1/traces", export, methods=["POST"])])
    if ring is None:
        return app
    return AuthMiddleware(app, ring, "http", lambda _method, _path: "ingest", _deny)
