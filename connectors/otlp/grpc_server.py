"""OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

A generic handler receives the raw request bytes (grpcio's own deserialisation would parse every request
twice). Success is answered only once the spans are in the write-ahead log. Back-pressure is UNAVAILABLE
with a `google.rpc.RetryInfo` detail, which OTLP exporters retry after the given delay.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from connectors.auth.middleware import UNAUTHENTICATED, bearer_token
from connectors.auth.ring import KeyRing
from connectors.otlp.ingest import Ingestor
from dataflow import metrics
from dataflow.errors import DecodeError, WalError, WalFull
from dataflow.limits_config import LimitsConfig

logger = logging.getLogger(__name__)

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_TRANSPORT = "grpc"


def _abort(
    context: grpc.ServicerContext, code: grpc.StatusCode, rpc_code: int, message: str, details: Any = None
) -> None:
    status = status_pb2.Status(code=rpc_code, message=message)
    if details is not None:
        status.details.add().Pack(details)
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(code, message)


class _ExportHandler:
    def __init__(self, ingestor: Ingestor, ring: KeyRing | None) -> None:
        self._ingestor = ingestor
        self._ring = ring

    def _authorize(self, context: grpc.ServicerContext) -> frozenset[str] | None:
        """The projects the caller's key may send (None: every one); aborts without a key with `ingest`."""
        if self._ring is None or not self._ring.enabled:
            return None
        sent = [v for k, v in context.invocation_metadata() if k == "authorization"]
        token = bearer_token(str(sent[0])) if sent else None
        key = self._ring.verify(token) if token else None
        if key is None:
            metrics.AUTH_REQUESTS.labels(_TRANSPORT, "unauthenticated").inc()
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED, UNAUTHENTICATED)
        elif not key.allows("ingest"):
            metrics.AUTH_REQUESTS.labels(_TRANSPORT, "forbidden").inc()
            message = "this API key lacks the 'ingest' scope"
            _abort(context, grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED, message)
        assert key is not None
        metrics.AUTH_REQUESTS.labels(_TRANSPORT, "ok").inc()
        return key.projects if key.limited else None

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        allowed = self._authorize(context)
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self._ingestor.export(request, "protobuf", _TRANSPORT, allowed=allowed)
            response = ExportTraceServiceResponse()
            if result.rejected:
                response.partial_success.rejected_spans = result.rejected
                response.partial_success.error_message = result.message
                outcome = "partial"
            else:
                outcome = "ok"
            return bytes(response.SerializeToString())
        except DecodeError as exc:
            outcome = "bad_request"
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT, str(exc))
        except WalFull as exc:
            outcome = "throttled"
            retry = error_details_pb2.RetryInfo(
                retry_delay=Duration(seconds=int(exc.retry_after_s), nanos=int(exc.retry_after_s % 1 * 1e9))
            )
            _abort(context, grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE, str(exc), retry)
        except WalError as exc:  # logged once by the log itself (dataflow.health), not once per request
            _abort(context, grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE, str(exc))
        finally:
            metrics.RECEIVER_REQUESTS.labels(_TRANSPORT, outcome).inc()
            metrics.RECEIVER_REQUEST_DURATION.labels(_TRANSPORT).observe(time.perf_counter() - started)
        return b""  # unreachable: abort raises


def limit_options(limits: LimitsConfig) -> list[tuple[str, int]]:
    """grpc core's channel arguments for the `limits` settings: streams per connection, handshake and idle
    deadlines, and keepalive enforcement (a client pinging more often than allowed is sent GOAWAY)."""
    return [
        ("grpc.max_concurrent_streams", limits.grpc_max_concurrent_streams),
        ("grpc.server_handshake_timeout_ms", round(limits.grpc_handshake_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", round(limits.grpc_max_connection_idle_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", round(limits.grpc_min_ping_interval_s * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
    ]


def start_grpc_server(
    ingestor: Ingestor,
    host: str,
    port: int,
    max_message_bytes: int,
    workers: int = 8,
    ring: KeyRing | None = None,
    credentials: grpc.ServerCredentials | None = None,
    limits: LimitsConfig | None = None,
    reuse_port: bool = False,
) -> tuple[grpc.Server, int]:
    """Start the OTLP/gRPC receiver (with TLS when `credentials` are given); return the server and the port it
    bound. With a key ring, every export needs a key with the `ingest` scope in its `authorization` metadata.
    `reuse_port`: share the port with the other ingest workers (`SO_REUSEPORT`)."""
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                _ExportHandler(ingestor, ring), request_deserializer=None, response_serializer=None
            )
        },
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
        handlers=[handler],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", int(reuse_port)),
            *limit_options(limits or LimitsConfig()),
        ],
    )
    msg = f"cannot bind OTLP/gRPC on {host}:{port}"
    try:
        address = f"{host}:{port}"
        bound = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
    except RuntimeError as exc:  # grpcio >= 1.60 raises where older versions returned 0
        raise OSError(msg) from exc
    if bound == 0:
        raise OSError(msg)
    server.start()
    return server, bound
