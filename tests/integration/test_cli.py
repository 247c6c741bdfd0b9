"""The command line against real processes: migrate, sql in every format, errors a user would hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.service import REPO, ServiceProcess


def tj(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracejudge", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    first = tj("migrate", "--data-dir", str(tmp_path / "data"))
    assert first.returncode == 0, first.stderr
    files = sorted(p.name for p in (REPO / "sql" / "migrations").glob("*.sql"))
    assert f"applied {len(files)} migration(s): {', '.join(files)}" in first.stdout
    again = tj("migrate", "--data-dir", str(tmp_path / "data"))
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout


def test_sql_formats(service: ServiceProcess) -> None:
    query = "SELECT number AS n, toString(number * 2) AS s FROM numbers(3)"
    table = tj("sql", query, "--api-url", service.api)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["n", "s"] and lines[2].split() == ["0", "0"] and "(3 rows" in lines[-1]
    csv_out = tj("sql", query, "--api-url", service.api, "--format", "csv")
    assert csv_out.stdout.splitlines() == ["n,s", "0,0", "1,2", "2,4"]
    js = json.loads(tj("sql", query, "--api-url", service.api, "--format", "json").stdout)
    assert js["data"] == [[0, "0"], [1, "2"], [2, "4"]]


def test_sql_errors_are_clear(service: ServiceProcess) -> None:
    refused = tj("sql", "DROP TABLE otel_traces", "--api-url", service.api)
    assert refused.returncode == 1 and "readonly" in refused.stderr.lower()
    too_long = tj("sql", "SELECT " + "1" * 100_000, "--api-url", service.api)
    assert too_long.returncode == 1 and "Unprocessable" not in too_long.stderr
    assert too_long.stderr.startswith("error: query: ") and "at most 100000 characters" in too_long.stderr
    assert len(too_long.stderr) < 500
    missing = tj("rules", "show", "no-such-rule", "--api-url", service.api)
    assert (missing.returncode, missing.stderr.strip()) == (1, "error (404): rule no-such-rule not found")
    down = tj("sql", "SELECT 1", "--api-url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach the tracejudge API" in down.stderr


def test_run_fails_fast_on_a_taken_port(service: ServiceProcess, tmp_path: Path) -> None:
    proc = tj("run", "--data-dir", str(tmp_path / "d"), "--api-port", str(service.ports["api"]),
              "--otlp-grpc-port", "0", "--otlp-http-port", "0")  # fmt: skip
    assert proc.returncode == 2
    assert "start-up failed" in proc.stderr and "cannot listen" in proc.stderr


def test_second_process_on_the_same_data_dir_fails_fast(service: ServiceProcess) -> None:
    proc = tj("migrate", "--data-dir", str(service.data_dir))
    assert proc.returncode == 1
    assert "running tracejudge holds" in proc.stderr
