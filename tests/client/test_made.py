"""The score id and time the client makes when the caller gives none (``_made``): the shapes the API takes,
unique ids, and a forked process that never makes its parent's ids."""

from __future__ import annotations

import multiprocessing
import re
from datetime import UTC, datetime

from tracejudge_client import validate_score
from tracejudge_client._made import new_score_id, utc_now


def _child_ids(conn: multiprocessing.connection.Connection) -> None:
    conn.send([new_score_id() for _ in range(3)])
    conn.close()


def test_ids_are_32_lowercase_hex_digits_and_unique() -> None:
    ids = [new_score_id() for _ in range(10_000)]
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({i[:16] for i in ids}) == 1  # one random prefix per process, then a counter


def test_a_forked_child_makes_ids_of_its_own() -> None:
    parent = [new_score_id() for _ in range(3)]
    receiver, sender = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(target=_child_ids, args=(sender,))
    process.start()
    child = receiver.recv()
    process.join(30)
    assert process.exitcode == 0
    assert {i[:16] for i in child}.isdisjoint(i[:16] for i in parent)


def test_the_time_is_rfc3339_utc_with_microseconds_and_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = utc_now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    score = validate_score({"name": "n", "value": 1, "session_id": "s", "timestamp": stamp})
    assert score.timestamp is not None and before <= score.timestamp <= after
