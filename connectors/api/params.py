"""Query parameters the API's routes share: times (`since`, `until`) in, RFC 3339 times out."""

from __future__ import annotations

import datetime as dt

from connectors.api.errors import ApiError, bounded

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_time(value: str | None, field: str = "since") -> int:
    """An ISO 8601 time (UTC when it names no zone) or Unix seconds (nanoseconds when that large), as Unix
    nanoseconds; 0 for none. Anything else is a 400 naming `field`."""
    if not value:
        return 0
    if value.lstrip("-").isdigit():
        number = int(value)
        return number * 1_000_000_000 if abs(number) < 10**11 else number
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(
            400, f"{bounded(value, 100)!r} is neither ISO 8601 nor a Unix timestamp", field
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return (parsed - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def iso_ns(ns: int) -> str:
    """Unix nanoseconds as ISO 8601 UTC (`...Z`), to the microsecond."""
    return iso_us(ns // 1000)


def iso_us(us: int) -> str:
    """Unix microseconds as ISO 8601 UTC (`...Z`)."""
    return (_EPOCH + dt.timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")
