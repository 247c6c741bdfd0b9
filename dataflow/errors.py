"""The typed error tree of tracejudge.

    TracejudgeError
    ├── ConfigError            bad configuration; raised at start-up only
    ├── DecodeError            a request body that cannot be decoded at all (answered 400)
    ├── WalError               the write-ahead log cannot be used
    │   ├── WalFull            back-pressure: the log is over its bound (answered 429 / UNAVAILABLE)
    │   └── WalCorrupt         a segment is torn or missing where it must not be
    ├── RuleCompileError       a rule cannot be compiled; raised when the rule is saved or loaded
    │   └── FilterError        (dataflow.rules) a filter outside the language; names position and token
    ├── JudgeError             an LLM judge call failed (becomes a score row with the error)
    │   ├── JudgeTimeout       no answer within the connection's timeout
    │   ├── JudgeRateLimited   429 (carries the server's Retry-After when it sent one)
    │   ├── JudgeServerError   5xx or a broken connection: retried
    │   ├── JudgeAuthError     401/403 or a missing key: not retried
    │   ├── JudgeRequestError  another 4xx: not retried
    │   └── JudgeBadResponse   an answer that does not fit the requested structure or score range
    ├── SinkError              ClickHouse refused or failed a write
    └── QueryError             a read-only query was refused or failed (answered 400)
        └── QueryBusy          every read-only query slot stayed taken (answered 429 with Retry-After)

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


class JudgeError(TracejudgeError):
    """An LLM judge call failed."""

    retryable = False


class JudgeTimeout(JudgeError):
    """The judge did not answer within the connection's timeout."""

    retryable = True


class JudgeRateLimited(JudgeError):
    """The provider answered 429; `retry_after_s` is its Retry-After, when it sent one."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JudgeServerError(JudgeError):
    """A 5xx answer or a broken connection."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JudgeAuthError(JudgeError):
    """401/403, or the connection's API key env var is not set."""


class JudgeRequestError(JudgeError):
    """The provider refused the request (a 4xx other than 401/403/429)."""


class JudgeBadResponse(JudgeError):
    """The answer is not valid JSON, misses the score, or the score is out of range."""

    retryable = True


class QueryBusy(QueryError):
    """Every slot for read-only queries stayed taken while the query waited; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
