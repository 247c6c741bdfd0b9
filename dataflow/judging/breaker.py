"""A connection's circuit breaker: its state, and a log line only when the state changes.

    closed ──(judging.breaker_failures consecutive retryable failures)──> open
    open ──(the first call after judging.breaker_cooldown_s)──> half-open
    half-open ──(a call succeeds)──> closed
    half-open ──(a call fails)──> open

While open, new calls are shed (`circuit_open`); half-open lets calls through and the first answer decides.
A call sent before the breaker opened that fails while it is open is only counted: it neither logs nor
extends the cooldown. Volume is in metrics (failures in `tracejudge_judge_calls_total`, shed calls in
`tracejudge_judge_shed_total`, the state in `tracejudge_judge_circuit_open`); the log has the transitions.
Used on the judge loop only (not thread-safe).
"""

from __future__ import annotations

import enum
import logging
import time

from dataflow import metrics

logger = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(self, connection: str, failures_to_open: int, cooldown_s: float) -> None:
        self.connection = connection
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive retryable failures
        self._open_until = 0.0
        self._gauge = metrics.JUDGE_CIRCUIT_OPEN.labels(connection)
        self._gauge.set(0)

    def admits(self) -> bool:
        """Whether a new call may start: not while open; the first call after the cooldown turns it half-open."""
        if self.state is BreakerState.OPEN:
            if time.monotonic() < self._open_until:
                return False
            self.state = BreakerState.HALF_OPEN
            logger.info(
                "connection %s: circuit half-open: cooldown over, letting calls through", self.connection
            )
        return True

    def is_open(self) -> bool:
        """Open and cooling down: a failed call is not retried."""
        return self.state is BreakerState.OPEN and time.monotonic() < self._open_until

    def succeeded(self) -> None:
        self.failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.CLOSED
            self._gauge.set(0)
            logger.info("connection %s: circuit closed: a call succeeded", self.connection)

    def failed(self) -> None:
        """A retryable failure (429, 5xx, timeout, connection error)."""
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self._open("a call failed while half-open")
        elif self.state is BreakerState.CLOSED and self.failures >= self.failures_to_open:
            self._open(f"{self.failures} consecutive failures")

    def _open(self, why: str) -> None:
        self.state = BreakerState.OPEN
        self._open_until = time.monotonic() + self.cooldown_s
        self._gauge.set(1)
        logger.warning(
            "connection %s: circuit opened after %s; shedding its calls for %g s",
            self.connection,
            why,
            self.cooldown_s,
        )
