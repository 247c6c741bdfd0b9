"""The command line against real processes: migrate, sql in every format, errors a user would hit."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service import REPO, ServiceProcess
from tracejudge.cli_scores import parse_value


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


def test_score_and_scores_list(service: ServiceProcess) -> None:
    trace = uuid.uuid4().hex
    api = ("--api-url", service.api)
    posted = tj("score", "--trace-id", trace, "--span-id", "AB" * 8, "--name", "thumbs", "--value", "true",
                "--comment", "liked it", "--source", "ANNOTATION", *api)  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    score_id = posted.stdout.strip().removeprefix("stored score ")
    assert tj("score", "--trace-id", trace, "--name", "stars", "--value", "4", *api).returncode == 0
    label = tj(
        "score", "--trace-id", trace, "--name", "tone", "--value", "calm", "--data-type", "CATEGORICAL", *api
    )
    assert label.returncode == 0, label.stderr
    rows = tj("scores", "list", "--trace-id", trace, "--format", "csv", *api).stdout.splitlines()
    assert rows[0] == "timestamp,score_id,trace_id,observation_id,name,value,data_type,source,comment"
    cells = sorted(tuple(r.split(",")[4:]) for r in rows[1:])
    assert cells == [
        ("stars", "4.0", "NUMERIC", "API", ""),
        ("thumbs", "true", "BOOLEAN", "ANNOTATION", "liked it"),
        ("tone", "calm", "CATEGORICAL", "API", ""),
    ]
    listed = json.loads(
        tj("scores", "list", "--trace-id", trace, "--name", "thumbs", "--format", "json", *api).stdout
    )
    assert [(s["score_id"], s["observation_id"]) for s in listed] == [(score_id, "ab" * 8)]
    table = tj(
        "scores", "list", "--trace-id", trace, "--since", "2020-01-01T00:00:00Z", *api
    ).stdout.splitlines()
    assert table[0].split()[:3] == ["timestamp", "score_id", "trace_id"] and table[-1] == "(3 scores)"


def test_score_errors_name_the_field(service: ServiceProcess) -> None:
    bad = tj("score", "--trace-id", "nope", "--name", "n", "--value", "1", "--api-url", service.api)
    assert (bad.returncode, bad.stderr.strip()) == (1, "error (400): trace_id: must be 32 hex digits")
    typed = tj("score", "--trace-id", "a" * 32, "--name", "n", "--value", "x", "--data-type", "NUMERIC",
               "--api-url", service.api)  # fmt: skip
    assert typed.stderr.strip() == "error (400): value: a NUMERIC score takes a number, not a string"


@pytest.mark.parametrize(
    ("text", "data_type", "value"),
    [("true", None, True), ("False", "BOOLEAN", False), ("1", "BOOLEAN", 1), ("0.5", None, 0.5), ("3", None, 3),
     ("1e3", None, 1000.0), ("calm", None, "calm"), ("1", "CATEGORICAL", "1"), ("true", "CATEGORICAL", "true")],
)  # fmt: skip
def test_score_reads_the_value_by_its_type(text: str, data_type: str | None, value: Any) -> None:
    parsed = parse_value(text, data_type)
    assert (parsed, type(parsed)) == (value, type(value))
