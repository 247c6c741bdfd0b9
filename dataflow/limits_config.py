"""Limits and timeouts of the network listeners (YAML key `limits`): what keeps slow or abusive clients from
holding the receivers and the API.

Modelled on the OTel Collector's `confighttp` (`read_header_timeout`, `idle_timeout`) and `configgrpc`
(`max_concurrent_streams`, keepalive enforcement) settings.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LimitsConfig(BaseModel):
    """Per-connection timeouts and connection limits of the OTLP/HTTP, API and OTLP/gRPC listeners (YAML key
    `limits`)."""

    model_config = ConfigDict(extra="forbid")

    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a client has to send a request's line and headers, from its connection (or the end of its "
            "previous response); then it gets 408 and is closed. Stops clients that send a byte a second."
        ),
    )
    http_body_timeout_s: float = Field(
        60.0,
        gt=0,
        description=(
            "Seconds a client has to send a whole request body once its headers are in; a body that stalls "
            "past it is cut and the connection closed."
        ),
    )
    http_keep_alive_s: int = Field(
        5, ge=1, description="Seconds an idle keep-alive HTTP connection stays open between requests."
    )
    http_max_connections: int = Field(
        2048,
        ge=1,
        description=(
            "Open connections (or requests under way) per HTTP listener above which new requests are "
            "answered 503."
        ),
    )
    grpc_max_concurrent_streams: int = Field(
        100, ge=1, description="Calls one OTLP/gRPC (HTTP/2) connection may have open at once."
    )
    grpc_handshake_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a new OTLP/gRPC connection has to finish its HTTP/2 handshake; then it is closed.",
    )
    grpc_max_connection_idle_s: float = Field(
        300.0, gt=0, description="Seconds an OTLP/gRPC connection with no call under way stays open."
    )
    grpc_min_ping_interval_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Shortest interval between a client's keepalive pings; a client pinging more often is sent "
            "GOAWAY (ENHANCE_YOUR_CALM), as grpc-go's keepalive enforcement does."
        ),
    )
