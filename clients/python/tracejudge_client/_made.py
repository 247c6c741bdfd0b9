"""What the client makes for a score whose caller gave none: its ``score_id`` and its ``timestamp``.

Both are made in the application's thread on every call, so both are cheap and neither releases the GIL (a
``uuid.uuid4()`` reads ``os.urandom``, which does: with the sender thread waiting for the GIL, every call then
handed it over and waited to get it back, which doubled a call's cost).

* ``new_score_id()``: 32 lowercase hex digits, 16 random per process then a counter that starts at a random
  number (as unlikely to repeat across processes as a random UUID, and never within one). A process forked from
  this one (a web server's worker) draws its own random digits, so parent and child never make the same id.
* ``utc_now()``: the time now as RFC 3339 UTC with microseconds (``2026-12-04T21:10:44.123456Z``), the date and
  time to the second formatted once a second.
"""

from __future__ import annotations

import itertools
import os
import time

_MAX_START = 1 << 62  # the counter starts below this: 2**62 ids before it needs a 17th digit


class _Ids:
    """The process's random digits and counter."""

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(8)) % _MAX_START)


_ids = _Ids()
_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text up to the decimal point


def new_score_id() -> str:
    """A new score id: 32 lowercase hex digits, unique."""
    ids = _ids  # read once: a fork may replace it
    return f"{ids.prefix}{next(ids.counter):016x}"  # next() on itertools.count is atomic under the GIL


def utc_now() -> str:
    """The time now as RFC 3339 UTC with microseconds."""
    global _second
    whole, nanos = divmod(time.time_ns(), 1_000_000_000)
    second = _second  # one tuple, replaced whole: another thread sees the old pair or the new one
    if second[0] != whole:
        second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole)))
        _second = second
    return f"{second[1]}{nanos // 1000:06d}Z"


def _after_fork_in_child() -> None:
    global _ids
    _ids = _Ids()


os.register_at_fork(after_in_child=_after_fork_in_child)
