"""The production path: tracejudge talking to a ClickHouse *server* over HTTP through clickhouse-connect.

No ClickHouse server installs on this machine, so the server is the test harness in
tests/fakes/clickhouse_http.py: ClickHouse's HTTP interface re-implemented over chDB (the real engine).
"""

from __future__ import annotations

import time
from pathlib import Path

import clickhouse_connect

from tests.fakes.clickhouse_http import clickhouse_http_front
from tests.integration.service import ServiceProcess, http
from tests.integration.test_durability import PB, Sender, make_request


def test_spans_reach_a_clickhouse_server_exactly_once_across_a_crash(tmp_path: Path) -> None:
    with clickhouse_http_front(tmp_path / "clickhouse-server") as url:
        args = ["--clickhouse-dsn", url]
        svc = ServiceProcess(tmp_path / "data", args=args).start()
        body, ids = make_request(10)
        status, _, _ = http("POST", svc.otlp_http + "/v1/traces", body, PB)
        assert status == 200
        svc.wait_for("SELECT count() FROM otel_traces", len(ids))
        assert svc.scalar("SELECT count() FROM otel_traces_trace_id_ts") == 10
        with Sender(svc, threads=2) as sender:
            time.sleep(2.0)
            svc.kill()
        acked = sender.acked | set(ids)
        svc = ServiceProcess(tmp_path / "data", args=args).start()
        assert svc.stop() == 0, svc.output
        client = clickhouse_connect.get_client(dsn=url)
        total, distinct = client.query(
            "SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces"
        ).result_rows[0]
        stored = {tuple(r) for r in client.query("SELECT TraceId, SpanId FROM otel_traces").result_rows}
        client.close()
        assert total == distinct
        assert acked <= stored, f"{len(acked - stored)} acknowledged spans lost"
