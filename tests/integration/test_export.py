"""`tracejudge export`: an embedded store moves into a ClickHouse server (the test HTTP front), every row once.

A service on embedded chDB stores spans, a rule, a backfill job's scores and claims; it stops; the export copies
it in small chunks into the front. Then it runs again (nothing copied twice), and again after a crash inside a
chunk is simulated in its state file, on a table deduplicated by token and on a plain MergeTree one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import clickhouse_connect

from tests.fakes.clickhouse_http import clickhouse_http_front
from tests.integration.service import REPO, ServiceProcess
from tests.integration.test_jobs import N_TRACES, call, finished, make_rule, send

TABLES = ("otel_traces", "otel_traces_trace_id_ts", "scores", "rules", "jobs", "job_claims", "rule_status")


def counts(run_sql: object, final: bool) -> dict[str, int]:
    out = {}
    for table in TABLES:
        modifier = " FINAL" if final and table in ("scores", "rules", "jobs", "rule_status") else ""
        # The lookup table is the view's: a row per trace per insert block, so compare what it says.
        source = f"{table}{modifier}"
        if table == "otel_traces_trace_id_ts":
            source = f"(SELECT TraceId, min(Start) AS s, max(End) AS e FROM {table} GROUP BY TraceId)"
        what = "sum(cityHash64(TraceId, s, e))" if table == "otel_traces_trace_id_ts" else "count()"
        out[table] = int(run_sql(f"SELECT {what} FROM {source}"))  # type: ignore[operator]
    return out


def export(data_dir: Path, url: str) -> str:
    cmd = [sys.executable, "-m", "tracejudge", "export", "--to", url, "--data-dir", str(data_dir),
           "--chunk-rows", "100"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_export_moves_every_row_once_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    svc = ServiceProcess(data, env={"TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2"})
    svc.start()
    send(svc, 1_700_000_000 * 10**9)
    svc.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
    rule = make_rule(svc)
    status, started = call(svc, "POST", f"/api/v1/rules/{rule['id']}/backfill", {"last": 20})
    assert status == 202, started
    assert finished(svc, started["job_id"])["state"] == "succeeded"
    expected = counts(svc.scalar, final=True)
    raw = counts(svc.scalar, final=False)
    assert svc.stop() == 0, svc.output
    assert expected["scores"] == 40 and expected["job_claims"] >= 1 and raw["otel_traces"] > 40, expected

    with clickhouse_http_front(tmp_path / "server") as url:
        client = clickhouse_connect.get_client(dsn=url)

        def on_server(sql: str) -> int:
            return int(client.command(sql))

        first = export(data, url)
        assert "exported " in first, first
        assert counts(on_server, final=True) == expected
        plain = {t: counts(on_server, final=False)[t] for t in ("otel_traces", "job_claims")}
        assert plain == {t: raw[t] for t in plain}

        again = export(data, url)
        assert "exported 0 row(s)" in again, again
        assert {t: counts(on_server, final=False)[t] for t in plain} == plain

        state_file = next((data / "export").glob("*.json"))
        for table in ("otel_traces", "job_claims"):
            state = json.loads(state_file.read_text())
            cut = next(key for key in state["done"] if key.startswith(f"{table}/"))
            state["done"].remove(cut)
            state["started"] = cut  # as if a crash came after the insert, before the chunk was recorded
            state_file.write_text(json.dumps(state))
            export(data, url)
            assert counts(on_server, final=False)[table] == raw[table], table
        assert counts(on_server, final=True) == expected
        client.close()
