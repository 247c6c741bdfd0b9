"""The re-scoring CLI (issue 11 item 6) against a running service: `tracejudge rewind|backfill|score-traces` and
`tracejudge jobs list|show|cancel` as subprocesses, their dry runs, confirmation, exit codes, and Ctrl-C.

The stored traces and rules are those of tests/integration/test_jobs.py. The Ctrl-C tests need a job slow
enough to interrupt: an LLM judge on the fake LLM server with latency, through a connection of concurrency 1.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import REPO, ServiceProcess
from tests.integration.test_jobs import (
    N_TRACES,
    call,
    expected_traces,
    finished,
    make_rule,
    rule_scores,
    send,
    trace_ids,
)
from tests.waiting import eventually

SINCE = "2000-01-01T00:00:00Z"
JUDGE = {"type": "llm_judge", "name": "helpful", "connection": "fake", "criteria": "The answer is right.",
         "min_score": 1, "max_score": 5, "threshold": 3}  # fmt: skip


def tj(svc: ServiceProcess, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI run to its end, stdin a pipe (no terminal to ask on)."""
    return subprocess.run([sys.executable, "-m", "tracejudge", *args, "--api-url", svc.api], cwd=REPO,
                          input=stdin, capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLLMServer) -> Iterator[ServiceProcess]:
    env = {"TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2",
           "TRACEJUDGE_JOBS__PAGE_TRACES": "4", "FAKE_LLM_KEY": "secret"}  # fmt: skip
    service = ServiceProcess(tmp_path_factory.mktemp("cli-jobs") / "data", env=env).start()
    send(service, time.time_ns() - 600 * 10**9)
    service.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
    status, conn = call(service, "POST", "/api/v1/connections", {
        "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm_server.openai_base_url,
        "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 10, "max_concurrency": 1,
        "input_price_per_mtok": 2.0, "output_price_per_mtok": 10.0,
    })  # fmt: skip
    assert status == 201, conn
    yield service
    if service.proc is not None and service.proc.poll() is None:
        assert service.stop() == 0, service.output


def jobs_of(svc: ServiceProcess, rule_id: str) -> list[dict[str, Any]]:
    return list(call(svc, "GET", f"/api/v1/jobs?rule_id={rule_id}")[1]["jobs"])


def test_rewind_dry_run_prints_the_estimate_and_writes_nothing(svc: ServiceProcess) -> None:
    rule = make_rule(svc, sampling_rate=0.5)
    want = expected_traces(rule["id"], 0.5)
    out = tj(svc, "rewind", rule["name"], "--since", SINCE, "--dry-run")
    assert out.returncode == 0, out.stderr
    rows = dict(line.rsplit(maxsplit=1) for line in out.stdout.splitlines()[1:])
    assert {k.strip(): v for k, v in rows.items()} == {
        "traces": str(len(want)), "spans": str(2 * len(want)), "judge calls": "0",
        "estimated input tokens": "0", "estimated cost (USD)": "0.0000",
    }, out.stdout  # fmt: skip
    assert rule_scores(svc, rule["id"]) == [] and jobs_of(svc, rule["id"]) == []


def test_a_window_without_traces_starts_no_job_unless_asked(svc: ServiceProcess) -> None:
    rule = make_rule(svc)
    empty = ("--since", SINCE, "--until", "2000-01-02T00:00:00Z")
    for extra in ((), ("--yes",), ("--dry-run",)):
        out = tj(svc, "rewind", rule["id"], *empty, *extra)
        assert out.returncode == 0 and "nothing to do: no stored trace is covered" in out.stdout, out.stdout
        assert "started job" not in out.stdout and jobs_of(svc, rule["id"]) == []
    forced = tj(svc, "rewind", rule["id"], *empty, "--even-if-empty")
    assert forced.returncode == 0 and "started job" in forced.stdout, forced.stdout + forced.stderr
    (job,) = jobs_of(svc, rule["id"])
    assert (job["state"], job["counts"]["total"]) == ("succeeded", 0)


