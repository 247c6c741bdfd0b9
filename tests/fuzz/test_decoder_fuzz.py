"""Fuzzing the decode path in-process: ``Ingestor.export`` (what every receiver calls, after the HTTP
receivers' ``decompress``), the OTLP/HTTP app and ``POST /api/v1/traces``'s handler through Starlette's
test client, and the gRPC handler; ``TJ_FUZZ_EXAMPLES`` cases each (``make fuzz``: 100,000 in all)."""

from __future__ import annotations

import sys
from typing import Any

import grpc
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from connectors.api.app import _ingest_success
from connectors.otlp.grpc_server import _ExportHandler
from connectors.otlp.http import HttpError, build_otlp_http_app, decompress, handle_export
from dataflow.errors import DecodeError
from tests.fuzz.conftest import RAN, SEED
from tests.fuzz.oracle import RecordingWal, check_grpc_answer, check_http_answer, ingestor
from tests.fuzz.strategies import FuzzCase, case_families, fuzz_cases

INGESTOR = ingestor()
LIMIT = INGESTOR.config.max_body_bytes


def _count(name: str) -> None:
    RAN[name] = RAN.get(name, 0) + 1


def ingest_case(case: FuzzCase) -> None:
    """Decompress + decode + serialise for the log: only DecodeError or the HTTP layer's 400/413, never
    anything else; when it decodes, accepted + rejected = the spans sent and the log gets the accepted."""
    _count("ingest path")
    wal = INGESTOR.wal
    assert isinstance(wal, RecordingWal)
    before = wal.rows
    try:
        raw = decompress(case.body, case.content_encoding, LIMIT)
        result = INGESTOR.export(raw, case.encoding, "fuzz")
    except HttpError as exc:
        assert exc.status in (400, 413) and exc.message
        return
    except DecodeError as exc:
        assert str(exc)
        return
    assert wal.rows - before == result.accepted
    if case.spans is not None:
        assert result.accepted + result.rejected == case.spans, (result, case.spans)
    assert bool(result.message) == bool(result.rejected)


@seed(SEED)
@settings(settings.get_profile("fuzz"))
@given(case_families())
def test_ingest_path_never_fails_unexpectedly(cases: list[FuzzCase]) -> None:
    """``TJ_FUZZ_EXAMPLES`` drawn requests, each as 15 cases (``case_families``)."""
    for case in cases:
        ingest_case(case)


def _apps() -> tuple[TestClient, TestClient]:
    async def api_ingest(request: Request) -> Response:
        return await handle_export(request, INGESTOR, "api", _ingest_success)

    api = Starlette(routes=[Route("/api/v1/traces", api_ingest, methods=["POST"])])
    return TestClient(build_otlp_http_app(INGESTOR)), TestClient(api)


OTLP_HTTP, API = _apps()


@seed(SEED)
@settings(settings.get_profile("fuzz"))
@given(fuzz_cases(), st.booleans())
def test_http_answers_are_otlp(case: FuzzCase, api: bool) -> None:
    """``POST /v1/traces`` and ``/api/v1/traces``: never a 5xx; a valid OTLP answer in the request's encoding."""
    _count("HTTP handlers")
    headers = {"content-type": case.content_type}
    if case.content_encoding:
        headers["content-encoding"] = case.content_encoding
    client, path = (API, "/api/v1/traces") if api else (OTLP_HTTP, "/v1/traces")
    r = client.post(path, content=case.body, headers=headers)
    check_http_answer(case, r.status_code, r.headers.get("content-type", ""), r.content, api=api)


class _Aborted(Exception):
    pass


class FakeContext:
    """What ``_ExportHandler`` uses of a ``grpc.ServicerContext``: abort (raises) and trailing metadata."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    details = ""

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.metadata = metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted


GRPC_HANDLER = _ExportHandler(INGESTOR, None)


@seed(SEED)
@settings(settings.get_profile("fuzz"))
@given(fuzz_cases(encodings=("protobuf",)))
def test_grpc_answers_are_otlp(case: FuzzCase) -> None:
    """The gRPC Export handler on the uncompressed body (grpcio undoes gzip before it): OK or
    INVALID_ARGUMENT with a message, never another error."""
    _count("gRPC handler")
    context = FakeContext()
    try:
        body: bytes | None = GRPC_HANDLER(case.raw, context)
    except _Aborted:
        body = None
    check_grpc_answer(case, context.code, context.details, body)


@pytest.mark.parametrize("levels", [20, 60])
def test_protobuf_nesting_past_the_limit_is_named(levels: int) -> None:
    """Arrays within arrays: 20 levels decode; 60 (past protobuf's 100 messages) are a DecodeError that
    says so."""
    from tests.fuzz.wire import Deep, to_protobuf

    doc = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "s"}, "spans": [
        {"traceId": "1" * 32, "spanId": "2" * 16, "name": "n", "attributes": [("k", Deep("array", levels))]}
    ]}]}]}  # fmt: skip
    if levels == 20:
        assert INGESTOR.export(to_protobuf(doc), "protobuf", "fuzz").accepted == 1
        return
    with pytest.raises(DecodeError, match="nest more than protobuf's limit of 100"):
        INGESTOR.export(to_protobuf(doc), "protobuf", "fuzz")


def _from_deep_stack(frames: int, body: bytes) -> Any:
    return INGESTOR.decode(body, "json") if frames == 0 else _from_deep_stack(frames - 1, body)


@pytest.mark.parametrize("levels", [64, 65, 300])
def test_json_nesting_is_bounded(levels: int) -> None:
    """OTLP/JSON arrays within arrays: up to 64 levels are kept; deeper, the span is rejected naming the
    limit, and decoding never recurses far, even when called with most of Python's stack used."""
    value = '{"arrayValue":{"values":[' * levels + '{"intValue":"1"}' + "]}}" * levels
    span = f'{{"traceId":"{"1" * 32}","spanId":"{"2" * 16}","name":"n","attributes":[{{"key":"k","value":{value}}}]}}'
    body = f'{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}'.encode()
    decoded = _from_deep_stack(sys.getrecursionlimit() - 250, body)
    assert (decoded.accepted, decoded.rejected) == ((1, 0) if levels <= 64 else (0, 1))
    if levels > 64:
        assert "more than 64 levels deep" in decoded.errors[0]
