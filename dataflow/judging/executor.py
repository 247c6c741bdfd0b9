"""The judge executor: one asyncio loop per process, off the Bytewax worker thread.

The judge step hands over a batch of calls with one cross-thread hop (`submit`) and later collects the
finished ones without waiting (`Submission.done`). Per connection: a concurrency limit, token buckets for
requests and tokens per minute, retries on 429/5xx/timeouts/connection errors that honour Retry-After and
back off with jitter up to the connection's ceiling, and a circuit breaker that sheds calls while a provider
keeps failing (dataflow/judging/breaker.py). A malformed answer is retried once. Every call ends in a
`CallResult`: an answer, or the last error with its class. A call's timeout (the client's deadline) starts when
it has its concurrency slot: waiting for a slot, rate-limit tokens or a retry's backoff never counts against it.
Calls submitted with a `share` (re-scoring jobs, `jobs.max_share`) first pass a sub-limit of their own, that
share of the connection's concurrency and rates, then the connection's own: together they never exceed the
connection's limits, and the jobs' calls never exceed their share, so live calls always have the rest.
`stop` cancels the calls still running after a grace and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from dataflow import metrics
from dataflow.errors import JudgeBadResponse, JudgeError, JudgeRateLimited, JudgeServerError
from dataflow.judging.breaker import CircuitBreaker
from dataflow.judging.client import JudgeAnswer, JudgeClient, JudgeRequest
from dataflow.judging.connections import ConnectionSpec

logger = logging.getLogger(__name__)

CANCEL_WAIT_S = 5.0  # at stop: how long cancelled calls get to unwind
CLOSE_WAIT_S = 5.0  # at stop: how long closing the clients may take


@dataclass(frozen=True)
class ExecutorConfig:
    breaker_failures: int = 5  # consecutive retryable failures that open the breaker
    breaker_cooldown_s: float = 30.0
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After counts as failure now
    stop_grace_s: float = 5.0  # `stop` lets calls run this long, then cancels them


@dataclass(frozen=True)
class CallResult:
    answer: JudgeAnswer | None
    error: str  # '' on success: "ClassName: message"
    error_class: str
    attempts: int
    latency_ms: float
    shed: str = ""  # 'circuit_open' when the breaker refused the call


class TokenBucket:
    """Capacity = one minute's worth; refills continuously. `rate_per_min` 0 means unlimited."""

    def __init__(self, rate_per_min: float) -> None:
        self.rate = rate_per_min / 60.0
        self.capacity = rate_per_min
        self.tokens = rate_per_min
        self.stamp = time.monotonic()

    def delay_for(self, amount: float) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        amount = min(amount, self.capacity)
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        wait = (amount - self.tokens) / self.rate
        self.tokens -= amount  # reserve: later callers queue behind
        return wait


@dataclass
class _Lane:
    """Everything per connection."""

    spec: ConnectionSpec
    client: JudgeClient
    semaphore: asyncio.Semaphore
    requests: TokenBucket
    tokens: TokenBucket
    breaker: CircuitBreaker


@dataclass
class _Share:
    """A share of a connection's limits (a re-scoring job's calls pass it before the connection's own)."""

    semaphore: asyncio.Semaphore
    requests: TokenBucket
    tokens: TokenBucket

    @classmethod
    def of(cls, spec: ConnectionSpec, share: float) -> _Share:
        return cls(
            asyncio.Semaphore(max(1, int(spec.max_concurrency * share))),
            TokenBucket(spec.requests_per_minute * share),
            TokenBucket(spec.tokens_per_minute * share),
        )


