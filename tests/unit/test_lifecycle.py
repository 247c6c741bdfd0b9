"""Lifecycle: components start in order; a failed start stops those started, in reverse; stop runs once."""

from __future__ import annotations

import pytest

from tracejudge.lifecycle import Lifecycle, Step


class Fake:
    """A component that writes what happens to it in a shared journal."""

    def __init__(
        self, name: str, journal: list[str], fail_start: bool = False, fail_stop: bool = False
    ) -> None:
        self.name = name
        self._journal = journal
        self._fail_start = fail_start
        self._fail_stop = fail_stop

    def start(self) -> None:
        if self._fail_start:
            msg = f"{self.name} cannot start"
            raise OSError(msg)
        self._journal.append(f"start {self.name}")

    def stop(self) -> None:
        self._journal.append(f"stop {self.name}")
        if self._fail_stop:
            msg = f"{self.name} cannot stop"
            raise RuntimeError(msg)


def test_components_start_in_order_and_stop_in_reverse_once() -> None:
    journal: list[str] = []
    lifecycle = Lifecycle()
    with lifecycle.starting():
        for name in ("ports", "log", "flow"):
            lifecycle.start(Fake(name, journal))
    assert journal == ["start ports", "start log", "start flow"]
    lifecycle.stop()
    lifecycle.stop()
    assert journal[3:] == ["stop flow", "stop log", "stop ports"]


def test_a_failed_start_stops_what_started_in_reverse_and_re_raises() -> None:
    journal: list[str] = []
    lifecycle = Lifecycle()
    with pytest.raises(OSError, match="grpc cannot start"), lifecycle.starting():
        lifecycle.start(Fake("ports", journal))
        lifecycle.start(Fake("flow", journal))
        lifecycle.start(Fake("grpc", journal, fail_start=True))
        lifecycle.start(Fake("http", journal))
    assert journal == ["start ports", "start flow", "stop flow", "stop ports"]
    lifecycle.stop()  # already stopped: nothing runs twice
    assert journal == ["start ports", "start flow", "stop flow", "stop ports"]


def test_an_error_between_starts_stops_what_started() -> None:
    journal: list[str] = []
    lifecycle = Lifecycle()
    with pytest.raises(ValueError, match="bad rules file"), lifecycle.starting():
        lifecycle.start(Fake("clickhouse", journal))
        msg = "bad rules file"
        raise ValueError(msg)
    assert journal == ["start clickhouse", "stop clickhouse"]


def test_a_failing_stop_is_logged_and_the_others_still_stop(caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    lifecycle = Lifecycle()
    for fake in (Fake("a", journal), Fake("b", journal, fail_stop=True), Fake("c", journal)):
        lifecycle.start(fake)
    lifecycle.stop()
    assert journal[3:] == ["stop c", "stop b", "stop a"]
    assert "stopping b failed" in caplog.text


def test_a_step_is_made_of_two_calls() -> None:
    journal: list[str] = []
    lifecycle = Lifecycle()
    lifecycle.start(Step("client", on_stop=lambda: journal.append("closed")))
    lifecycle.start(Step("thread", lambda: journal.append("started"), lambda: journal.append("joined")))
    lifecycle.stop()
    assert journal == ["started", "joined", "closed"]
