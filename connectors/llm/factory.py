"""`make_client`: the `JudgeClient` for a connection; and what the SDK clients share.

The shared part is provider-independent: the JSON schema a judge answer must follow, the merge of request
parameters, the validation of an answer into a `JudgeAnswer`, the mapping of SDK errors onto the
`JudgeError` tree (with Retry-After), and `SdkJudgeClient`, the life cycle every SDK client has (the key is
checked at call time, the SDK client is made on first use, one deadline per attempt, no retries).

The SDK modules are imported by `make_client` only when a connection needs them, so the CLI starts without them;
`tracejudge run` imports them at start-up (`load_sdks`), not on the judge loop at the first call.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic

from connectors.llm.base import JudgeAnswer, JudgeClient, JudgeRequest
from dataflow.errors import (
    ConfigError,
    JudgeAuthError,
    JudgeBadResponse,
    JudgeError,
    JudgeRateLimited,
    JudgeRequestError,
    JudgeServerError,
    JudgeTimeout,
)
from dataflow.judging.autoevals_scorer import AutoevalsRequest
from dataflow.judging.connections import ConnectionSpec, Protocol, Provider

if TYPE_CHECKING:
    import httpx2

RAW_LIMIT = 4096  # characters of the structured answer kept in JudgeAnswer.raw
SNIPPET_LIMIT = 300  # characters of a bad answer or error body quoted in an error message
SCORE_TOLERANCE = 1e-9  # a score this far outside [min, max] is clamped, not refused
SCHEMA_NAME_SCORE = "judge_score"
SCHEMA_NAME_CHOICE = "judge_choice"
TOOL_NAME = "submit_score"
SDK_CLIENT_MODULES = (
    "connectors.llm.openai_client",
    "connectors.llm.anthropic_client",
    "connectors.llm.autoevals_client",
)
PRELOADED: tuple[tuple[Provider, Protocol], ...] = (
    ("openai", "chat_completions"),
    ("openai", "responses"),
    ("anthropic", "messages"),
)
DEADLINE_GRACE_S = 1.0  # the whole attempt ends this long after timeout_s, whatever the SDK's timeouts do

# Never taken from params, whatever the protocol: the client owns them.
ALWAYS_RESERVED = frozenset(
    {"timeout", "extra_headers", "extra_query", "extra_body", "stream", "stream_options"}
)


def make_client(spec: ConnectionSpec) -> JudgeClient:
    """The client for `spec`'s provider and protocol. Never fails for a missing key (that fails each call)."""
    if spec.provider == "openai" and spec.protocol == "chat_completions":
        from connectors.llm.openai_client import OpenAIChatClient

        return OpenAIChatClient(spec)
    if spec.provider == "openai" and spec.protocol == "responses":
        from connectors.llm.openai_client import OpenAIResponsesClient

        return OpenAIResponsesClient(spec)
    if spec.provider == "anthropic" and spec.protocol == "messages":
        from connectors.llm.anthropic_client import AnthropicMessagesClient

        return AnthropicMessagesClient(spec)
    msg = (
        f"connection {spec.name!r}: no client for provider {spec.provider!r} with protocol {spec.protocol!r}"
    )
    raise ConfigError(msg)


def load_sdks() -> None:
    """Import the clients, the SDKs and the SDK modules a call needs, so that the judge loop does not import
    them at its first call. For service start-up; sends nothing.

    Importing the SDKs is not enough: they import their API resources (`chat.completions`, `responses`,
    `messages`) and their HTTP stack when a client first uses them, so each client builds and drops an SDK
    client too (`SdkJudgeClient.preload`).
    """
    for module in SDK_CLIENT_MODULES:
        importlib.import_module(module)
    for provider, protocol in PRELOADED:
        spec = ConnectionSpec(
            name="preload", provider=provider, protocol=protocol, api_key_env="UNUSED", model="preload"
        )
        client = make_client(spec)
        if isinstance(client, SdkJudgeClient):
            client.preload()


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


# ---- the answer schema ----------------------------------------------------------------------------------------


def answer_schema(request: JudgeRequest) -> dict[str, Any]:
    """The JSON schema of the answer: `{rationale, score}` or `{rationale, choice}`, both required.

    The rationale comes first so that a model writing in order reasons before it commits to a verdict.
    The schema stays inside OpenAI's strict subset (no extra keys, every property required).
    """
    rationale = {"type": "string", "description": "One or two sentences explaining the verdict."}
    verdict: dict[str, Any]
    if request.choices:
        key = "choice"
        verdict = {"type": "string", "enum": list(request.choices), "description": "The label that applies."}
    else:
        key = "score"
        verdict = {
            "type": "number",
            "minimum": request.min_score,
            "maximum": request.max_score,
            "description": f"The score, from {request.min_score:g} (worst) to {request.max_score:g} (best).",
        }
    return {
        "type": "object",
        "properties": {"rationale": rationale, key: verdict},
        "required": ["rationale", key],
        "additionalProperties": False,
    }


