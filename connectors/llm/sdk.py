"""`SdkJudgeClient`: the life cycle every SDK judge client has, and the sizing of its SDK clients.

The key is checked at call time, the SDK client is made on first use (`sdk_clients` of them per connection,
their HTTP pools sized by `pool_limits`), one deadline bounds each attempt, and there are no retries (the
executor owns them). The provider clients (openai_client, anthropic_client) subclass it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Generic, TypeVar

from connectors.llm.errors import local_error, timeout_error
from dataflow.errors import JudgeAuthError, JudgeError
from dataflow.judging.autoevals_scorer import AutoevalsRequest
from dataflow.judging.client import JudgeAnswer, JudgeRequest
from dataflow.judging.connections import ConnectionSpec

if TYPE_CHECKING:
    import httpx2

DEADLINE_GRACE_S = 1.0  # the whole attempt ends this long after timeout_s, whatever the SDK's timeouts do
CALLS_PER_SDK_CLIENT = 16
MAX_SDK_CLIENTS = 256


def sdk_clients(max_concurrency: int) -> int:
    """How many SDK clients a connection spreads its calls over: one per CALLS_PER_SDK_CLIENT concurrent calls
    (a client's per-request work grows with its open connections; see `SdkJudgeClient._sdk_for`)."""
    return max(1, min(MAX_SDK_CLIENTS, -(-max_concurrency // CALLS_PER_SDK_CLIENT)))


def pool_limits(spec: ConnectionSpec, sdk_default: httpx2.Limits) -> httpx2.Limits:
    """The SDK's connection-pool limits raised to `spec.max_concurrency` (never below the SDK's own).

    An SDK client's pool holds `DEFAULT_CONNECTION_LIMITS.max_connections` (1,000) connections; a call beyond
    that waits for one, and the wait counts against the call's timeout. The executor lets at most
    `max_concurrency` calls of a connection run at once, so a pool of that size never makes a call wait; as many
    idle connections are kept, so a steady load does not reconnect. The class is the SDK's own (`httpx2.Limits`);
    the SDKs' aiohttp transport, which the clients use, sizes its connector by `max_connections`.
    """

    def at_least(sdk_value: int | None) -> int | None:
        return None if sdk_value is None else max(sdk_value, spec.max_concurrency)  # None: unlimited

    return type(sdk_default)(
        max_connections=at_least(sdk_default.max_connections),
        max_keepalive_connections=at_least(sdk_default.max_keepalive_connections),
        keepalive_expiry=sdk_default.keepalive_expiry,
    )


SdkT = TypeVar("SdkT")


class SdkJudgeClient(ABC, Generic[SdkT]):
    """A JudgeClient over an official async SDK client.

    Construction never fails: the SDK client is made on the first call, with the key read then (a missing
    key fails each call with JudgeAuthError and sends nothing). The SDK's own retries are off (the executor
    owns them), and its HTTP pool is sized to the connection's `max_concurrency` (`pool_limits`), so no call
    spends its timeout waiting for a pooled connection. The SDK's timeout (`spec.timeout_s`) applies to each
    phase (connect, write, each read, pool wait), so a server that trickles bytes could hold an attempt far
    longer: a deadline of `timeout_s` + DEADLINE_GRACE_S on the whole attempt stops that. The SDK's own
    timeout normally fires first, so the request is ended by the HTTP client rather than by cancelling it. An
    `AutoevalsRequest` runs an autoevals classifier over the same SDK client, limits and deadline
    (connectors/llm/autoevals_client.py).
    """

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        self._sdks: list[SdkT] = []
        self._sdk_key = ""
        self._next = 0
        self._retired: list[SdkT] = []

    @abstractmethod
    def _new_sdk(self, api_key: str) -> SdkT: ...

    @abstractmethod
    async def _close_sdk(self, sdk: SdkT) -> None: ...

    @abstractmethod
    async def _ask(self, sdk: SdkT, request: JudgeRequest) -> JudgeAnswer:
        """One call; raises the SDK's errors, or JudgeBadResponse for an answer that does not fit."""

    @abstractmethod
    def _map_sdk_error(self, exc: Exception) -> JudgeError | None:
        """The JudgeError for one of the SDK's exceptions; None when `exc` is not the SDK's."""

    def _resources(self, sdk: SdkT) -> object:
        """The SDK's API resources `_ask` uses; getting them imports their modules (none by default)."""
        return None

    def preload(self) -> None:
        """Build an SDK client as the first call does and get the resources its calls use, then drop it (it has
        never connected): what the SDK imports on first use is imported now. Sends nothing."""
        self._resources(self._new_sdk("preload"))

    async def _ask_autoevals(self, sdk: SdkT, request: AutoevalsRequest) -> JudgeAnswer:
        """An autoevals classifier over this client's SDK client (OpenAI connections only; others refuse)."""
        from connectors.llm.autoevals_client import ask_autoevals

        return await ask_autoevals(self.spec, sdk, request)

    def _sdk_for(self, api_key: str) -> SdkT:
        """One of the connection's SDK clients, in turn: `sdk_clients(max_concurrency)` of them, because the
        HTTP pool of one client does work that grows with its open connections on every request (measured
        with 1,000 calls in flight against a 2 s fake, httpx2 transport: 12 ms of CPU per call with one client,
        3.6 ms with 16, 2.5 ms with 64; aiohttp transport, bench/sdk_cost.py --concurrency 1000: 1.36 ms with
        one client, 1.06 ms with 16 calls per client)."""
        if not self._sdks or api_key != self._sdk_key:
            self._retired.extend(
                self._sdks
            )  # the key changed: calls in flight keep the old clients until aclose
            self._sdks = [self._new_sdk(api_key) for _ in range(sdk_clients(self.spec.max_concurrency))]
            self._sdk_key = api_key
        self._next = (self._next + 1) % len(self._sdks)
        return self._sdks[self._next]

    async def judge(self, request: JudgeRequest) -> JudgeAnswer:
        api_key = self.spec.api_key()
        if not api_key:
            raise JudgeAuthError(self.spec.key_problem())
        sdk = self._sdk_for(api_key)
        try:
            async with asyncio.timeout(self.spec.timeout_s + DEADLINE_GRACE_S):
                if isinstance(request, AutoevalsRequest):
                    return await self._ask_autoevals(sdk, request)
                return await self._ask(sdk, request)
        except JudgeError:
            raise
        except TimeoutError:
            raise timeout_error(self.spec) from None
        except Exception as exc:
            mapped = self._map_sdk_error(exc) or local_error(self.spec, exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        sdks = [*self._retired, *self._sdks]
        self._retired.clear()
        self._sdks = []
        self._sdk_key = ""
        for sdk in sdks:
            await self._close_sdk(sdk)
