"""Fixtures of the client tier: the fake scores server on loopback, clients against it or against an
in-process ``httpx.MockTransport`` handler, and OpenTelemetry SDK tracers (no global provider is set)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from tests.fakes.scores_server import FakeScores
from tracejudge_client import TraceJudge

TRACE_ID = "abcdef1234567890abcdef1234567890"
Handler = Callable[[httpx.Request], httpx.Response]


class MockedClient(TraceJudge):
    """A TraceJudge whose background thread posts to an in-process handler instead of the network."""

    handler: Handler

    def _make_http(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler), timeout=self.timeout_s)


class RecordedWaits(threading.Event):
    """An Event for the sender's ``_abort`` that records each retry delay it is asked to wait (and, with
    ``skip``, waits none of it)."""

    def __init__(self, skip: bool) -> None:
        super().__init__()
        self.skip = skip
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        return super().wait(0 if self.skip else timeout)


@pytest.fixture
def fake() -> Iterator[FakeScores]:
    server = FakeScores().start()
    yield server
    server.stop()


@pytest.fixture
def clients() -> Iterator[list[TraceJudge]]:
    """Clients a test makes; shut down after it (bounded, the server may be gone)."""
    made: list[TraceJudge] = []
    yield made
    for client in made:
        client._sender.shutdown(timeout_s=1)


@pytest.fixture
def mocked(clients: list[TraceJudge]) -> Callable[..., MockedClient]:
    """``mocked(handler, **TraceJudge arguments)``: a client posting to ``handler``; retry waits recorded in
    ``client._sender._abort.waits`` and skipped (waited with ``skip_waits=False``)."""

    def make(handler: Handler, skip_waits: bool = True, **kwargs: object) -> MockedClient:
        kwargs.setdefault("api_url", "http://tracejudge.test")
        client = MockedClient(**kwargs)  # type: ignore[arg-type]
        client.handler = handler
        client._sender._abort = RecordedWaits(skip_waits)
        clients.append(client)
        return client

    return make


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    # The resource names the project, as an instrumented app's would: scores made in its spans carry it.
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "tracejudge.project": "shop"})
    )
    yield provider.get_tracer("tests.client")
    provider.shutdown()


def as_given(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The score objects without what the client makes itself when the caller gives none: a generated
    ``score_id`` (32 hex digits) and the ``timestamp`` of the call (RFC 3339, UTC); each is checked first."""
    out = []
    for body in bodies:
        body = dict(body)
        stamp = body.pop("timestamp")
        assert isinstance(stamp, str) and stamp.endswith("Z"), stamp
        if re.fullmatch("[0-9a-f]{32}", str(body.get("score_id", ""))):
            del body["score_id"]
        out.append(body)
    return out