def schema_name(request: JudgeRequest) -> str:
    return SCHEMA_NAME_CHOICE if request.choices else SCHEMA_NAME_SCORE


def call_params(spec: ConnectionSpec, request: JudgeRequest, reserved: Iterable[str]) -> dict[str, Any]:
    """`spec.params` then `request.params`, without the keys the client sets itself (model, messages, format)."""
    blocked = ALWAYS_RESERVED | frozenset(reserved)
    merged = {**spec.params, **request.params}
    return {k: v for k, v in merged.items() if k not in blocked}


# ---- answers ----------------------------------------------------------------------------------------------


def who(spec: ConnectionSpec) -> str:
    return f"connection {spec.name!r} ({spec.provider} {spec.protocol}, model {spec.model})"


def snippet(text: object, limit: int = SNIPPET_LIMIT) -> str:
    s = text if isinstance(text, str) else repr(text)
    s = s.strip()
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


def truncate_raw(text: str) -> str:
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT]


_FENCE_RE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def _loads_object(text: str) -> object:
    """JSON of the answer text; a Markdown code fence around it (endpoints without strict formats) is allowed."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        fenced = _FENCE_RE.match(stripped)
        if fenced is None:
            raise
        return json.loads(fenced.group(1))


def bad_answer(spec: ConnectionSpec, problem: str, got: object) -> JudgeBadResponse:
    return JudgeBadResponse(f"{who(spec)}: {problem}; got: {snippet(got) if got != '' else '(empty)'}")


def parse_answer(
    spec: ConnectionSpec,
    request: JudgeRequest,
    payload: str | Mapping[str, Any],
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    note: str = "",
) -> JudgeAnswer:
    """Validate a structured answer (JSON text, or an already decoded object such as a tool input).

    `note` is added to the message of a refusal (e.g. "the answer was cut off at max_tokens").
    """
    raw = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
    suffix = f" ({note})" if note else ""
    obj: object
    if isinstance(payload, str):
        if not payload.strip():
            raise bad_answer(spec, f"the answer is empty{suffix}", raw)
        try:
            obj = _loads_object(payload)
        except ValueError as exc:
            raise bad_answer(spec, f"the answer is not JSON ({exc}){suffix}", raw) from None
    else:
        obj = payload
    if not isinstance(obj, Mapping):
        raise bad_answer(spec, f"the answer is not a JSON object{suffix}", raw)

    rationale = obj.get("rationale")
    if not isinstance(rationale, str):
        problem = "'rationale' is missing" if rationale is None else "'rationale' is not a string"
        raise bad_answer(spec, problem + suffix, raw)

    score: float | None = None
    choice: str | None = None
    if request.choices:
        got = obj.get("choice")
        if got is None:
            raise bad_answer(spec, f"'choice' is missing{suffix}", raw)
        choice = _match_choice(got, request.choices)
        if choice is None:
            raise bad_answer(spec, f"choice {got!r} is not one of {list(request.choices)}{suffix}", raw)
    else:
        got = obj.get("score")
        if got is None:
            raise bad_answer(spec, f"'score' is missing{suffix}", raw)
        if isinstance(got, bool) or not isinstance(got, int | float):
            raise bad_answer(spec, f"score {got!r} is not a number{suffix}", raw)
        value = float(got)
        lo, hi = request.min_score, request.max_score
        if not math.isfinite(value):
            raise bad_answer(spec, f"score {got!r} is not finite{suffix}", raw)
        if value < lo - SCORE_TOLERANCE or value > hi + SCORE_TOLERANCE:
            raise bad_answer(spec, f"score {got!r} is outside [{lo:g}, {hi:g}]{suffix}", raw)
        score = float(min(hi, max(lo, value)))

    return JudgeAnswer(
        score=score,
        choice=choice,
        rationale=rationale,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=model or spec.model,
        raw=truncate_raw(raw),
    )


def _match_choice(got: object, labels: tuple[str, ...]) -> str | None:
    """The label `got` names: exactly, else ignoring case and surrounding blanks when that is unambiguous."""
    if not isinstance(got, str):
        return None
    if got in labels:
        return got
    folded = [label for label in labels if label.strip().casefold() == got.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def text_body_error(spec: ConnectionSpec, body: str) -> JudgeBadResponse:
    """A 2xx whose body is not JSON at all (e.g. a proxy's HTML page): the SDKs return it as a plain str."""
    return bad_answer(spec, "HTTP 200 but the body is not an API response (not JSON)", body)


def as_int(value: object) -> int:
    """A token count from a usage object (None or missing on some OpenAI-compatible servers)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# ---- errors -----------------------------------------------------------------------------------------------


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date); None when absent."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        value = float(ra)
    except ValueError:
        try:
            when = parsedate_to_datetime(ra)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return value if math.isfinite(value) and value >= 0 else None


def api_message(body: object, fallback: str) -> str:
    """The provider's error message from an error body (OpenAI: `{message}`; Anthropic: `{error: {message}}`)."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return snippet(inner["message"])
        if isinstance(body.get("message"), str):
            return snippet(body["message"])
    if isinstance(body, str) and body.strip():
        return snippet(body)
    return snippet(fallback)


def status_error(
    spec: ConnectionSpec, status: int, headers: Mapping[str, str] | None, detail: str
) -> JudgeError:
    """The JudgeError for an HTTP error status."""
    wait = retry_after_s(headers)
    after = f" (Retry-After {wait:g} s)" if wait is not None else ""
    prefix = f"{who(spec)}: HTTP {status}"
    if status == 429:
        return JudgeRateLimited(f"{prefix} rate limited{after}: {detail}", retry_after_s=wait)
    if status in (401, 403):
        kind = "unauthorized" if status == 401 else "forbidden"
        return JudgeAuthError(f"{prefix} {kind}: {detail} (key from env var {spec.api_key_env})")
    if status == 408:
        return JudgeTimeout(f"{prefix} request timeout: {detail}")
    if 400 <= status < 500:
        return JudgeRequestError(f"{prefix} request refused: {detail}")
    return JudgeServerError(f"{prefix} server error{after}: {detail}", retry_after_s=wait)


def timeout_error(spec: ConnectionSpec) -> JudgeTimeout:
    return JudgeTimeout(f"{who(spec)}: no answer within {spec.timeout_s:g} s (timeout)")


def connection_error(
    spec: ConnectionSpec, exc: BaseException, cause: BaseException | None = None
) -> JudgeServerError:
    cause = cause or exc.__cause__ or exc.__context__
    reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    target = spec.base_url or "the provider's default URL"
    return JudgeServerError(f"{who(spec)}: connection to {target} failed: {snippet(reason)}")


def sdk_error(spec: ConnectionSpec, exc: Exception, sdk: Any, base: type[Exception]) -> JudgeError | None:
    """The JudgeError for an exception of an official SDK (`sdk`: the `openai` or `anthropic` module, whose
    generated clients share these exception classes; `base`: the SDK's root error); None when not the SDK's."""
    if isinstance(exc, sdk.APITimeoutError):
        refused = _connection_failure(exc)
        return timeout_error(spec) if refused is None else connection_error(spec, exc, refused)
    if isinstance(exc, sdk.APIConnectionError):
        return connection_error(spec, exc)
    if isinstance(exc, sdk.APIStatusError):
        detail = api_message(exc.body, exc.message)
        return status_error(spec, exc.status_code, exc.response.headers, detail)
    if isinstance(exc, sdk.APIResponseValidationError):
        return JudgeBadResponse(f"{who(spec)}: HTTP {exc.status_code} with an unexpected body: {exc.message}")
    if isinstance(exc, base):
        return JudgeRequestError(f"{who(spec)}: {type(exc).__name__}: {exc}")
    return None


def _connection_failure(exc: BaseException) -> BaseException | None:
    """The aiohttp connection error behind an SDK timeout, if there is one.

    The SDKs' aiohttp transport (`DefaultAioHttpClient`) turns every `aiohttp.ClientConnectionError`, a refused
    or reset connection too, into httpx's `ConnectTimeout`, which the SDK raises as `APITimeoutError`. A real
    timeout is aiohttp's `ServerTimeoutError` (a `TimeoutError`) or our own deadline; anything else in the
    cause chain is a connection failure and is reported as one (both are retried).
    """
    import aiohttp

    cause = exc.__cause__ or exc.__context__
    for _ in range(8):  # a short chain: SDK error <- httpx error <- aiohttp error
        if cause is None:
            return None
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def local_error(spec: ConnectionSpec, exc: Exception) -> JudgeError | None:
    """Errors that are not the SDK's own: a 200 whose body is not JSON, and the SDK refusing a request."""
    if isinstance(exc, json.JSONDecodeError):
        return JudgeBadResponse(
            f"{who(spec)}: HTTP 200 but the response body is not JSON ({exc.msg}, char {exc.pos}): "
            f"{snippet(exc.doc) or '(empty)'}"
        )
    if isinstance(exc, pydantic.ValidationError):
        return JudgeBadResponse(
            f"{who(spec)}: the response does not have the API's shape: {snippet(str(exc))}"
        )
    if isinstance(exc, ValueError):  # e.g. the SDK checking arguments before sending
        return JudgeRequestError(f"{who(spec)}: the SDK refused the request: {snippet(str(exc))}")
    return None


# ---- the client life cycle --------------------------------------------------------------------------------

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
