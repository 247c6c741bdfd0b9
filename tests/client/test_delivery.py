"""The client against a real HTTP server on loopback: with the server down the application keeps running and
the scores arrive once it is back; scores still queued when the interpreter exits are delivered by the exit
flush (module-level shortcuts and an explicit client, configured from the environment)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.client.conftest import TRACE_ID, as_given
from tests.fakes.scores_server import FakeScores
from tests.waiting import eventually
from tracejudge_client import TraceJudge

REPO = Path(__file__).resolve().parents[2]


def test_with_the_server_down_the_app_keeps_running_and_the_scores_arrive_once_it_is_back(
    clients: list[TraceJudge],
) -> None:
    down = FakeScores().start()
    port = down.port
    down.stop()  # nothing listens on the port now
    client = TraceJudge(api_url=f"http://127.0.0.1:{port}", flush_interval_s=0.05, timeout_s=2)
    clients.append(client)
    for i in range(50):
        client.create_score(name=f"s{i}", value=i, trace_id=TRACE_ID)  # returns; raises nothing
    eventually(lambda: client._sender._in_flight is not None)  # the first batch is being retried
    assert client.flush(timeout_s=0.1) is False
    for i in range(50, 100):
        client.create_score(name=f"s{i}", value=i, trace_id=TRACE_ID)
    back = FakeScores().start(port)
    try:
        assert client.flush(timeout_s=60)
        assert [s["name"] for s in back.received] == [f"s{i}" for i in range(100)]
        assert (client.sent, client.dropped, client.failed) == (100, 0, 0)
    finally:
        back.stop()


EXIT_SCRIPT = textwrap.dedent(
    """
    from opentelemetry.sdk.trace import TracerProvider

    import tracejudge
    import tracejudge_client

    tracer = TracerProvider().get_tracer("app")
    with tracer.start_as_current_span("answer") as span:
        tracejudge_client.score_current_span(name="relevance", value=0.85)
        tracejudge_client.score_current_trace(name="overall", value=True)
    tracejudge_client.create_score(name="by-id", value="good", trace_id="%s")
    own = tracejudge.TraceJudge(flush_interval_s=3600)
    own.create_score(name="own-client", value=1, session_id="sess-1")
    print(format(span.get_span_context().trace_id, "032x"), format(span.get_span_context().span_id, "016x"))
    """
)


def test_the_exit_flush_delivers(fake: FakeScores) -> None:
    env = dict(os.environ)
    env.update(
        TRACEJUDGE_API_URL=fake.url,
        TRACEJUDGE_API_KEY="tj-secret",
        TRACEJUDGE_PROJECT="shop",
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "clients" / "python")]),
    )
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT % TRACE_ID],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    trace_id, span_id = done.stdout.split()
    by_name = {s["name"]: s for s in as_given(fake.received)}
    assert sorted(by_name) == ["by-id", "overall", "own-client", "relevance"]
    assert by_name["relevance"] == {
        "name": "relevance", "value": 0.85, "trace_id": trace_id, "observation_id": span_id, "project": "shop",
    }  # fmt: skip
    assert by_name["overall"] == {"name": "overall", "value": True, "trace_id": trace_id, "project": "shop"}
    assert by_name["by-id"]["trace_id"] == TRACE_ID
    assert by_name["own-client"]["session_id"] == "sess-1"
    assert {h.get("authorization") for h in fake.headers} == {"Bearer tj-secret"}
    assert "not delivered" not in done.stderr


def test_a_forked_worker_sends_its_own_scores_and_not_its_parents(
    fake: FakeScores, clients: list[TraceJudge]
) -> None:
    client = TraceJudge(api_url=fake.url, flush_interval_s=60)
    clients.append(client)
    client.create_score(name="parent", value=1, trace_id=TRACE_ID)  # queued, the thread started
    pid = os.fork()
    if pid == 0:  # the child: leave through os._exit only
        code = 2
        try:
            client.create_score(name="child", value=1, trace_id=TRACE_ID)
            code = 0 if client.flush(timeout_s=30) and (client.sent, client.dropped) == (1, 0) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [s["name"] for s in fake.received] == ["child"]
    assert client.flush(timeout_s=30)
    assert [s["name"] for s in fake.received] == ["child", "parent"]