def test_rewind_yes_follows_the_job_to_its_end(svc: ServiceProcess) -> None:
    rule = make_rule(svc, sampling_rate=0.5)
    want = expected_traces(rule["id"], 0.5)
    out = tj(svc, "rewind", rule["id"], "--since", "1d", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = jobs_of(svc, rule["id"])
    assert job["state"] == "succeeded" and f"started job {job['job_id']}" in out.stdout
    assert (f"job {job['job_id']} succeeded: {N_TRACES} traces looked at, {len(want)} matched" in out.stdout
            and f"{2 * len(want)} scores written, 0 errors" in out.stdout), out.stdout  # fmt: skip
    assert {r[0] for r in rule_scores(svc, rule["id"])} == want


def test_backfill_last_scores_the_most_recent(svc: ServiceProcess) -> None:
    rule = make_rule(svc)
    out = tj(svc, "backfill", rule["name"], "--last", "5")  # code scorers cost nothing: no question asked
    assert out.returncode == 0, out.stdout + out.stderr
    ordered = sorted(expected_traces(rule["id"], 1.0))
    assert {r[0] for r in rule_scores(svc, rule["id"])} == set(ordered[-5:])
    assert "5 matched" in out.stdout and jobs_of(svc, rule["id"])[0]["kind"] == "backfill"


def test_score_traces_with_a_rule_or_a_scorers_file(svc: ServiceProcess, tmp_path: Path) -> None:
    chosen = [trace_ids()[0], trace_ids()[3], trace_ids()[7]]
    rule = make_rule(svc)
    out = tj(svc, "score-traces", "--rule", rule["name"], *chosen, "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted({r[0] for r in rule_scores(svc, rule["id"])}) == sorted(chosen)
    scorers = tmp_path / "scorers.json"
    scorers.write_text(json.dumps([{"type": "code", "name": "cli_paris", "function": "contains",
                                    "args": {"value": "Paris"}}]))  # fmt: skip
    out = tj(svc, "score-traces", "--scorers-file", str(scorers), *chosen)
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = out.stdout.split("started job ")[1].split()[0]
    rows = rule_scores(svc, f"manual:{job_id}")
    assert sorted(r[0] for r in rows) == sorted(chosen) and {r[2] for r in rows} == {"cli_paris"}
    llm_span = f"{2 * 3 + 2:016x}"  # trace 3's `llm` child
    out = tj(svc, "score-traces", "--scorers-file", str(scorers), "--span-id", llm_span, trace_ids()[3])
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = out.stdout.split("started job ")[1].split()[0]
    assert [r[:2] for r in rule_scores(svc, f"manual:{job_id}")] == [[trace_ids()[3], llm_span]]
    wrong = tj(svc, "score-traces", "--scorers-file", str(scorers), "--scope", "trace", "--span-id", llm_span,
               trace_ids()[3])  # fmt: skip
    assert wrong.returncode == 2 and "--span-id needs --scope span" in wrong.stderr


def test_jobs_list_show_and_cancel_of_an_ended_job(svc: ServiceProcess) -> None:
    rule = make_rule(svc)
    assert tj(svc, "backfill", rule["id"], "--last", "3").returncode == 0
    (job,) = jobs_of(svc, rule["id"])
    listed = json.loads(tj(svc, "jobs", "list", "--rule", rule["name"], "--format", "json").stdout)
    assert [(j["job_id"], j["state"], j["counts"]["matched"]) for j in listed] == [
        (job["job_id"], "succeeded", 3)
    ]
    csv_lines = tj(svc, "jobs", "list", "--rule", rule["id"], "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("job_id,kind,rule_id") and csv_lines[1].startswith(
        f"{job['job_id']},backfill,"
    )
    table = tj(svc, "jobs", "list", "--state", "succeeded")
    assert table.returncode == 0 and job["job_id"] in table.stdout and "cancelled" not in table.stdout
    shown = tj(svc, "jobs", "show", job["job_id"])
    assert (
        shown.returncode == 0
        and f"job {job['job_id']} succeeded: 3 traces looked at, 3 matched" in shown.stdout
    )
    cancelled = tj(svc, "jobs", "cancel", job["job_id"])
    assert cancelled.returncode == 0 and "had ended: succeeded" in cancelled.stdout
    missing = tj(svc, "jobs", "show", "nope")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error (404): job nope not found")


def test_rule_names_usage_errors_and_api_messages(svc: ServiceProcess) -> None:
    name = f"same-{time.time_ns()}"
    here = make_rule(svc, name=name)
    make_rule(svc, name=name, project="other-project")
    clash = tj(svc, "rewind", name, "--since", SINCE, "--dry-run")
    assert clash.returncode == 2 and "jobs, other-project" in clash.stderr and "--project" in clash.stderr
    chosen = tj(svc, "rewind", name, "--project", "jobs", "--since", SINCE, "--dry-run")
    assert chosen.returncode == 0 and f"(id {here['id']}," in chosen.stdout, chosen.stderr
    unknown = tj(svc, "rewind", "no-such-rule", "--since", SINCE)
    assert unknown.returncode == 1 and "no rule with the id or name 'no-such-rule'" in unknown.stderr
    bad_time = tj(svc, "rewind", here["id"], "--since", "yesterday")
    assert bad_time.returncode == 1 and bad_time.stderr.startswith("error (400): since: "), bad_time.stderr
    assert tj(svc, "backfill", here["id"], "--until", "1h").returncode == 2
    assert tj(svc, "backfill", here["id"], "--last", "3", "--since", "1h").returncode == 2
    assert tj(svc, "score-traces", trace_ids()[0]).returncode == 2  # neither --rule nor --scorers-file


def test_a_run_that_costs_money_is_refused_without_yes_and_a_terminal(svc: ServiceProcess) -> None:
    rule = make_rule(svc, scorers=[JUDGE])
    out = tj(svc, "rewind", rule["id"], "--since", SINCE)
    assert out.returncode == 1 and "pass --yes" in out.stderr, out.stderr
    assert f"judge calls             {len(expected_traces(rule['id'], 1.0))}" in out.stdout
    assert jobs_of(svc, rule["id"]) == []
    declined = tj(svc, "rewind", rule["id"], "--since", SINCE, stdin="y\n")  # stdin is no terminal: not asked
    assert declined.returncode == 1 and jobs_of(svc, rule["id"]) == []


def running_job(svc: ServiceProcess, rule_id: str) -> dict[str, Any]:
    """The rule's job once it runs and has made a judge call (so it is slow to end: judges wait on the fake)."""

    def job() -> dict[str, Any]:
        jobs = jobs_of(svc, rule_id)
        assert jobs and jobs[0]["state"] == "running" and jobs[0]["counts"]["judge_calls"], jobs
        return jobs[0]

    return eventually(job, timeout=60, message=lambda: svc.output)


def test_ctrl_c_in_a_terminal_answered_yes_cancels_the_job(svc: ServiceProcess, llm: FakeLLMServer) -> None:
    llm.set_latency(0.5)
    rule = make_rule(svc, scorers=[JUDGE])
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tracejudge", "rewind", rule["id"], "--since", SINCE, "--yes",
                             "--api-url", svc.api], cwd=REPO, stdin=slave, stdout=slave, stderr=slave)  # fmt: skip
    os.close(slave)
    seen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        job = running_job(svc, rule["id"])
        eventually(lambda: f"job {job['job_id'][:8]}".encode() in seen, timeout=30)  # the bar is drawn
        proc.send_signal(signal.SIGINT)
        eventually(lambda: b"Cancel the job? [y/N]" in seen, timeout=30, message=lambda: seen.decode())
        os.write(master, b"y\n")
        assert proc.wait(timeout=60) == 1, seen.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        call(svc, "POST", f"/api/v1/jobs/{running_job_id(svc, rule['id'])}/cancel")
        reader.join(timeout=5)
        os.close(master)
    ended = finished(svc, job["job_id"])
    assert ended["state"] == "cancelled" and ended["counts"]["processed"] < N_TRACES, ended
    assert (
        f"cancelling job {job['job_id']}" in seen.decode()
        and f"job {job['job_id']} cancelled:" in seen.decode()
    )


