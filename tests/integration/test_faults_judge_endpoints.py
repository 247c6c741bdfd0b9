"""Fault injection: judge endpoints that hang, reset connections, or answer a byte at a time (issue 13 item 5).

Each endpoint is a connection of one judge rule (tests/fakes/bad_endpoints.py). Every call times out or fails,
its retries stop at the connection's ceiling, the breaker opens and sheds the rest, every judgement ends in an
error score row, and live ingest goes on meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.bad_endpoints import BadEndpoints
from tests.integration.service import ServiceProcess, http
from tests.integration.test_durability import PB, make_request
from tests.integration.test_rules_e2e import FAST_WINDOWS, call, send_traces
from tests.waiting import eventually

BAD = ("hang", "reset", "drip")
MAX_RETRIES = 1
TRACES = 4
ENV = {
    **FAST_WINDOWS,
    "FAKE_LLM_KEY": "secret",
    "TRACEJUDGE_JUDGING__BREAKER_FAILURES": "2",
    "TRACEJUDGE_JUDGING__BREAKER_COOLDOWN_S": "600",
    "TRACEJUDGE_INGEST__DECODE_WORKERS": "0",  # decoding in-process: a faster start, the same receivers
}


@pytest.fixture
def endpoints() -> Iterator[BadEndpoints]:
    with BadEndpoints() as bad:
        yield bad


def test_bad_judge_endpoints_time_out_open_the_breaker_and_write_error_rows(
    tmp_path: Path, endpoints: BadEndpoints
) -> None:
    svc = ServiceProcess(tmp_path / "data", env=ENV).start()
    try:
        project = f"bad-judges-{uuid.uuid4().hex[:8]}"
        scorers = []
        for name in BAD:
            status, conn = call(svc, "POST", "/api/v1/connections", {
                "name": name, "provider": "openai", "protocol": "chat_completions", "base_url": endpoints.url(name),
                "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 1, "max_retries": MAX_RETRIES,
                "max_concurrency": 1,
            })  # fmt: skip
            assert status == 201, conn
            scorers.append({"type": "llm_judge", "name": f"judge_{name}", "connection": name,
                            "criteria": "The answer is right.", "min_score": 1, "max_score": 5})  # fmt: skip
        rule = {
            "name": "bad",
            "project": project,
            "scope": "span",
            "span_names": ["llm.call"],
            "scorers": scorers,
        }
        status, created = call(svc, "POST", "/api/v1/rules", rule)
        assert status == 201, created
        send_traces(svc, project, [(f"Question {i}?", "Answer") for i in range(TRACES)])
        # Live ingest is unaffected while every judge call hangs or fails.
        body, ids = make_request(20)
        assert http("POST", svc.otlp_http + "/v1/traces", body, PB, timeout=10)[0] == 200
        svc.wait_for("SELECT count() FROM otel_traces WHERE ServiceName = 'durability'", len(ids))
        rows = eventually(
            lambda: svc.sql(
                "SELECT Name, count(), countIf(Error != ''), groupUniqArray(Error) FROM scores FINAL "
                f"WHERE Project = '{project}' GROUP BY Name ORDER BY Name"
            ),
            until=lambda got: [r[1] for r in got] == [TRACES] * len(BAD),
            timeout=120, interval=0.5, message=lambda: svc.output,
        )  # fmt: skip
        assert [(r[0], r[2]) for r in rows] == [(f"judge_{n}", TRACES) for n in sorted(BAD)], rows
        errors = {r[0]: " ".join(r[3]) for r in rows}
        assert "Timeout" in errors["judge_hang"] and "Timeout" in errors["judge_drip"], errors
        metrics = http("GET", svc.api + "/metrics")[2].decode()
        for name in BAD:
            assert f'tracejudge_judge_circuit_open{{connection="{name}"}} 1.0' in metrics, name
            assert f'tracejudge_judge_shed_total{{connection="{name}",reason="circuit_open"}}' in metrics, (
                name
            )
            # the breaker opened after 2 calls: at most 2 calls x (1 + retries) attempts reached the endpoint
            assert endpoints.connections[name] <= 2 * (1 + MAX_RETRIES), (name, endpoints.connections)
            assert endpoints.connections[name] >= 2, (name, endpoints.connections)
    finally:
        code = svc.stop()
    assert code == 0, svc.output
