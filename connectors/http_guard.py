"""uvicorn's h11 protocol with header and body read deadlines: a slow or stalled client is closed.

uvicorn (0.55) times out only idle keep-alive connections, and its timer is cancelled by the first byte a client
sends, so a client that sends a byte a second holds its connection (and a request that stalls mid-body holds
its handler) forever. `guarded_protocol` returns a subclass of uvicorn's `H11Protocol` that arms one deadline per
phase of a request: the request line and headers must arrive within `header_timeout_s` of the connection (or of
the previous response), else the client gets 408 and is closed; the body must arrive within `body_timeout_s`
of the headers, else the connection is closed (the handler sees a disconnect). Pass the class as
`uvicorn.Config(http=...)`.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from dataflow import metrics

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
    b"content-length: 33\r\n\r\nrequest headers not sent in time\n"
)


class _GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0
    body_timeout_s = 60.0
    _deadline: asyncio.TimerHandle | None = None
    _phase = "idle"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if self._phase == "headers" and state is h11.SEND_BODY:
            self._arm("body")
        elif self._phase in ("headers", "body") and state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm("headers")  # the next request's; handle_events below moves on if it is already here
        super().on_response_complete()

    def _arm(self, phase: str) -> None:
        self._disarm()
        self._phase = phase
        delay = self.header_timeout_s if phase == "headers" else self.body_timeout_s
        self._deadline = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = "idle"

    def _expired(self) -> None:
        phase, self._deadline = self._phase, None
        self._phase = "idle"
        if self.transport.is_closing():
            return
        metrics.HTTP_READ_TIMEOUTS.labels(phase).inc()
        if phase == "headers" and self.conn.our_state is h11.IDLE:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


def guarded_protocol(header_timeout_s: float, body_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with these read deadlines (seconds)."""
    attrs = {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s}
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), attrs)