def running_job_id(svc: ServiceProcess, rule_id: str) -> str:
    return str(jobs_of(svc, rule_id)[0]["job_id"])


def test_ctrl_c_answered_no_leaves_the_job_running(svc: ServiceProcess, llm: FakeLLMServer) -> None:
    llm.set_latency(0.5)
    rule = make_rule(svc, scorers=[JUDGE])
    proc = subprocess.Popen([sys.executable, "-m", "tracejudge", "rewind", rule["id"], "--since", SINCE, "--yes",
                             "--api-url", svc.api], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        job = running_job(svc, rule["id"])
        eventually(lambda: call(svc, "GET", f"/api/v1/jobs/{job['job_id']}")[1]["counts"]["judge_calls"] > 1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate("n\n", timeout=60)
        assert proc.returncode == 130, out + err
        assert f"follow it with: tracejudge jobs show {job['job_id']} --follow" in out
        assert call(svc, "GET", f"/api/v1/jobs/{job['job_id']}")[1]["state"] == "running"
        cancel = tj(svc, "jobs", "cancel", job["job_id"])
        assert cancel.returncode == 0 and "cancelling" in cancel.stdout, cancel.stderr
        followed = tj(svc, "jobs", "show", job["job_id"], "--follow")
        assert followed.returncode == 1 and f"job {job['job_id']} cancelled:" in followed.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
        call(svc, "POST", f"/api/v1/jobs/{running_job_id(svc, rule['id'])}/cancel")
