"""The one export path every receiver shares: decode, validate, normalise, append to the log, count.

An export is answered with success only after its spans are durable in the write-ahead log. Malformed spans
are skipped and counted; the rest of the request is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from connectors.otlp.builder import Normalizer, restricted, with_project
from connectors.otlp.decode import DecodedRequest, decode_json, decode_protobuf
from connectors.otlp.decode_pool import DecodedPayload, DecodePool, to_payload
from connectors.otlp.dedupe import RecentRequests, request_key
from connectors.wal.log import Wal
from dataflow import metrics
from dataflow.config import IngestConfig
from dataflow.errors import WalError

Encoding = Literal["protobuf", "json"]


@dataclass(frozen=True)
class ExportResult:
    accepted: int
    rejected: int
    traces: int
    message: str


class Deduper(Protocol):
    """What remembers acknowledged requests: `dedupe.RecentRequests`, or a worker's link to the main
    process's one (`tracejudge/dedupe_link.py`)."""

    def once(self, key: bytes, run: Callable[[], ExportResult]) -> tuple[ExportResult, bool]: ...


def normalizer_from(config: IngestConfig) -> Normalizer:
    return Normalizer(
        input_keys=tuple(config.input_keys),
        output_keys=tuple(config.output_keys),
        project_keys=tuple(config.project_keys),
        session_keys=tuple(config.session_keys),
        default_project=config.default_project,
        keep_io_in_attributes=config.keep_io_in_attributes,
        max_errors_in_message=config.max_errors_in_message,
    )


class Ingestor:
    """Turns request bodies into durable span batches. Thread-safe; call from receiver threads."""

    def __init__(
        self,
        wal: Wal,
        config: IngestConfig,
        append_timeout_s: float = 60.0,
        pool: DecodePool | None = None,
        recent: Deduper | None = None,
    ) -> None:
        self.wal = wal
        self.config = config
        self.normalizer = normalizer_from(config)
        self._timeout = append_timeout_s
        self._pool = pool
        self._recent = recent
        if recent is None and config.duplicate_window_s > 0:
            self._recent = RecentRequests(config.duplicate_window_s, config.duplicate_max_requests)

    def decode(
        self,
        body: bytes,
        encoding: Encoding,
        project: str | None = None,
        allowed: frozenset[str] | None = None,
    ) -> DecodedRequest:
        now = time.time_ns()
        norm = self.normalizer if project is None else with_project(self.normalizer, project)
        norm = restricted(norm, allowed)
        if encoding == "protobuf":
            return decode_protobuf(body, norm, now)
        return decode_json(body, norm, now)

    def export(
        self,
        body: bytes,
        encoding: Encoding,
        transport: str,
        project: str | None = None,
        allowed: frozenset[str] | None = None,
    ) -> ExportResult:
        """Decode and durably append; `project`, when given, is every span's project (else each resource's);
        spans of projects outside `allowed` (an API key's; None: every project) are rejected and counted.
        Raises DecodeError (bad body), WalFull (back-pressure), WalError. A copy of a request acknowledged
        lately is answered as the first was and stores nothing (`connectors/otlp/dedupe.py`)."""
        metrics.RECEIVER_REQUEST_BYTES.labels(transport).inc(len(body))
        if self._recent is None:
            return self._export(body, encoding, transport, project, allowed)
        key = request_key(body, encoding, project, allowed)
        result, duplicate = self._recent.once(
            key, lambda: self._export(body, encoding, transport, project, allowed)
        )
        if duplicate:
            metrics.RECEIVER_DUPLICATE_REQUESTS.labels(transport).inc()
        return result

    def _export(
        self,
        body: bytes,
        encoding: Encoding,
        transport: str,
        project: str | None,
        allowed: frozenset[str] | None,
    ) -> ExportResult:
        self.wal.check_capacity()
        if self._pool is not None:
            decoded = self._pool.decode(body, encoding, time.time_ns(), project, allowed)
        else:
            decoded = to_payload(self.decode(body, encoding, project, allowed))
        return self.append(decoded, transport)

    def append(self, decoded: DecodedPayload, transport: str) -> ExportResult:
        if decoded.payload is not None:
            future = self.wal.append_payload(decoded.payload, decoded.accepted)
            try:
                future.result(timeout=self._timeout)
            except TimeoutError as exc:
                msg = f"write-ahead log did not commit within {self._timeout:.0f}s"
                raise WalError(msg) from exc
        for reason, count in decoded.reject_reasons.items():
            metrics.RECEIVER_REJECTED_SPANS.labels(reason).inc(count)
        metrics.RECEIVER_SPANS.labels(transport, "accepted").inc(decoded.accepted)
        metrics.RECEIVER_SPANS.labels(transport, "rejected").inc(decoded.rejected)
        return ExportResult(decoded.accepted, decoded.rejected, decoded.traces, decoded.message)
