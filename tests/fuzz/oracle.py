"""What a receiver must answer to a fuzz case (``tests/fuzz/strategies.py``), and an in-process ingest path.

* ``check_http_answer``: an OTLP/HTTP answer (``POST /v1/traces`` or ``/api/v1/traces``) is a 200 with an
  Export response, or a 400/413/415 with a Status whose message names the problem, in the request's encoding;
  never a 5xx. A 200 answers for every span the request carried.
* ``check_grpc_answer``: OK with an Export response, or INVALID_ARGUMENT / RESOURCE_EXHAUSTED with a message.
* ``RecordingWal`` and ``ingestor()``: the receivers' ``Ingestor`` over a log that keeps what it is given,
  to run the real decode path in-process.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
import pyarrow as pa
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from connectors.otlp.ingest import Ingestor
from dataflow.config import IngestConfig
from dataflow.model import SPAN_SCHEMA
from tests.fuzz.strategies import FuzzCase

CLIENT_ERRORS = (400, 413, 415)


@dataclass
class RecordingWal:
    """Stands in for the write-ahead log: every payload appended is read back as a record batch of the
    span schema (a payload the log could not store is a bug) and its rows are counted."""

    rows: int = 0
    batches: list[int] = field(default_factory=list)

    def check_capacity(self) -> None:
        return None

    def append_payload(self, payload: Any, rows: int) -> Future[None]:
        batch = pa.ipc.read_record_batch(pa.py_buffer(payload), SPAN_SCHEMA)
        assert batch.num_rows == rows, (batch.num_rows, rows)
        self.rows += rows
        done: Future[None] = Future()
        done.set_result(None)
        return done


def ingestor() -> Ingestor:
    # Re-sent bodies are not remembered (`ingest.duplicate_window_s` 0): a fuzz family sends the same request
    # plain and gzipped, and every copy must be decoded and counted as sent.
    return Ingestor(RecordingWal(), IngestConfig(duplicate_window_s=0))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Answer:
    """What a receiver answered for one case: spans it rejected (partial success) and, when it says so,
    accepted; or the error status and its message."""

    ok: bool
    rejected: int = 0
    accepted: int | None = None
    status: int | str = 200
    message: str = ""


def _check_counts(case: FuzzCase, answer: Answer) -> None:
    if case.spans is None:
        return
    assert answer.rejected <= case.spans, (answer, case.spans)
    if answer.accepted is not None:
        assert answer.accepted + answer.rejected == case.spans, (answer, case.spans)


def check_http_answer(case: FuzzCase, status: int, content_type: str, body: bytes, api: bool) -> Answer:
    """Raise AssertionError unless ``status``/``body`` is a valid OTLP/HTTP answer to ``case``."""
    assert status == 200 or status in CLIENT_ERRORS, (status, body[:300], case.broken)
    expected_type = "application/json" if api and status == 200 else case.content_type  # the API's is JSON
    assert content_type.split(";")[0].strip() == expected_type, (content_type, expected_type)
    if status != 200:
        if case.encoding == "json":
            doc = orjson.loads(body)
            message = doc["message"]
        else:
            message = status_pb2.Status.FromString(body).message
        assert message, (status, body[:300])
        return Answer(False, status=status, message=message)
    if case.encoding == "json" or api:
        doc = orjson.loads(body)
        partial = doc.get("partialSuccess") or {}
        rejected = int(partial.get("rejectedSpans") or 0)
        accepted = int(doc["acceptedSpans"]) if api else None
        if api:
            assert int(doc["rejectedSpans"]) == rejected
    else:
        response = ExportTraceServiceResponse.FromString(body)
        rejected, accepted = response.partial_success.rejected_spans, None
    if rejected:
        assert (partial.get("errorMessage") if case.encoding == "json" or api else
                response.partial_success.error_message), body[:300]  # fmt: skip
    answer = Answer(True, rejected, accepted)
    _check_counts(case, answer)
    return answer


def check_grpc_answer(case: FuzzCase, code: grpc.StatusCode, details: str, body: bytes | None) -> Answer:
    """Raise AssertionError unless the gRPC outcome is a valid OTLP/gRPC answer to ``case``."""
    allowed = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert code in allowed, (code, details, case.broken)
    if code != grpc.StatusCode.OK:
        assert details, code
        return Answer(False, status=code.name, message=details)
    response = ExportTraceServiceResponse.FromString(body or b"")
    answer = Answer(True, response.partial_success.rejected_spans)
    if answer.rejected:
        assert response.partial_success.error_message
    _check_counts(case, answer)
    return answer
