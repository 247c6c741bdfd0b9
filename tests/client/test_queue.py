"""The client's queue: bad arguments are warnings naming the field (nothing queued, nothing raised); a full
queue drops its oldest scores and counts them; flush waits for what was queued before it; shutdown delivers
and stops the thread; batches hold at most MAX_BATCH scores, in order."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from tests.client.conftest import TRACE_ID, MockedClient
from tests.waiting import eventually
from tracejudge_client import MAX_BATCH


class Recorder:
    """A MockTransport handler that keeps each posted batch and answers 200 (after ``gate`` is set)."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, object]]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.gate.wait(30)
        batch = json.loads(request.content)
        self.batches.append(batch)
        return httpx.Response(200, json={"accepted": len(batch), "score_ids": [], "errors": []})

    @property
    def names(self) -> list[str]:
        return [str(score["name"]) for batch in self.batches for score in batch]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "n", "value": math.nan, "trace_id": TRACE_ID}, "value"),
        ({"name": "n", "value": 1}, "trace_id"),
        ({"name": "n", "value": 1, "trace_id": "xyz"}, "trace_id"),
        (
            {"name": "n", "value": 1, "observation_id": "abcdef1234567890", "session_id": "s"},
            "observation_id",
        ),
        ({"name": "", "value": 1, "trace_id": TRACE_ID}, "name"),
        ({"name": "n", "value": 2, "trace_id": TRACE_ID, "data_type": "BOOLEAN"}, "value"),
        ({"name": "n", "value": [1], "trace_id": TRACE_ID}, "value"),
        ({"name": "n", "value": 1, "trace_id": TRACE_ID, "data_type": "PERCENT"}, "data_type"),
        ({"name": "n", "value": 1, "trace_id": TRACE_ID, "timestamp": datetime(2026, 1, 1)}, "timestamp"),
    ],
)
def test_a_bad_argument_is_a_warning_naming_the_field_and_nothing_is_queued(
    mocked: Callable[..., MockedClient],
    caplog: pytest.LogCaptureFixture,
    kwargs: dict[str, object],
    field: str,
) -> None:
    recorder = Recorder()
    client = mocked(recorder)
    with caplog.at_level(logging.WARNING, logger="tracejudge_client"):
        client.create_score(**kwargs)  # type: ignore[arg-type]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"tracejudge: score {kwargs['name']!r} not sent: {field}: ")
    assert client.flush(timeout_s=30)
    assert recorder.batches == [] and client._sender._thread is None


def test_every_field_goes_on_the_wire(mocked: Callable[..., MockedClient]) -> None:
    recorder = Recorder()
    client = mocked(recorder, project="shop")
    when = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    client.create_score(
        name="accuracy", value=0.92, session_id="sess", dataset_run_id="run", trace_id=TRACE_ID.upper(),
        observation_id="ABCDEF1234567890", score_id="id-1", data_type="NUMERIC", comment="fine",
        config_id="cfg", metadata={"k": [1, 2]}, timestamp=when,
    )  # fmt: skip
    assert client.flush(timeout_s=30)
    assert recorder.batches == [[{
        "name": "accuracy", "value": 0.92, "session_id": "sess", "dataset_run_id": "run",
        "trace_id": TRACE_ID.upper(), "observation_id": "ABCDEF1234567890", "score_id": "id-1",
        "data_type": "NUMERIC", "comment": "fine", "config_id": "cfg", "metadata": {"k": [1, 2]},
        "timestamp": when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "project": "shop",
    }]]  # fmt: skip


def test_a_full_queue_drops_the_oldest_and_counts_them(mocked: Callable[..., MockedClient]) -> None:
    recorder = Recorder()
    client = mocked(recorder, max_queue=3, flush_interval_s=60)
    for i in range(5):
        client.create_score(name=f"s{i}", value=i, trace_id=TRACE_ID)
    assert client.dropped == 2
    assert client.flush(timeout_s=30)
    assert recorder.names == ["s2", "s3", "s4"]
    assert (client.sent, client.dropped, client.failed) == (3, 2, 0)


def test_a_full_batch_goes_at_once_and_batches_hold_at_most_max_batch_in_order(
    mocked: Callable[..., MockedClient],
) -> None:
    recorder = Recorder()
    client = mocked(recorder, flush_interval_s=3600)
    for i in range(MAX_BATCH):
        client.create_score(name=f"s{i}", value=i, trace_id=TRACE_ID)
    eventually(lambda: recorder.batches)  # no flush, the interval is an hour: a full batch wakes the thread
    total = 2 * MAX_BATCH + 5
    for i in range(MAX_BATCH, total):
        client.create_score(name=f"s{i}", value=i, trace_id=TRACE_ID)
    assert client.flush(timeout_s=30)
    assert len(recorder.batches[0]) == MAX_BATCH
    assert max(len(b) for b in recorder.batches) == MAX_BATCH
    assert recorder.names == [f"s{i}" for i in range(total)]
    assert client.sent == total


def test_flush_waits_for_the_batch_in_flight_and_times_out_without_losing_it(
    mocked: Callable[..., MockedClient],
) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    client = mocked(recorder, flush_interval_s=60)
    client.create_score(name="a", value=1, trace_id=TRACE_ID)
    assert client.flush(timeout_s=0.2) is False  # the server has not answered yet
    recorder.gate.set()
    assert client.flush(timeout_s=30) is True
    assert recorder.names == ["a"] and client.sent == 1


def test_shutdown_delivers_stops_the_thread_and_later_scores_are_dropped(
    mocked: Callable[..., MockedClient], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    client = mocked(recorder, flush_interval_s=60)
    client.create_score(name="a", value=1, trace_id=TRACE_ID)
    thread = client._sender._thread
    assert thread is not None
    client.shutdown()
    assert not thread.is_alive()
    assert recorder.names == ["a"]
    with caplog.at_level(logging.WARNING, logger="tracejudge_client"):
        client.create_score(name="b", value=1, trace_id=TRACE_ID)
        client.create_score(name="c", value=1, trace_id=TRACE_ID)
    assert sum("after shutdown" in r.getMessage() for r in caplog.records) == 1
    assert (client.sent, client.dropped) == (1, 2)
    assert client.flush(timeout_s=1)
    client.shutdown()  # again: nothing happens


def test_scores_from_many_threads_all_arrive(mocked: Callable[..., MockedClient]) -> None:
    recorder = Recorder()
    client = mocked(recorder, flush_interval_s=0.05)

    def work(t: int) -> None:
        for i in range(500):
            client.create_score(name=f"t{t}-{i}", value=i, trace_id=TRACE_ID)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(timeout_s=30)
    assert sorted(recorder.names) == sorted(f"t{t}-{i}" for t in range(4) for i in range(500))
    for t in range(4):
        mine = [n for n in recorder.names if n.startswith(f"t{t}-")]
        assert mine == [f"t{t}-{i}" for i in range(500)]
