"""The SQL endpoint cannot take the machine (issue 13, item 3): queries run side by side up to
`api.sql_max_concurrent`, one more waits then gets 429 with Retry-After, and a query over its memory limit
fails with a 400 naming the limit while ingest goes on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.builders import otlp_request, otlp_span
from tests.integration.service import ServiceProcess, http
from tests.waiting import eventually

JS = {"Content-Type": "application/json"}
# No CPU: each side of the cross join sleeps 3 s (chDB's most per block), one after the other: 6 s.
SLOW_QUERY = " CROSS JOIN ".join(f"(SELECT sleep(3) AS s{i}) AS t{i}" for i in range(2)).join(
    ("SELECT count() FROM ", "")
)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        "TRACEJUDGE_API__SQL_MAX_CONCURRENT": "2",
        "TRACEJUDGE_API__SQL_QUEUE_WAIT_S": "0.2",
        "TRACEJUDGE_API__SQL_MAX_MEMORY_BYTES": str(128 * 1024 * 1024),
    }
    service = ServiceProcess(tmp_path_factory.mktemp("sql") / "data", env=env).start()
    yield service
    assert service.stop() == 0, service.output


def _sql(svc: ServiceProcess, query: str) -> tuple[int, dict[str, str], Any]:
    status, headers, raw = http("POST", svc.api + "/api/v1/sql", json.dumps({"query": query}).encode(), JS)
    return status, headers, json.loads(raw)


class _Slow(threading.Thread):
    """The slow query, answered on a thread of its own."""

    def __init__(self, svc: ServiceProcess) -> None:
        super().__init__(daemon=True)
        self._svc = svc
        self.status = 0
        self.doc: Any = None

    def run(self) -> None:
        self.status, _, self.doc = _sql(self._svc, SLOW_QUERY)


def _running_slow(svc: ServiceProcess) -> int:
    query = "SELECT count() FROM system.processes WHERE query LIKE '%sleep(3) AS s0%' AND query NOT LIKE '%system%'"
    return int(_sql(svc, query)[2]["data"][0][0])


def test_queries_run_side_by_side_up_to_the_limit_then_429(svc: ServiceProcess) -> None:
    first = _Slow(svc)
    first.start()
    # each poll of system.processes is a query answered while the slow one runs (one client ran one at a time)
    eventually(lambda: _running_slow(svc) == 1, timeout=30)
    assert first.is_alive(), "the poll was answered only once the slow query had ended"
    second = _Slow(svc)
    second.start()
    # SELECT 1 is answered while a slot is free; once both slow queries hold theirs it waits, then gets 429
    status, headers, doc = eventually(lambda: _sql(svc, "SELECT 1"), until=lambda a: a[0] != 200, timeout=30)
    assert status == 429 and doc["error"]["code"] == "too_many_requests", doc
    assert int(headers["retry-after"]) >= 1
    assert "api.sql_max_concurrent" in doc["error"]["message"]
    for s in (first, second):
        s.join(60)
    assert [s.status for s in (first, second)] == [200, 200], [s.doc for s in (first, second)]
    assert _sql(svc, "SELECT 1")[0] == 200  # the slots came back


def test_a_query_over_its_memory_limit_fails_fast_while_ingest_goes_on(svc: ServiceProcess) -> None:
    answer: list[tuple[int, dict[str, str], Any]] = []
    big = threading.Thread(
        target=lambda: answer.append(_sql(svc, "SELECT length(groupArray(number)) FROM numbers(3000000000)"))
    )
    big.start()
    trace_id = "ab" * 16
    for i in range(5):
        body = otlp_request(otlp_span(trace_id=trace_id, span_id=f"{i + 1:016x}"))
        status, _, _ = http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)
        assert status == 200
    big.join(120)
    status, _, doc = answer[0]
    assert (status, doc["error"]["code"]) == (400, "query_error"), doc
    assert "MEMORY_LIMIT_EXCEEDED" in doc["error"]["message"]
    assert "api.sql_max_memory_bytes" in doc["error"]["message"]
    svc.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'", 5)


def test_a_query_cannot_lift_its_limits(svc: ServiceProcess) -> None:
    status, _, doc = _sql(svc, "SELECT 1 SETTINGS max_memory_usage = 0")
    assert status == 400 and "readonly" in doc["error"]["message"].lower()
