"""`tracejudge config check` names every LLM connection whose key variable is not set: from
`judging.connections_file`, and with `--online` from the connections table a service stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.service import REPO, ServiceProcess, http
from tracejudge.cli import main

CONNECTIONS = """
connections:
  - name: with-key
    provider: openai
    protocol: chat_completions
    api_key_env: {present}
    model: gpt-judge
  - name: without-key
    provider: anthropic
    protocol: messages
    api_key_env: {absent}
    model: claude-judge
"""


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    present, absent = (f"TJ_TEST_{uuid.uuid4().hex[:8].upper()}_{k}" for k in ("SET", "UNSET"))
    monkeypatch.setenv(present, "secret-value")
    monkeypatch.delenv(absent, raising=False)
    return present, absent


def config_with(tmp_path: Path, connections: str) -> Path:
    (tmp_path / "connections.yaml").write_text(connections)
    config = tmp_path / "tracejudge.yaml"
    config.write_text(f"judging:\n  connections_file: {tmp_path / 'connections.yaml'}\n")
    return config


def test_a_missing_key_is_an_error_naming_connection_and_variable(
    tmp_path: Path, keys: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    present, absent = keys
    config = config_with(tmp_path, CONNECTIONS.format(present=present, absent=absent))
    assert main(["config", "check", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("configuration has problems")
    assert f"with-key (openai, key {present} set)" in out
    assert f"without-key (anthropic, key {absent} missing)" in out
    (line,) = err.splitlines()
    assert line.startswith("error: connection 'without-key': environment variable " + absent + " is not set")
    assert f"[connections file {tmp_path / 'connections.yaml'}]" in line
    assert "secret-value" not in out + err


def test_allow_missing_keys_makes_it_a_warning(
    tmp_path: Path, keys: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    present, absent = keys
    config = config_with(tmp_path, CONNECTIONS.format(present=present, absent=absent))
    assert main(["config", "check", "--config", str(config), "--allow-missing-keys"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("configuration OK")
    assert err.startswith(f"warning: connection 'without-key': environment variable {absent} is not set")


def test_every_key_set_passes(
    tmp_path: Path, keys: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    present, absent = keys
    monkeypatch.setenv(absent, "another-secret")
    config = config_with(tmp_path, CONNECTIONS.format(present=present, absent=absent))
    assert main(["config", "check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("configuration OK") and f"key {absent} set" in out and err == ""


def test_an_invalid_connections_file_names_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = CONNECTIONS.format(present="A", absent="B").replace("protocol: messages", "protocol: responses")
    assert main(["config", "check", "--config", str(config_with(tmp_path, bad))]) == 1
    err = capsys.readouterr().err
    assert "connections file" in err and "connections[1]" in err and "not available for provider" in err


def tj(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracejudge", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_online_reads_the_connections_table(tmp_path: Path) -> None:
    """A connection stored through the API (not in any file) is checked with --online once the service
    has stopped; while it runs, its embedded data directory is taken and the check says so."""
    data = tmp_path / "data"
    absent = f"TJ_TEST_{uuid.uuid4().hex[:8].upper()}_STORED"
    svc = ServiceProcess(data).start()
    try:
        body = {"name": "stored", "provider": "openai", "protocol": "chat_completions", "api_key_env": absent,
                "model": "m"}  # fmt: skip
        status, _, raw = http(
            "POST",
            svc.api + "/api/v1/connections",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 201, raw
        busy = tj("config", "check", "--online", "--data-dir", str(data))
        assert busy.returncode == 1
        assert "cannot read the connections table" in busy.stderr and "GET /api/v1/connections" in busy.stderr
    finally:
        assert svc.stop() == 0, svc.output

    offline = tj("config", "check", "--data-dir", str(data))
    assert offline.returncode == 0 and "none configured (--online" in offline.stdout
    online = tj("config", "check", "--online", "--data-dir", str(data))
    assert online.returncode == 1, online.stdout + online.stderr
    assert f"stored (openai, key {absent} missing)" in online.stdout
    assert f"error: connection 'stored': environment variable {absent} is not set" in online.stderr
    assert "[connections table]" in online.stderr
    fixed = tj("config", "check", "--online", "--data-dir", str(data), env={absent: "k"})
    assert fixed.returncode == 0 and f"key {absent} set" in fixed.stdout, fixed.stderr
    # The file replaces a stored connection of the same name at start: only the file's is checked.
    config = config_with(tmp_path, f"connections:\n  - {{name: stored, provider: openai, protocol: responses, "
                                   f"api_key_env: {absent}_FILE, model: m}}\n")  # fmt: skip
    replaced = tj("config", "check", "--online", "--config", str(config), "--data-dir", str(data),
                  env={f"{absent}_FILE": "k"})  # fmt: skip
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert replaced.stdout.count("stored (openai") == 1 and f"key {absent}_FILE set" in replaced.stdout


RULES = """
rules:
  - name: judged
    project: p-file
    scope: span
    scorers:
      - {{type: llm_judge, name: helpful, connection: {judge}, criteria: "Is it helpful?"}}
      - {{type: autoevals, name: Factuality, connection: {autoevals}}}
"""


def start_with_files(
    tmp_path: Path, judge: str, autoevals: str, keys: tuple[str, str]
) -> subprocess.Popen[str]:
    config = config_with(tmp_path, CONNECTIONS.format(present=keys[0], absent=keys[1]))
    (tmp_path / "rules.yaml").write_text(RULES.format(judge=judge, autoevals=autoevals))
    config.write_text(config.read_text() + f"rules:\n  file: {tmp_path / 'rules.yaml'}\n")
    cmd = [
        sys.executable, "-m", "tracejudge", "run", "--config", str(config), "--data-dir", str(tmp_path / "data"),
        "--otlp-grpc-port", "0", "--otlp-http-port", "0", "--api-port", "0",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize(
    ("judge", "autoevals", "problem"),
    [
        ("nowhere", "with-key", "scorers[0].connection: no connection named 'nowhere'"),
        (
            "with-key",
            "without-key",
            "scorers[1].connection: connection 'without-key' is anthropic messages: ",
        ),
    ],
)
def test_the_rules_file_is_checked_against_the_connections_at_start_up(
    tmp_path: Path, keys: tuple[str, str], judge: str, autoevals: str, problem: str
) -> None:
    """A rules file applied at start-up gets the rules API's connection checks: a judge naming no connection, or
    an autoevals scorer on a non-OpenAI connection, fails start-up (exit 2) naming the rule and the field."""
    proc = start_with_files(tmp_path, judge, autoevals, keys)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert f"start-up failed: rules file {tmp_path / 'rules.yaml'}: rule p-file/judged: {problem}" in out


def test_a_rules_file_whose_connections_exist_is_applied(tmp_path: Path, keys: tuple[str, str]) -> None:
    """The connections file is applied before the rules file, so its rules may name its connections."""
    config = config_with(tmp_path, CONNECTIONS.format(present=keys[0], absent=keys[1]))
    (tmp_path / "rules.yaml").write_text(RULES.format(judge="without-key", autoevals="with-key"))
    config.write_text(config.read_text() + f"rules:\n  file: {tmp_path / 'rules.yaml'}\n")
    service = ServiceProcess(tmp_path / "data", args=["--config", str(config)]).start()
    try:
        rules = service.get_json("/api/v1/rules?project=p-file")["rules"]
        assert [(r["name"], [s["connection"] for s in r["scorers"]]) for r in rules] == [
            ("judged", ["without-key", "with-key"])
        ]
    finally:
        assert service.stop() == 0
