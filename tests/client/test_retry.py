"""How the client reads the server's answers: 429/5xx/connection errors are retried (after Retry-After when
sent, else an exponential backoff), the same batch in the same order; 200/207 are delivered (207's item errors
logged and counted, never retried); other 4xx are refused and counted; shutdown gives up on a server that
never answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.client.conftest import TRACE_ID, MockedClient, RecordedWaits
from tracejudge_client import _wire


class Script:
    """A MockTransport handler answering from a list (an exception is raised), then 200; keeps each batch."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers: Iterator[httpx.Response | Exception] = iter(answers)
        self.batches: list[list[dict[str, object]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        self.batches.append(batch)
        answer = next(self.answers, None)
        if isinstance(answer, Exception):
            raise answer
        return answer or httpx.Response(200, json={"accepted": len(batch), "score_ids": [], "errors": []})


def score_three(client: MockedClient) -> None:
    for i in range(3):
        client.create_score(name=f"s{i}", value=i, trace_id=TRACE_ID)


def waits(client: MockedClient) -> list[float]:
    abort = client._sender._abort
    assert isinstance(abort, RecordedWaits)
    return abort.waits


def test_429_5xx_and_connection_errors_are_retried_honouring_retry_after(
    mocked: Callable[..., MockedClient],
) -> None:
    script = Script(
        httpx.Response(503, headers={"retry-after": "2"}),
        httpx.Response(429, headers={"retry-after": "0"}),
        httpx.ConnectError("refused"),
        httpx.Response(500),
    )
    client = mocked(script, flush_interval_s=60)
    score_three(client)
    assert client.flush(timeout_s=30)
    assert len(script.batches) == 5
    assert all(batch == script.batches[0] for batch in script.batches)
    assert [s["name"] for s in script.batches[0]] == ["s0", "s1", "s2"]
    recorded = waits(client)
    assert recorded[:2] == [2.0, 0.0]  # the server's Retry-After
    assert 1.0 <= recorded[2] <= 2.0 and 2.0 <= recorded[3] <= 4.0  # backoff after tries 3 and 4
    assert (client.sent, client.failed) == (3, 0)


def test_other_4xx_are_refused_logged_and_counted_not_retried(
    mocked: Callable[..., MockedClient], caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(httpx.Response(401, json={"error": {"message": "bad key"}}))
    client = mocked(script, flush_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="tracejudge_client"):
        score_three(client)
        assert client.flush(timeout_s=30)
    assert len(script.batches) == 1 and waits(client) == []
    assert (client.sent, client.failed) == (0, 3)
    assert any(
        "refused 3 scores: HTTP 401" in r.getMessage() and "bad key" in r.getMessage() for r in caplog.records
    )


def test_a_207_counts_and_logs_the_refused_items_and_is_not_retried(
    mocked: Callable[..., MockedClient], caplog: pytest.LogCaptureFixture
) -> None:
    errors = [{"index": 1, "field": "config_id", "message": "unknown score config"}]
    script = Script(httpx.Response(207, json={"accepted": 2, "score_ids": ["a", "b"], "errors": errors}))
    client = mocked(script, flush_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="tracejudge_client"):
        score_three(client)
        assert client.flush(timeout_s=30)
    assert len(script.batches) == 1
    assert (client.sent, client.failed) == (2, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "tracejudge: score 1 of a batch refused: config_id: unknown score config"
    ]


def test_metadata_that_is_not_json_is_refused_at_the_call_naming_the_field(
    mocked: Callable[..., MockedClient], caplog: pytest.LogCaptureFixture
) -> None:
    script = Script()
    client = mocked(script, flush_interval_s=60)
    mutable = {"step": 1}
    with caplog.at_level(logging.WARNING, logger="tracejudge_client"):
        client.create_score(name="a", value=1, trace_id=TRACE_ID, metadata=mutable)
        mutable["step"] = 2  # the score keeps what it was given at the call
        client.create_score(name="odd", value=1, trace_id=TRACE_ID, metadata={"when": object()})
        client.create_score(name="c", value=1, trace_id=TRACE_ID)
        assert client.flush(timeout_s=30)
    assert [[s["name"] for s in b] for b in script.batches] == [["a", "c"]]
    assert script.batches[0][0]["metadata"] == {"step": 1}
    assert (client.sent, client.failed) == (2, 0)
    assert any("'odd' not sent: metadata: must be JSON" in r.getMessage() for r in caplog.records)


def test_a_score_that_is_not_json_does_not_cost_its_batch() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    content, left_out = _wire.encode(
        [{"name": "a"}, {"name": "odd", "metadata": object()}, {"name": "deep", "metadata": deep}]
    )
    assert left_out == 2 and json.loads(content) == [{"name": "a"}]


def test_shutdown_gives_up_on_a_server_that_never_answers(mocked: Callable[..., MockedClient]) -> None:
    handler = lambda request: httpx.Response(503)  # noqa: E731
    client = mocked(handler, skip_waits=False, flush_interval_s=60, timeout_s=0.3)
    score_three(client)
    client.shutdown()
    assert client._sender._thread is not None and not client._sender._thread.is_alive()
    assert (client.sent, client.failed) == (0, 3)
    assert client.flush(timeout_s=1)


def test_retry_after_reads_seconds_and_http_dates_and_clamps() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert _wire.retry_after("7") == 7.0
    assert _wire.retry_after("1.5") == 1.5
    assert _wire.retry_after("-3") == 0.0
    assert _wire.retry_after("99999") == _wire.RETRY_AFTER_MAX_S
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert _wire.retry_after(date, now=now.timestamp()) == 30.0
    assert _wire.retry_after(None) is None
    assert _wire.retry_after("soon") is None
    assert _wire.retry_after("nan") is None


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for attempt, base in enumerate([0.5, 1.0, 2.0, 4.0]):
        assert base / 2 <= _wire.backoff(attempt) <= base
    assert _wire.BACKOFF_MAX_S / 2 <= _wire.backoff(1000) <= _wire.BACKOFF_MAX_S
