"""The typed error tree of tracejudge.

    TracejudgeError
    ├── ConfigError            bad configuration; raised at start-up only
    ├── DecodeError            a request body that cannot be decoded at all (answered 400)
    ├── WalError               the write-ahead log cannot be used
    │   ├── WalFull            back-pressure: the log is over its bound (answered 429 / UNAVAILABLE)
    │   └── WalCorrupt         a segment is torn or missing where it must not be
    ├── RuleCompileError       a rule cannot be compiled; raised when the rule is saved or loaded
    │   └── FilterError        (dataflow.rules) a filter outside the language; names position and token
    ├── SinkError              ClickHouse refused or failed a write
    └── QueryError             a read-only query was refused or failed (answered 400)

Only start-up code lets these escape; after start-up each becomes an answer to the sender, a metric,
or a row an operator can see.
"""

from __future__ import annotations


class TracejudgeError(Exception):
    """Base of every error tracejudge raises on purpose."""


class ConfigError(TracejudgeError):
    """The configuration is invalid; the message names the key."""


class DecodeError(TracejudgeError):
    """The request body is not a decodable OTLP export request."""


class WalError(TracejudgeError):
    """The write-ahead log cannot be read or written."""


class WalFull(WalError):
    """The write-ahead log is over its size bound; the sender should retry later."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class WalCorrupt(WalError):
    """A log segment is missing or damaged where the readers need it."""


class RuleCompileError(TracejudgeError):
    """A rule cannot be compiled; the message says which part and why."""


class SinkError(TracejudgeError):
    """ClickHouse refused or failed a write."""


class QueryError(TracejudgeError):
    """A read-only query was refused or failed."""
