"""The re-scoring CLI's logic without a service: ages as times, and following a job to its exit code, with
Ctrl-C answered yes, no, or pressed again while the job cancels (the API calls are replaced by a script)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from tracejudge import cli_follow
from tracejudge.cli_http import ApiError
from tracejudge.cli_jobs import when

NOW = dt.datetime(2026, 1, 5, 12, 0, 0, tzinfo=dt.UTC)


def test_an_age_is_a_time_that_long_before_now() -> None:
    assert when("2h", NOW) == "2026-01-05T10:00:00Z"
    assert when("7d", NOW) == "2025-12-29T12:00:00Z"
    assert when("30m", NOW) == "2026-01-05T11:30:00Z"
    assert when("2026-01-01T00:00:00Z", NOW) == "2026-01-01T00:00:00Z"  # the API reads anything else
    assert when("1767225600", NOW) == "1767225600"


def job(state: str, processed: int = 0) -> dict[str, Any]:
    counts = {"total": 10, "processed": processed, "matched": processed, "filtered_out": 0, "sampled_out": 0,
              "scored": processed, "errors": 0, "shed": {}, "judge_calls": 0, "cost_usd": 0.0}  # fmt: skip
    return {"job_id": "j1", "state": state, "counts": counts, "rate_per_s": 1.0, "eta_s": None, "paused": "",
            "last_error": "boom" if state == "failed" else ""}  # fmt: skip


class Script:
    """The job's states in turn (a KeyboardInterrupt stands for Ctrl-C there), the answers, the calls made."""

    def __init__(
        self, states: list[dict[str, Any] | type[KeyboardInterrupt]], answers: tuple[str, ...]
    ) -> None:
        self.states: Iterator[dict[str, Any] | type[KeyboardInterrupt]] = iter(states)
        self.answers = iter(answers)
        self.calls: list[tuple[str, str]] = []

    def api(
        self, args: argparse.Namespace, method: str, path: str, body: Any = None, ok: Any = (200,)
    ) -> Any:
        self.calls.append((method, path))
        if method == "POST":
            return job("running")
        state = next(self.states)
        if state is KeyboardInterrupt:
            raise KeyboardInterrupt
        return state

    def input(self, prompt: str) -> str:
        print(prompt)
        answer = next(self.answers)
        if answer == "^C":
            raise KeyboardInterrupt
        return answer


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def make(states: list[Any], answers: tuple[str, ...] = ()) -> Script:
        s = Script(states, answers)
        monkeypatch.setattr(cli_follow, "api", s.api)
        monkeypatch.setattr("builtins.input", s.input)
        return s

    monkeypatch.setattr(cli_follow, "POLL_S", 0)
    yield make


def follow() -> int:
    return cli_follow.follow(argparse.Namespace(), "j1")


def test_the_exit_code_is_the_jobs_end(script: Any, capsys: pytest.CaptureFixture[str]) -> None:
    script([job("queued"), job("running", 4), job("succeeded", 10)])
    assert follow() == 0
    assert "job j1 succeeded: 10 traces looked at" in capsys.readouterr().out
    script([job("running", 4), job("failed", 5)])
    assert follow() == 1 and "last error: boom" in capsys.readouterr().err


def test_ctrl_c_answered_yes_cancels_and_follows_to_the_end(
    script: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s = script([job("running", 2), KeyboardInterrupt, job("running", 3), job("cancelled", 3)], ("y",))
    assert follow() == 1
    assert ("POST", "/api/v1/jobs/j1/cancel") in s.calls
    out = capsys.readouterr().out
    assert "Cancel the job? [y/N]" in out and "job j1 cancelled: 3 traces looked at" in out


@pytest.mark.parametrize("answer", ["n", "", "^C"])
def test_ctrl_c_answered_no_leaves_the_job_running(
    script: Any, capsys: pytest.CaptureFixture[str], answer: str
) -> None:
    s = script([job("running", 2), KeyboardInterrupt], (answer,))
    assert follow() == cli_follow.DETACHED
    assert [c for c in s.calls if c[0] == "POST"] == []
    assert "follow it with: tracejudge jobs show j1 --follow" in capsys.readouterr().out


def test_ctrl_c_again_while_cancelling_stops_following(
    script: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s = script([job("running", 2), KeyboardInterrupt, job("running", 2), KeyboardInterrupt], ("y",))
    assert follow() == 1
    assert [c for c in s.calls if c[0] == "POST"] == [("POST", "/api/v1/jobs/j1/cancel")]
    assert "was asked to cancel; check it with: tracejudge jobs show j1" in capsys.readouterr().out


def test_losing_the_api_says_how_to_follow_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_: Any, **__: Any) -> Any:
        raise ApiError("cannot reach the tracejudge API at http://x")

    monkeypatch.setattr(cli_follow, "api", down)
    with pytest.raises(cli_follow.Exit) as stop:
        follow()
    assert stop.value.code == 1 and stop.value.message == (
        "error: cannot reach the tracejudge API at http://x\n"
        "(the job may still run: tracejudge jobs show j1 --follow)"
    )
