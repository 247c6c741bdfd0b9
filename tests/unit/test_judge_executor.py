"""The judge executor with scripted clients: retries, Retry-After, the ceiling, bad answers, the breaker,
concurrency and rate limits, stopping with calls in flight. (The real SDK clients are tested against the fake
LLM server.)"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dataflow import metrics
from dataflow.errors import JudgeAuthError, JudgeBadResponse, JudgeError, JudgeRateLimited, JudgeServerError
from dataflow.judging.client import JudgeAnswer, JudgeRequest
from dataflow.judging.connections import ConnectionSpec
from dataflow.judging.executor import ExecutorConfig, JudgeExecutor, TokenBucket
from tests.waiting import eventually

OK = JudgeAnswer(0.9, None, "fine", 10, 5, "m", "{}")
REQ = JudgeRequest("sys", "prompt")


class Scripted:
    """Answers from a script: an exception instance to raise, or OK; then OK forever."""

    def __init__(self, script: list[Any], delay: float = 0.0) -> None:
        self.script = list(script)
        self.delay = delay
        self.calls: list[float] = []
        self.active = 0
        self.peak = 0

    async def judge(self, request: JudgeRequest) -> JudgeAnswer:
        self.calls.append(time.monotonic())
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            step = self.script.pop(0) if self.script else OK
            if isinstance(step, JudgeError):
                raise step
            return OK
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        return None


def spec(**kw: Any) -> ConnectionSpec:
    base: dict[str, Any] = dict(
        name="c", provider="openai", protocol="chat_completions", api_key_env="K", model="m"
    )
    base.update(kw)
    return ConnectionSpec(**base)


@pytest.fixture
def run() -> Iterator[Any]:
    executors: list[JudgeExecutor] = []

    def go(client: Scripted, calls: int = 1, cfg: ExecutorConfig | None = None, **kw: Any) -> list[Any]:
        ex = JudgeExecutor(lambda _s: client, cfg or ExecutorConfig(max_backoff_s=0.05))
        ex.start()
        executors.append(ex)
        return ex.submit([(spec(**kw), REQ)] * calls).result(timeout=30)

    yield go
    for ex in executors:
        ex.stop()


def test_success(run: Any) -> None:
    (r,) = run(Scripted([]))
    assert (r.answer, r.error, r.attempts) == (OK, "", 1)


def test_retries_honour_retry_after(run: Any) -> None:
    client = Scripted([JudgeRateLimited("429", retry_after_s=0.4), JudgeServerError("500")])
    (r,) = run(client, max_retries=3)
    assert r.answer == OK and r.attempts == 3
    assert client.calls[1] - client.calls[0] >= 0.4


def test_retry_ceiling_then_an_error_result(run: Any) -> None:
    client = Scripted([JudgeServerError("boom")] * 10)
    (r,) = run(client, max_retries=2)
    assert r.answer is None and r.attempts == 3 and r.error_class == "JudgeServerError"
    assert r.error.startswith("JudgeServerError: boom")


def test_auth_errors_are_not_retried(run: Any) -> None:
    client = Scripted([JudgeAuthError("no key")])
    (r,) = run(client, max_retries=5)
    assert r.attempts == 1 and r.error_class == "JudgeAuthError"


def test_a_bad_answer_is_retried_once(run: Any) -> None:
    (r,) = run(Scripted([JudgeBadResponse("not json")]))
    assert r.answer == OK and r.attempts == 2
    (r,) = run(Scripted([JudgeBadResponse("x"), JudgeBadResponse("y")]))
    assert r.answer is None and r.attempts == 2 and r.error_class == "JudgeBadResponse"


def test_too_long_retry_after_is_not_waited(run: Any) -> None:
    (r,) = run(Scripted([JudgeRateLimited("429", retry_after_s=3600)]), max_retries=3)
    assert r.attempts == 1 and r.error_class == "JudgeRateLimited"


def test_breaker_opens_and_sheds(run: Any) -> None:
    client = Scripted([JudgeServerError("down")] * 100)
    cfg = ExecutorConfig(breaker_failures=3, breaker_cooldown_s=60, max_backoff_s=0.01)
    results = run(client, calls=1, cfg=cfg, max_retries=10)
    assert results[0].attempts == 3  # the third failure opened the breaker: no more retries
    ex = JudgeExecutor(lambda _s: client, cfg)
    ex.start()
    try:
        first = ex.submit([(spec(max_retries=0), REQ)] * 3).result(timeout=10)
        assert [r.error_class for r in first] == ["JudgeServerError"] * 3
        (shed,) = ex.submit([(spec(max_retries=0), REQ)]).result(timeout=10)
        assert shed.shed == "circuit_open" and shed.attempts == 0
    finally:
        ex.stop()


def test_calls_waiting_for_a_slot_when_the_breaker_opens_are_shed_not_sent(run: Any) -> None:
    client = Scripted([JudgeServerError("down")] * 100, delay=0.02)
    cfg = ExecutorConfig(breaker_failures=2, breaker_cooldown_s=60, max_backoff_s=0.01)
    results = run(client, calls=6, cfg=cfg, max_retries=0, max_concurrency=1)
    assert [r.error_class for r in results] == ["JudgeServerError"] * 2 + ["CircuitOpen"] * 4
    assert [r.shed for r in results[2:]] == ["circuit_open"] * 4 and len(client.calls) == 2


def test_concurrency_limit(run: Any) -> None:
    client = Scripted([], delay=0.05)
    results = run(client, calls=40, max_concurrency=4)
    assert all(r.answer == OK for r in results) and client.peak == 4


def test_token_bucket() -> None:
    bucket = TokenBucket(60)  # one per second, capacity 60
    assert sum(bucket.delay_for(1) == 0 for _ in range(60)) == 60
    assert bucket.delay_for(1) == pytest.approx(1.0, abs=0.05)
    assert TokenBucket(0).delay_for(10**9) == 0


def gauge(name: str, connection: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"connection": connection})


def breaker_lines(caplog: pytest.LogCaptureFixture, connection: str) -> list[str]:
    """The states the breaker's log lines name, in order ("connection c: circuit opened after ...")."""
    found = (re.match(rf"connection {connection}: circuit ([a-z-]+)", r.getMessage()) for r in caplog.records)
    return [m.group(1) for m in found if m]


