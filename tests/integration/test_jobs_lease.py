"""Two processes on one ClickHouse server (the test's HTTP front over chDB) never both run a job (issue 11):
each job is claimed by one process's lease, runs there once, and its scores are written once."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fakes.clickhouse_http import clickhouse_http_front
from tests.integration.service import ServiceProcess
from tests.integration.test_jobs import N_TRACES, call, expected_traces, finished, make_rule, send

ENV = {
    "TRACEJUDGE_JOBS__SETTLE_S": "0.5",
    "TRACEJUDGE_JOBS__POLL_S": "0.3",
    "TRACEJUDGE_JOBS__PAGE_TRACES": "8",
}


def test_two_processes_never_run_the_same_job(tmp_path: Path) -> None:
    with clickhouse_http_front(tmp_path / "clickhouse-server") as url:
        args = ["--clickhouse-dsn", url]
        a = ServiceProcess(tmp_path / "a", env=ENV, args=args).start()
        b = ServiceProcess(tmp_path / "b", env=ENV, args=args).start()
        try:
            send(a, time.time_ns() - 600 * 10**9)
            a.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
            rule = make_rule(a)
            jobs = []
            for i in range(6):  # posted to both processes: each wakes its own runner at once
                svc = (a, b)[i % 2]
                status, doc = call(
                    svc, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": "2000-01-01T00:00:00Z"}
                )
                assert status == 202, doc
                jobs.append(doc["job_id"])
            done = [finished(a, job_id) for job_id in jobs]
            assert all(j["state"] == "succeeded" and j["counts"]["processed"] == N_TRACES for j in done), done
            for job in done:
                runs = [svc for svc in (a, b) if any(f"job {job['job_id']} (" in line and "running" in line
                                                      for line in svc.log)]  # fmt: skip
                assert len(runs) == 1, (job, a.output, b.output)
            epochs = a.sql("SELECT JobId, Epoch, count() FROM job_claims GROUP BY JobId, Epoch")
            assert len(epochs) >= len(jobs)
            want = expected_traces(rule["id"], 1.0)
            rows = a.sql(
                f"SELECT count(), uniqExact(TraceId) FROM scores FINAL WHERE RuleId = '{rule['id']}'"
            )
            assert rows == [[2 * len(want), len(want)]]
        finally:
            codes = [svc.stop() for svc in (a, b)]
            assert codes == [0, 0], (a.output, b.output)