class JudgeExecutor:
    def __init__(
        self,
        make_client: Callable[[ConnectionSpec], JudgeClient],
        config: ExecutorConfig | None = None,
    ) -> None:
        self._make_client = make_client
        self._config = config or ExecutorConfig()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="judge-loop", daemon=True)
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._shares: dict[tuple[str, int, float], _Share] = {}
        self._unfinished = 0  # calls of the batches begun on the loop and not ended (what a stop cancels)
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self._thread.start()
            self._started = True

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop the loop and close the clients; never raises, however many calls are running.

        Calls still running `grace_s` (default `ExecutorConfig.stop_grace_s`) after the stop began are
        cancelled, and with them the futures of their batches; one line logs how many.
        """
        if not self._started:
            return
        grace = max(0.0, self._config.stop_grace_s if grace_s is None else grace_s)
        done = asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop)
        try:
            cancelled = done.result(timeout=grace + CANCEL_WAIT_S + CLOSE_WAIT_S + 1.0)
        except Exception:  # e.g. the loop blocked: stop it all the same
            logger.warning("the judge loop did not shut down cleanly; stopping it anyway", exc_info=True)
            done.cancel()
        else:
            if cancelled:
                logger.info("stopping judges: cancelled %d calls still running after %g s", cancelled, grace)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CLOSE_WAIT_S)
        self._started = False

    async def _shutdown(self, grace_s: float) -> int:
        """Let the calls run for up to `grace_s`, cancel the rest, close the clients; the calls cancelled."""
        me = asyncio.current_task()
        running = {t for t in asyncio.all_tasks() if t is not me}
        if running and grace_s > 0:
            await asyncio.wait(running, timeout=grace_s)
        cancelled = self._unfinished
        left = {t for t in asyncio.all_tasks() if t is not me and not t.done()}
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=CANCEL_WAIT_S)
        closing = [asyncio.create_task(self._close(lane)) for lane in list(self._lanes.values())]
        if closing:
            await asyncio.wait(closing, timeout=CLOSE_WAIT_S)
        return cancelled

    @staticmethod
    async def _close(lane: _Lane) -> None:
        try:
            await lane.client.aclose()
        except Exception:  # closing is best effort
            logger.debug("closing a judge client failed", exc_info=True)

    # --- submitting ------------------------------------------------------------------------------------------
    def submit(
        self, calls: list[tuple[ConnectionSpec, JudgeRequest]], share: float | None = None
    ) -> Future[list[CallResult]]:
        """Run a batch of calls; one future for the whole batch (one cross-thread hop). With `share`, the calls
        use at most that part of each connection's concurrency and rates."""
        return asyncio.run_coroutine_threadsafe(self._batch(calls, share), self._loop)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _batch(
        self, calls: list[tuple[ConnectionSpec, JudgeRequest]], share: float | None = None
    ) -> list[CallResult]:
        self._unfinished += len(calls)
        return list(await asyncio.gather(*(self._counted(spec, req, share) for spec, req in calls)))

    async def _counted(self, spec: ConnectionSpec, request: JudgeRequest, share: float | None) -> CallResult:
        try:
            if share is None:
                return await self.call(spec, request)
            return await self._shared_call(spec, request, share)
        finally:
            self._unfinished -= 1

    async def _shared_call(self, spec: ConnectionSpec, request: JudgeRequest, share: float) -> CallResult:
        key = (spec.name, spec.version, share)
        part = self._shares.get(key)
        if part is None:
            part = self._shares[key] = _Share.of(spec, share)
        estimate = (len(request.system) + len(request.prompt)) / 4 + 300
        await asyncio.sleep(part.requests.delay_for(1) + part.tokens.delay_for(estimate))
        async with part.semaphore:
            return await self.call(spec, request)

    def _lane(self, spec: ConnectionSpec) -> _Lane:
        key = (spec.name, spec.version)
        lane = self._lanes.get(key)
        if lane is None:
            lane = _Lane(
                spec,
                self._make_client(spec),
                asyncio.Semaphore(spec.max_concurrency),
                TokenBucket(spec.requests_per_minute),
                TokenBucket(spec.tokens_per_minute),
                CircuitBreaker(spec.name, self._config.breaker_failures, self._config.breaker_cooldown_s),
            )
            self._lanes[key] = lane
        return lane

    async def call(self, spec: ConnectionSpec, request: JudgeRequest) -> CallResult:
        lane = self._lane(spec)
        if not lane.breaker.admits():
            return _shed(spec)
        return await self._attempts(lane, request)

    async def _attempts(self, lane: _Lane, request: JudgeRequest) -> CallResult:
        spec, cfg = lane.spec, self._config
        started = time.perf_counter()
        attempts = 0
        bad_answers = 0
        estimate = (len(request.system) + len(request.prompt)) / 4 + 300
        while True:
            attempts += 1
            await asyncio.sleep(lane.requests.delay_for(1) + lane.tokens.delay_for(estimate))
            async with lane.semaphore:  # the client's deadline starts in here
                if attempts == 1 and lane.breaker.is_open():  # opened while this call waited for a slot
                    return _shed(spec)
                metrics.JUDGE_IN_FLIGHT.labels(spec.name).inc()
                try:
                    answer = await lane.client.judge(request)
                except JudgeError as exc:
                    last = exc
                else:
                    lane.breaker.succeeded()
                    metrics.JUDGE_CALLS.labels(spec.name, "ok").inc()
                    return CallResult(answer, "", "", attempts, (time.perf_counter() - started) * 1000)
                finally:
                    metrics.JUDGE_IN_FLIGHT.labels(spec.name).dec()
            name = type(last).__name__
            metrics.JUDGE_CALLS.labels(spec.name, name).inc()
            if isinstance(last, JudgeBadResponse):
                bad_answers += 1
                retry = bad_answers <= 1
            else:
                retry = last.retryable and attempts <= spec.max_retries
                if last.retryable:
                    lane.breaker.failed()
            server_wait = (
                getattr(last, "retry_after_s", None)
                if isinstance(last, JudgeRateLimited | JudgeServerError)
                else None
            )
            if server_wait is not None and server_wait > cfg.max_retry_after_s:
                retry = False
            if not retry or lane.breaker.is_open():
                return CallResult(
                    None, f"{name}: {last}"[:2000], name, attempts, (time.perf_counter() - started) * 1000
                )
            backoff = min(cfg.max_backoff_s, 0.5 * 2 ** (attempts - 1)) * (0.5 + random.random() / 2)
            await asyncio.sleep(max(backoff, server_wait or 0.0))


def _shed(spec: ConnectionSpec) -> CallResult:
    """A call the open breaker refuses before it is sent, counted as shed (`circuit_open`)."""
    metrics.JUDGE_SHED.labels(spec.name, "circuit_open").inc()
    return CallResult(None, "CircuitOpen: too many recent failures", "CircuitOpen", 0, 0.0, "circuit_open")
