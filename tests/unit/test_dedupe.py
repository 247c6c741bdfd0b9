"""The recent-requests LRU behind duplicate detection (`connectors/otlp/dedupe.py`)."""

from __future__ import annotations

import threading

import pytest

from connectors.otlp.dedupe import RecentRequests, request_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_copy_within_the_window_gets_the_first_answer_and_runs_nothing() -> None:
    clock = Clock()
    recent: RecentRequests[str] = RecentRequests(600, 10, clock)
    key = request_key(b"body", "protobuf", None)
    assert recent.once(key, lambda: "first") == ("first", False)
    clock.now += 599
    assert recent.once(key, lambda: pytest.fail("stored twice")) == ("first", True)
    clock.now += 2  # past the window: the same bytes are a new request
    assert recent.once(key, lambda: "again") == ("again", False)


def test_the_key_names_encoding_and_project() -> None:
    keys = {
        request_key(b"body", "protobuf", None),
        request_key(b"body", "json", None),
        request_key(b"body", "protobuf", "p"),
        request_key(b"body2", "protobuf", None),
    }
    assert len(keys) == 4
    assert request_key(b"body", "protobuf", "p") == request_key(b"body", "protobuf", "p")


def test_bounded_by_count_oldest_first() -> None:
    recent: RecentRequests[int] = RecentRequests(600, 3, Clock())
    for i in range(5):
        recent.once(bytes([i]), lambda i=i: i)  # type: ignore[misc]
    assert len(recent) == 3
    assert recent.once(bytes([0]), lambda: -1) == (-1, False)  # forgotten
    assert recent.once(bytes([4]), lambda: -1) == (4, True)


def test_a_refused_request_is_not_remembered() -> None:
    recent: RecentRequests[str] = RecentRequests(600, 10, Clock())

    def refuse() -> str:
        raise RuntimeError("log full")

    with pytest.raises(RuntimeError):
        recent.once(b"k", refuse)
    assert recent.once(b"k", lambda: "stored") == ("stored", False)


def _copy_during_first(recent: RecentRequests[str], first_fails: bool) -> list[tuple[str, bool]]:
    """A second copy sent while the first is being stored; the second's answer (and the first's when it
    succeeded)."""
    entered, release = threading.Event(), threading.Event()
    answers: list[tuple[str, bool]] = []

    def first() -> str:
        entered.set()
        release.wait(30)
        if first_fails:
            raise RuntimeError("log full")
        return "first"

    def send_first() -> None:
        try:
            answers.append(recent.once(b"k", first))
        except RuntimeError:
            assert first_fails

    threads = [threading.Thread(target=send_first)]
    threads[0].start()
    assert entered.wait(30)
    threads.append(threading.Thread(target=lambda: answers.append(recent.once(b"k", lambda: "second"))))
    threads[1].start()
    release.set()
    for t in threads:
        t.join(30)
    return answers


def test_a_copy_arriving_while_the_first_is_stored_waits_for_it() -> None:
    answers = _copy_during_first(RecentRequests(600, 10, Clock()), first_fails=False)
    assert sorted(answers) == [("first", False), ("first", True)]


def test_a_copy_of_a_refused_first_is_tried_on_its_own() -> None:
    answers = _copy_during_first(RecentRequests(600, 10, Clock()), first_fails=True)
    assert answers == [("second", False)]