def test_breaker_logs_its_transitions_once_and_shows_its_state(caplog: pytest.LogCaptureFixture) -> None:
    """Failures of calls already sent when the breaker opened are counted, not logged (10 calls, 1 line)."""
    caplog.set_level(logging.INFO, logger="dataflow.judging.breaker")
    name = f"brk-{uuid.uuid4().hex[:8]}"
    client = Scripted([JudgeServerError("down")] * 11)  # 10 at once, then the first half-open call
    cfg = ExecutorConfig(breaker_failures=3, breaker_cooldown_s=0.2, max_backoff_s=0.01)
    ex = JudgeExecutor(lambda _s: client, cfg)
    ex.start()
    try:
        conn = spec(name=name, max_retries=0)
        first = ex.submit([(conn, REQ)] * 10).result(timeout=10)
        assert [r.error_class for r in first] == ["JudgeServerError"] * 10
        assert breaker_lines(caplog, name) == ["opened"]
        assert gauge("tracejudge_judge_circuit_open", name) == 1
        assert [r.shed for r in ex.submit([(conn, REQ)] * 5).result(timeout=10)] == ["circuit_open"] * 5
        time.sleep(0.3)  # past the cooldown: half-open; this call fails and opens it again
        (again,) = ex.submit([(conn, REQ)]).result(timeout=10)
        assert again.error_class == "JudgeServerError"
        assert gauge("tracejudge_judge_circuit_open", name) == 1
        time.sleep(0.3)  # half-open again; this call succeeds and closes it
        (ok,) = ex.submit([(conn, REQ)]).result(timeout=10)
        assert ok.answer == OK
        assert gauge("tracejudge_judge_circuit_open", name) == 0
    finally:
        ex.stop()
    assert breaker_lines(caplog, name) == ["opened", "half-open", "opened", "half-open", "closed"]
    calls = {"connection": name, "outcome": "JudgeServerError"}
    assert metrics.REGISTRY.get_sample_value("tracejudge_judge_calls_total", calls) == 11


def test_stop_cancels_calls_still_running_after_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    """Thousands in flight made the old stop raise TimeoutError (exit code 1); now they are cancelled."""
    caplog.set_level(logging.INFO, logger="dataflow.judging.executor")
    name = f"stop-{uuid.uuid4().hex[:8]}"
    client = Scripted([], delay=3600)  # never answers
    ex = JudgeExecutor(lambda _s: client)
    ex.start()
    fut = ex.submit([(spec(name=name, max_concurrency=4), REQ)] * 10)
    eventually(
        lambda: client.active == 4, timeout=10, interval=0.005, message="4 calls in flight (6 waiting)"
    )
    ex.stop(grace_s=0.05)  # returns, does not raise
    assert fut.cancelled()
    assert client.active == 0  # the calls in flight were cancelled, not abandoned
    assert gauge("tracejudge_judge_in_flight_calls", name) == 0
    assert "cancelled 10 calls still running" in caplog.text


def test_stop_lets_calls_end_within_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dataflow.judging.executor")
    client = Scripted([], delay=1.0)
    ex = JudgeExecutor(lambda _s: client)
    ex.start()
    fut = ex.submit([(spec(name=f"grace-{uuid.uuid4().hex[:8]}"), REQ)] * 3)
    eventually(lambda: client.active == 3, timeout=10, interval=0.005, message="3 calls in flight")
    stopper = threading.Thread(target=ex.stop, kwargs={"grace_s": 60})
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive()
    assert [r.answer for r in fut.result(timeout=0)] == [OK] * 3
    assert "cancelled" not in caplog.text
