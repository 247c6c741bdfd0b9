"""Fuzzing a running service's receivers: OTLP/HTTP ``POST /v1/traces``, the API's ``POST /api/v1/traces`` and
OTLP/gRPC Export, with the requests of ``tests/fuzz/strategies.py`` (``TJ_FUZZ_RECEIVER_EXAMPLES``: a few
dozen in ``make test``, 10,000 in ``make fuzz``; the seed is ``TJ_FUZZ_SEED``, printed at the end).

Every answer must be a valid OTLP one (``tests/fuzz/oracle.py``: never a 5xx or another gRPC code, a 400
naming the problem, a 200 answering for every span sent); after the run the service is still ready, every
span it accepted is stored, and its log holds no traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from connectors.otlp.grpc_server import EXPORT_METHOD
from tests.fuzz.conftest import RAN, SEED
from tests.fuzz.oracle import check_grpc_answer, check_http_answer
from tests.fuzz.strategies import FuzzCase, fuzz_cases
from tests.integration.service import ServiceProcess, http
from tests.waiting import eventually

EXAMPLES = int(os.environ.get("TJ_FUZZ_RECEIVER_EXAMPLES", "30"))
TARGETS = ("http", "api", "grpc")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service that does not remember re-sent bodies (`ingest.duplicate_window_s` 0): the fuzzer may send the
    same request twice, and every copy must be decoded, stored and counted."""
    env = {"TRACEJUDGE_INGEST__DUPLICATE_WINDOW_S": "0"}
    svc = ServiceProcess(tmp_path_factory.mktemp("fuzz") / "data", env=env).start()
    yield svc
    if svc.proc is not None and svc.proc.poll() is None:
        assert svc.stop() == 0, svc.output


def _send_http(service: ServiceProcess, case: FuzzCase, api: bool) -> int:
    headers = {"Content-Type": case.content_type}
    if case.content_encoding:
        headers["Content-Encoding"] = case.content_encoding
    url = service.api + "/api/v1/traces" if api else service.otlp_http + "/v1/traces"
    status, got, body = http("POST", url, case.body, headers, timeout=120)
    content_type = next((v for k, v in got.items() if k.lower() == "content-type"), "")
    answer = check_http_answer(case, status, content_type, body, api=api)
    return _accepted(case, answer.ok, answer.rejected, answer.accepted)


def _send_grpc(export: grpc.UnaryUnaryMultiCallable, case: FuzzCase) -> int:
    compression = grpc.Compression.Gzip if case.content_encoding else grpc.Compression.NoCompression
    try:
        body = export(case.raw, timeout=120, compression=compression)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        body, code, details = None, exc.code(), exc.details() or ""
    answer = check_grpc_answer(case, code, details, body)
    return _accepted(case, answer.ok, answer.rejected, None)


def _accepted(case: FuzzCase, ok: bool, rejected: int, accepted: int | None) -> int:
    """Spans this answer accepted: said (the API), or sent minus rejected (-1 when that is unknown)."""
    if not ok:
        return 0
    if accepted is not None:
        return accepted
    return case.spans - rejected if case.spans is not None else -1


def _accepted_metric(service: ServiceProcess) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = http("GET", service.api + "/metrics")
    assert status == 200
    return sum(
        s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
        if s.name == "tracejudge_receiver_spans_total" and s.labels.get("outcome") == "accepted"
    )


def test_receivers_answer_every_fuzzed_request(service: ServiceProcess) -> None:
    channel = grpc.insecure_channel(
        service.otlp_grpc, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    export = channel.unary_unary(EXPORT_METHOD)
    before = _accepted_metric(service)
    tally = {"known": 0, "unknown": 0}

    @seed(SEED)
    @settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
    @given(fuzz_cases(), st.sampled_from(TARGETS))
    def run(case: FuzzCase, target: str) -> None:
        RAN["running receivers"] = RAN.get("running receivers", 0) + 1
        n = _send_grpc(export, case) if target == "grpc" else _send_http(service, case, target == "api")
        if n >= 0:
            tally["known"] += n
        else:
            tally["unknown"] += 1

    try:
        run()
    finally:
        channel.close()
    assert service.ready(), service.output
    accepted = _accepted_metric(service) - before
    assert accepted >= tally["known"]  # the rest: bodies broken in ways that still decoded
    if not tally["unknown"]:
        assert accepted == tally["known"]
    eventually(lambda: service.scalar("SELECT count() FROM otel_traces"), until=lambda n: n == before + accepted,
               timeout=120, message=lambda: f"stored spans != accepted {before + accepted}\n{service.output}")  # fmt: skip
    assert "Traceback" not in "\n".join(service.log), service.output
