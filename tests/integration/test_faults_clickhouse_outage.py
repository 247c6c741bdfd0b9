"""Fault injection: ClickHouse away for a while in server mode (issue 13 item 5).

The service runs against the ClickHouse HTTP test front (tests/fakes/clickhouse_http.py); the test stops the
front and starts it again on the same port. Meanwhile: receivers acknowledge into the write-ahead log until its
bound, then answer 429 / UNAVAILABLE with Retry-After; `/readyz` names the problem; judge scores and judge spans
wait. Once ClickHouse is back, everything lands without a restart, nothing lost and nothing duplicated.

The outage lasts the issue's 60 s (~85-90 s for the whole test on the loaded 2-core machine);
TRACEJUDGE_TEST_OUTAGE_S sets another length for a quick run.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import clickhouse_connect
import grpc
import pytest

from tests.fakes.clickhouse_http import ClickHouseHttpFrontProcess
from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess, http
from tests.integration.test_durability import EXPORT, PB, make_request
from tests.integration.test_judges_e2e import helpful_rule
from tests.integration.test_rules_e2e import FAST_WINDOWS, call, send_traces
from tests.waiting import eventually

OUTAGE_S = float(os.environ.get("TRACEJUDGE_TEST_OUTAGE_S", "60"))
ENV = {
    **FAST_WINDOWS,
    "FAKE_LLM_KEY": "secret",
    "TRACEJUDGE_WAL__MAX_BYTES": str(2 << 20),
    "TRACEJUDGE_SINK__RETRY_MAX_S": "1",
    "TRACEJUDGE_INGEST__DECODE_WORKERS": "0",  # decoding in-process: a faster start, the same receivers
}


def judge_rule(svc: ServiceProcess, llm: FakeLLMServer) -> str:
    status, conn = call(svc, "POST", "/api/v1/connections", {
        "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
        "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 10,
    })  # fmt: skip
    assert status == 201, conn
    project = f"outage-{uuid.uuid4().hex[:8]}"
    status, rule = call(svc, "POST", "/api/v1/rules", helpful_rule(project))
    assert status == 201, rule
    return project


def fill_log(svc: ServiceProcess, acked: list[tuple[str, str]]) -> dict[str, str]:
    """Export over HTTP until the log's bound answers 429; return that answer's headers."""
    for _ in range(200):
        body, ids = make_request(20)
        status, headers, answer = http("POST", svc.otlp_http + "/v1/traces", body, PB)
        if status == 429:
            return {k.lower(): v for k, v in headers.items()}
        assert status == 200, (status, answer)
        acked += ids
    pytest.fail("the write-ahead log never reached its bound")


def readyz(svc: ServiceProcess) -> tuple[int, str]:
    status, _, text = http("GET", svc.api + "/readyz")
    return status, text.decode()


def test_clickhouse_outage_buffers_then_lands_everything(tmp_path: Path, llm: FakeLLMServer) -> None:
    front = ClickHouseHttpFrontProcess(tmp_path / "clickhouse")
    url = front.start()
    svc = ServiceProcess(tmp_path / "data", env=ENV, args=["--clickhouse-dsn", url]).start()
    acked: list[tuple[str, str]] = []
    try:
        project = judge_rule(svc, llm)
        front.stop()
        outage_started = time.monotonic()
        judged = send_traces(svc, project, [("Capital of France?", "Paris"), ("Capital of Spain?", "wrong")])
        status, text = eventually(lambda: readyz(svc), until=lambda r: "ClickHouse unavailable" in r[1])
        assert status == 200, text  # still acknowledging into the log
        score = {"name": "thumbs", "value": True, "trace_id": judged[0]}
        status, answer = call(svc, "POST", "/api/v1/scores", score)
        assert status == 201, answer  # the scores API's log takes it; it lands once ClickHouse is back
        assert fill_log(svc, acked).get("retry-after"), "429 without Retry-After"
        channel = grpc.insecure_channel(svc.otlp_grpc)
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(EXPORT)(make_request(5)[0], timeout=30)
        channel.close()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(refused.value.trailing_metadata()).get("grpc-status-details-bin"), "no RetryInfo"
        status, text = readyz(svc)
        assert status == 503 and "write-ahead log is full" in text, text
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        front = ClickHouseHttpFrontProcess(tmp_path / "clickhouse", port=front.port)
        front.start()
        landed = check_landed(url, acked, judged, project)
        assert landed == {"acked": len(acked), "stored": len(acked), "distinct": len(acked), "scores": 2,
                          "judge_spans": 2, "api_scores": 1}  # fmt: skip
        eventually(lambda: readyz(svc), until=lambda r: r == (200, "ready"), timeout=60)
        body, _ = make_request(5)
        assert http("POST", svc.otlp_http + "/v1/traces", body, PB)[0] == 200
    finally:
        code = svc.stop()
        front.stop()
    assert code == 0, svc.output


def check_landed(url: str, acked: list[tuple[str, str]], judged: list[str], project: str) -> dict[str, Any]:
    """Wait until the acknowledged spans, the judge scores and judge spans are in ClickHouse; count them."""
    client = clickhouse_connect.get_client(dsn=url)
    try:
        counts = {
            "stored": "SELECT count() FROM otel_traces WHERE ServiceName = 'durability'",
            "distinct": "SELECT uniqExact(TraceId, SpanId) FROM otel_traces WHERE ServiceName = 'durability'",
            "scores": f"SELECT count() FROM scores FINAL WHERE Project = '{project}' AND Name = 'helpfulness' "
            "AND Error = ''",
            "judge_spans": "SELECT count() FROM otel_traces WHERE ScopeName = 'tracejudge.judge' "
            f"AND Project = '{project}'",
            "api_scores": f"SELECT count() FROM scores FINAL WHERE Name = 'thumbs' AND TraceId = '{judged[0]}'",
        }

        def landed() -> dict[str, Any]:
            return {"acked": len(acked)} | {k: client.query(q).result_rows[0][0] for k, q in counts.items()}

        want = {"acked": len(acked), "stored": len(acked), "scores": len(judged), "judge_spans": len(judged),
                "api_scores": 1}  # fmt: skip
        return eventually(landed, until=lambda got: got.items() >= want.items(), timeout=120, interval=0.5)
    finally:
        client.close()
