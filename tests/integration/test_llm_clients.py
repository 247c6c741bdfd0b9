"""The judge clients (connectors/llm) with the REAL openai / anthropic SDKs against the fake LLM server.

Each protocol (Chat Completions, Responses, Messages) is driven through `make_client`: scores from the fake's
rule (`<expected>` in `<output>` gives the maximum, else the minimum), categorical judges, score ranges,
parameter merging, and every fault mapped onto the JudgeError tree, with exactly one HTTP request per call
(the SDKs' own retries are off).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, cast

import anthropic
import httpx2  # the HTTP client both SDKs use (a dependency of theirs)
import openai
import pytest

from connectors.llm.answers import parse_answer
from connectors.llm.anthropic_client import AnthropicMessagesClient
from connectors.llm.errors import retry_after_s
from connectors.llm.factory import make_client
from connectors.llm.openai_client import OpenAIChatClient, OpenAIResponsesClient
from connectors.llm.sdk import SdkJudgeClient
from dataflow.errors import (
    JudgeAuthError,
    JudgeBadResponse,
    JudgeError,
    JudgeRateLimited,
    JudgeRequestError,
    JudgeServerError,
    JudgeTimeout,
)
from dataflow.judging.client import JudgeAnswer, JudgeClient, JudgeRequest
from dataflow.judging.connections import ConnectionSpec
from dataflow.judging.executor import JudgeExecutor
from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import REPO

KEY_ENV = "TRACEJUDGE_TEST_LLM_CLIENTS_KEY"
MODEL = "judge-model-1"
SYSTEM = "You are a strict grader."
MATCH = "Grade the answer.\n<expected>Paris</expected>\n<output>The capital is Paris</output>"
MISMATCH = "Grade the answer.\n<expected>Paris</expected>\n<output>The capital is Lyon</output>"
PROTOCOLS = ["chat_completions", "responses", "messages"]
PATHS = {"chat_completions": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


@pytest.fixture
def srv(llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    monkeypatch.setenv(KEY_ENV, "test-key")
    return llm


def make_spec(srv: FakeLLMServer, protocol: str, **kw: Any) -> ConnectionSpec:
    provider = "anthropic" if protocol == "messages" else "openai"
    fields: dict[str, Any] = {
        "name": f"judge-{protocol}",
        "provider": provider,
        "protocol": protocol,
        "base_url": srv.anthropic_base_url if provider == "anthropic" else srv.openai_base_url,
        "api_key_env": KEY_ENV,
        "model": MODEL,
        "timeout_s": 5.0,
    }
    fields.update(kw)
    return ConnectionSpec(**fields)


def judge(spec: ConnectionSpec, request: JudgeRequest) -> JudgeAnswer:
    async def run() -> JudgeAnswer:
        client = make_client(spec)
        try:
            return await client.judge(request)
        finally:
            await client.aclose()

    return asyncio.run(run())


def judge_error(spec: ConnectionSpec, request: JudgeRequest) -> JudgeError:
    """The JudgeError a call raises (anything else fails the test)."""
    try:
        answer = judge(spec, request)
    except JudgeError as exc:
        return exc
    raise AssertionError(f"expected a JudgeError, got an answer: {answer}")


def one_request(srv: FakeLLMServer, protocol: str) -> dict[str, Any]:
    """The single request the call made: the SDK did not retry on its own."""
    reqs = srv.requests
    assert len(reqs) == 1, [(r["path"], r["status"]) for r in reqs]
    req = reqs[0]
    assert req["path"] == PATHS[protocol]
    assert req["headers"].get("x-stainless-retry-count", "0") == "0"
    return req


def assert_names(err: JudgeError, spec: ConnectionSpec, *parts: str) -> None:
    text = str(err)
    assert repr(spec.name) in text, text
    for part in parts:
        assert part in text, text


# ---- answers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_numeric_judge_scores_match_and_mismatch(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    hit = judge(spec, JudgeRequest(SYSTEM, MATCH))
    assert hit.score == 1.0 and isinstance(hit.score, float)
    assert hit.choice is None
    assert "paris" in hit.rationale.lower()
    assert hit.input_tokens > 0 and hit.output_tokens > 0
    assert hit.model == MODEL
    assert json.loads(hit.raw)["score"] == 1.0
    body = one_request(srv, protocol)["body"]

    srv.clear_requests()
    miss = judge(spec, JudgeRequest(SYSTEM, MISMATCH))
    assert miss.score == 0.0
    assert "does not contain" in miss.rationale
    one_request(srv, protocol)

    # the wire shape of the structured-output request
    assert body["model"] == MODEL
    schema: dict[str, Any]
    if protocol == "chat_completions":
        assert body["messages"] == [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": MATCH},
        ]
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        schema = fmt["json_schema"]["schema"]
    elif protocol == "responses":
        assert body["instructions"] == SYSTEM
        assert body["input"] == [{"role": "user", "content": MATCH}]
        assert body["store"] is False
        fmt = body["text"]["format"]
        assert fmt["type"] == "json_schema" and fmt["strict"] is True and fmt["name"]
        schema = fmt["schema"]
    else:
        assert body["system"] == SYSTEM
        assert body["messages"] == [{"role": "user", "content": MATCH}]
        assert body["max_tokens"] == 1024
        assert body["tool_choice"] == {"type": "tool", "name": "submit_score"}
        (tool,) = body["tools"]
        assert tool["name"] == "submit_score"
        schema = tool["input_schema"]
    assert schema["required"] == ["rationale", "score"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["score"] == {**schema["properties"]["score"], "minimum": 0.0, "maximum": 1.0}
    assert schema["properties"]["rationale"]["type"] == "string"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_score_range_one_to_five(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    assert judge(spec, JudgeRequest(SYSTEM, MATCH, min_score=1, max_score=5)).score == 5.0
    assert judge(spec, JudgeRequest(SYSTEM, MISMATCH, min_score=1, max_score=5)).score == 1.0
    body = srv.requests[0]["body"]
    text = json.dumps(body)
    assert '"minimum": 1' in text and '"maximum": 5' in text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_categorical_judge(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    labels = ("correct", "partially correct", "incorrect")
    hit = judge(spec, JudgeRequest(SYSTEM, MATCH, choices=labels))
    miss = judge(spec, JudgeRequest(SYSTEM, MISMATCH, choices=labels))
    # the fake answers the first label for its maximum and the last for its minimum
    assert (hit.choice, hit.score) == ("correct", None)
    assert (miss.choice, miss.score) == ("incorrect", None)
    assert miss.rationale and miss.input_tokens > 0 and miss.output_tokens > 0 and miss.model == MODEL
    text = json.dumps(srv.requests[0]["body"])
    assert '"enum": ["correct", "partially correct", "incorrect"]' in text
    assert '"required": ["rationale", "choice"]' in text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_params_merge_without_overriding_the_request(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(
        srv,
        protocol,
        params={"temperature": 0.7, "top_p": 0.9, "model": "not-this-one", "max_tokens": 77, "stream": True},
    )
    request = JudgeRequest(
        SYSTEM,
        MATCH,
        params={
            "temperature": 0.0,
            "messages": "clobbered",
            "response_format": {"type": "text"},
            "timeout": 1,
        },
    )
    assert judge(spec, request).score == 1.0
    body = one_request(srv, protocol)["body"]
    assert body["temperature"] == 0.0  # request.params win over spec.params
    assert body["top_p"] == 0.9
    assert body["model"] == MODEL
    assert body["max_tokens"] == 77
    assert "stream" not in body and "timeout" not in body
    if protocol == "chat_completions":
        assert body["messages"][1]["content"] == MATCH
        assert body["response_format"]["type"] == "json_schema"
    elif protocol == "messages":
        assert body["messages"] == [{"role": "user", "content": MATCH}]
        assert "response_format" in body  # not reserved there: sent as an extra field, the API decides


# ---- faults ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_429_rate_limited_with_retry_after(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    srv.fail_next(status=429, retry_after=2.5)
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert isinstance(err, JudgeRateLimited)
    assert err.retry_after_s == 2.5  # retry-after-ms first (retry-after alone says 3)
    assert err.retryable
    assert_names(err, spec, "HTTP 429")
    assert one_request(srv, protocol)["status"] == 429


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retry_after_seconds_and_http_date(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    srv.fail_next(status=429, headers={"retry-after": "7"})
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert isinstance(err, JudgeRateLimited) and err.retry_after_s == 7.0

    when = datetime.now(UTC) + timedelta(seconds=30)
    srv.fail_next(status=429, headers={"retry-after": format_datetime(when, usegmt=True)})
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert isinstance(err, JudgeRateLimited) and err.retry_after_s is not None
    assert 25 <= err.retry_after_s <= 31

    srv.fail_next(status=429)
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert isinstance(err, JudgeRateLimited) and err.retry_after_s is None
    assert len(srv.requests) == 3


def test_retry_after_parsing() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after-ms": "junk", "retry-after": "9"}) == 9.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({"retry-after": "-3"}) is None
    assert retry_after_s({"retry-after": "inf"}) is None
    assert retry_after_s({}) is None
    assert retry_after_s(None) is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("status", [500, 503, 529])
def test_5xx_server_error(srv: FakeLLMServer, protocol: str, status: int) -> None:
    spec = make_spec(srv, protocol)
    srv.fail_next(status=status)
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert type(err) is JudgeServerError and err.retryable
    assert err.retry_after_s is None
    assert_names(err, spec, f"HTTP {status}")
    assert one_request(srv, protocol)["status"] == status


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_5xx_carries_retry_after(srv: FakeLLMServer, protocol: str) -> None:
    srv.fail_next(status=503, retry_after=4)
    err = judge_error(make_spec(srv, protocol), JudgeRequest(SYSTEM, MATCH))
    assert isinstance(err, JudgeServerError) and err.retry_after_s == 4.0
    one_request(srv, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol, timeout_s=0.5)
    srv.fail_next(timeout=5)
    t0 = time.monotonic()
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    elapsed = time.monotonic() - t0
    assert type(err) is JudgeTimeout and err.retryable
    assert_names(err, spec, "0.5 s")
    assert 0.4 <= elapsed < 2.5, elapsed
    one_request(srv, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_malformed_body_is_bad_response(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    srv.fail_next(malformed=True)
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert type(err) is JudgeBadResponse
    assert_names(err, spec, "HTTP 200", "not JSON", '{"id": "broken"')
    assert one_request(srv, protocol)["status"] == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("mode", "says"),
    [("missing", "'score' is missing"), ("out_of_range", "outside [1, 5]"), ("not_json", "not JSON")],
)
def test_bad_structured_answer(srv: FakeLLMServer, protocol: str, mode: str, says: str) -> None:
    spec = make_spec(srv, protocol)
    srv.fail_next(bad_structured=mode)
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH, min_score=1, max_score=5))
    assert type(err) is JudgeBadResponse
    assert_names(err, spec, says, "got: ")
    assert "rationale" in str(err)  # a snippet of what came back
    one_request(srv, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_structured_choice(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    request = JudgeRequest(SYSTEM, MATCH, choices=("yes", "no"))
    srv.fail_next(bad_structured="out_of_range")
    err = judge_error(spec, request)
    assert type(err) is JudgeBadResponse
    assert_names(err, spec, "'not-a-valid-choice' is not one of ['yes', 'no']")
    srv.fail_next(bad_structured="missing")  # drops the first required property: the rationale
    err = judge_error(spec, request)
    assert type(err) is JudgeBadResponse and "'rationale' is missing" in str(err)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, JudgeRequestError),
        (404, JudgeRequestError),
        (409, JudgeRequestError),
        (422, JudgeRequestError),
        (403, JudgeAuthError),
        (408, JudgeTimeout),
    ],
)
def test_other_statuses(srv: FakeLLMServer, protocol: str, status: int, cls: type[JudgeError]) -> None:
    spec = make_spec(srv, protocol)
    srv.fail_next(status=status, message="nope, not like this")
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert type(err) is cls
    assert_names(err, spec, f"HTTP {status}", "nope, not like this")
    one_request(srv, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_key_is_auth_error(srv: FakeLLMServer, protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(srv, "api_key", "right")
    spec = make_spec(srv, protocol)

    async def run() -> tuple[JudgeError, JudgeAnswer]:
        client = make_client(spec)
        try:
            with pytest.raises(JudgeAuthError) as wrong:
                await client.judge(JudgeRequest(SYSTEM, MATCH))
            monkeypatch.setenv(KEY_ENV, "right")  # the same client picks up the changed key
            return wrong.value, await client.judge(JudgeRequest(SYSTEM, MATCH))
        finally:
            await client.aclose()

    err, answer = asyncio.run(run())
    assert not err.retryable
    assert_names(err, spec, "HTTP 401", KEY_ENV)
    assert answer.score == 1.0
    assert [r["status"] for r in srv.requests] == [401, 200]
    # anthropic 2.x sends its api_key as a Bearer token too (no x-api-key header)
    assert [r["headers"]["authorization"] for r in srv.requests] == ["Bearer test-key", "Bearer right"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_missing_key_fails_each_call_without_a_request(
    srv: FakeLLMServer, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    spec = make_spec(srv, protocol)
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))  # constructing the client did not fail
    assert type(err) is JudgeAuthError
    assert str(err) == spec.key_problem()
    assert KEY_ENV in str(err) and repr(spec.name) in str(err)
    assert srv.requests == []
    # an empty value counts as missing too
    monkeypatch.setenv(KEY_ENV, "")
    assert type(judge_error(spec, JudgeRequest(SYSTEM, MATCH))) is JudgeAuthError
    assert srv.requests == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connection_refused_is_server_error(srv: FakeLLMServer, protocol: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = make_spec(
        srv, protocol, base_url=f"http://127.0.0.1:{port}" + ("/v1" if protocol != "messages" else "")
    )
    err = judge_error(spec, JudgeRequest(SYSTEM, MATCH))
    assert type(err) is JudgeServerError and err.retryable
    assert_names(err, spec, f"127.0.0.1:{port}", "failed")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_client_many_calls_then_aclose(srv: FakeLLMServer, protocol: str) -> None:
    spec = make_spec(srv, protocol)
    srv.fail_next(status=429, retry_after=1)
    srv.fail_next(status=500)

    async def run() -> list[Any]:
        client: JudgeClient = make_client(spec)
        results: list[Any] = []
        for prompt in (MATCH, MATCH, MATCH, MISMATCH):
            try:
                results.append((await client.judge(JudgeRequest(SYSTEM, prompt))).score)
            except JudgeError as exc:
                results.append(type(exc))
        many = await asyncio.gather(*(client.judge(JudgeRequest(SYSTEM, MATCH)) for _ in range(20)))
        results.append(sorted({a.score for a in many}))
        await client.aclose()
        await client.aclose()  # idempotent
        return results

    assert asyncio.run(run()) == [JudgeRateLimited, JudgeServerError, 1.0, 0.0, [1.0]]
    assert len(srv.requests) == 24  # one HTTP request per call, even for the 429 and the 500


def test_make_client_by_protocol(srv: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)  # construction never needs the key
    assert type(make_client(make_spec(srv, "chat_completions"))) is OpenAIChatClient
    assert type(make_client(make_spec(srv, "responses"))) is OpenAIResponsesClient
    assert type(make_client(make_spec(srv, "messages"))) is AnthropicMessagesClient


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_http_pool_is_sized_to_max_concurrency(srv: FakeLLMServer, protocol: str) -> None:
    """The SDKs pool 1,000 connections by default: a call beyond that waited for one, spending its timeout.
    The pool is aiohttp's (the SDKs' `DefaultAioHttpClient`): its connector's limit is the pool's size."""
    sdk_default = (anthropic if protocol == "messages" else openai).DEFAULT_CONNECTION_LIMITS

    def pool_limits(max_concurrency: int) -> tuple[int | None, int | None, int]:
        spec = make_spec(srv, protocol, max_concurrency=max_concurrency)
        client = cast(SdkJudgeClient[Any], make_client(spec))

        async def limits() -> tuple[int | None, int | None, int]:
            transport = client._sdk_for("test-key")._client._transport  # the SDK's aiohttp transport
            session = transport.get_client()  # the aiohttp session it makes at its first request
            try:
                return (
                    transport.limits.max_connections,
                    transport.limits.max_keepalive_connections,
                    session.connector.limit,
                )
            finally:
                await session.close()
                await client.aclose()

        return asyncio.run(limits())

    assert pool_limits(1500) == (1500, 1500, 1500)
    default = sdk_default.max_connections
    assert pool_limits(64) == (default, sdk_default.max_keepalive_connections, default)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_calls_are_spread_over_several_sdk_clients(srv: FakeLLMServer, protocol: str) -> None:
    """One httpx pool's per-request work grows with its connections: a connection's calls go round a set of
    SDK clients, one per CALLS_PER_SDK_CLIENT concurrent calls."""
    from connectors.llm.sdk import CALLS_PER_SDK_CLIENT, sdk_clients

    assert sdk_clients(1) == 1 and sdk_clients(CALLS_PER_SDK_CLIENT) == 1
    assert sdk_clients(CALLS_PER_SDK_CLIENT + 1) == 2
    spec = make_spec(srv, protocol, max_concurrency=5 * CALLS_PER_SDK_CLIENT)
    client = cast(SdkJudgeClient[Any], make_client(spec))
    try:
        seen = [id(client._sdk_for("test-key")) for _ in range(20)]
        assert len(set(seen)) == 5 and seen[:5] == seen[5:10]  # round robin over 5 clients
        first = set(seen)
        assert not first & {id(client._sdk_for("other-key")) for _ in range(10)}  # a new key: new clients
    finally:
        asyncio.run(client.aclose())


FIRST_CALLS = """
import asyncio, os, sys
from connectors.llm.factory import load_sdks, make_client
from dataflow.judging.client import JudgeRequest
from dataflow.judging.connections import ConnectionSpec
from tests.fakes.llm_server import FakeLLMServer

os.environ["KEY"] = "test-key"
with FakeLLMServer() as srv:
    load_sdks()
    before = set(sys.modules)

    async def first_calls():
        for provider, protocol, url in (
            ("openai", "chat_completions", srv.openai_base_url),
            ("openai", "responses", srv.openai_base_url),
            ("anthropic", "messages", srv.anthropic_base_url),
        ):
            spec = ConnectionSpec(
                name=protocol, provider=provider, protocol=protocol, base_url=url, api_key_env="KEY", model="m"
            )
            client = make_client(spec)
            try:
                await client.judge(JudgeRequest("s", "<expected>Paris</expected><output>Paris</output>"))
            finally:
                await client.aclose()

    asyncio.run(first_calls())
    print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_after_load_sdks_the_first_calls_import_no_sdk_module() -> None:
    """`tracejudge run` calls load_sdks at start-up: the judge loop's first calls must not import the SDKs (or
    the API resources and HTTP stack they load on first use). In a fresh interpreter: nothing imported yet."""
    out = subprocess.run([sys.executable, "-c", FIRST_CALLS], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    imported = out.stdout.split()
    sdk_side = ("openai", "anthropic", "autoevals", "httpx", "httpx2", "httpcore", "httpcore2", "truststore")
    assert [m for m in imported if m.split(".")[0] in sdk_side] == []


def test_waiting_for_a_concurrency_slot_does_not_count_against_the_timeout(srv: FakeLLMServer) -> None:
    """One call at a time, 0.3 s each: the last of 12 waits about 3.3 s for its slot, past its 1 s timeout
    (and the 2 s deadline), and is still answered, as every call is."""
    srv.set_latency(0.3)
    spec = make_spec(srv, "chat_completions", timeout_s=1.0, max_concurrency=1, max_retries=0)
    executor = JudgeExecutor(make_client)
    executor.start()
    try:
        results = executor.submit([(spec, JudgeRequest(SYSTEM, MATCH))] * 12).result(timeout=60)
    finally:
        executor.stop()
    assert [(r.error_class, r.attempts) for r in results] == [("", 1)] * 12
    # A lower bound, not a duration: the last call did wait past its deadline, and was answered.
    assert max(r.latency_ms for r in results) > 2000


# ---- answer validation (no HTTP) ------------------------------------------------------------------------------


def test_parse_answer_edges(srv: FakeLLMServer) -> None:
    spec = make_spec(srv, "chat_completions")
    numeric = JudgeRequest(SYSTEM, MATCH, min_score=1, max_score=5)

    def parse(payload: str, request: JudgeRequest = numeric) -> JudgeAnswer:
        return parse_answer(spec, request, payload, model="m", input_tokens=1, output_tokens=2)

    def refused(payload: str, request: JudgeRequest = numeric) -> str:
        with pytest.raises(JudgeBadResponse) as exc:
            parse(payload, request)
        assert repr(spec.name) in str(exc.value)
        return str(exc.value)

    assert parse('{"rationale": "ok", "score": 5.000000000001}').score == 5.0  # float noise is clamped
    assert parse('{"rationale": "ok", "score": 3, "extra": 1}').score == 3.0
    assert parse('```json\n{"rationale": "ok", "score": 2}\n```').score == 2.0
    assert "outside [1, 5]" in refused('{"rationale": "ok", "score": 5.01}')
    assert "not finite" in refused('{"rationale": "ok", "score": NaN}')
    assert "not a number" in refused('{"rationale": "ok", "score": true}')
    assert "not a number" in refused('{"rationale": "ok", "score": "4"}')
    assert "'rationale' is not a string" in refused('{"rationale": 3, "score": 4}')
    assert "not a JSON object" in refused("[1, 2]")
    assert "empty" in refused("   ")
    long = refused('{"rationale": "' + "x" * 5000 + '"}')
    assert "(5" in long and len(long) < 600  # the snippet is cut

    labels = JudgeRequest(SYSTEM, MATCH, choices=("Pass", "Fail"))
    assert parse('{"rationale": "ok", "choice": " pass "}', labels).choice == "Pass"
    assert "is not one of" in refused('{"rationale": "ok", "choice": "maybe"}', labels)

    raw = parse('{"rationale": "' + "y" * 10_000 + '", "score": 1}').raw
    assert len(raw) == 4096


# ---- error mapping and the deadline (no HTTP) -----------------------------------------------------------------


def test_sdk_errors_without_a_fake_fault(srv: FakeLLMServer) -> None:
    """The SDK exceptions the fake cannot provoke, mapped by each client."""
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/x")
    response = httpx2.Response(200, request=request)
    oai = OpenAIChatClient(make_spec(srv, "chat_completions"))
    ant = AnthropicMessagesClient(make_spec(srv, "messages"))
    cases: list[tuple[SdkJudgeClient[Any], Exception, type[JudgeError]]] = [
        (oai, openai.APITimeoutError(request=request), JudgeTimeout),
        (oai, openai.APIConnectionError(request=request), JudgeServerError),
        (oai, openai.APIResponseValidationError(response, None), JudgeBadResponse),
        (oai, openai.OpenAIError("something local"), JudgeRequestError),
        (ant, anthropic.APITimeoutError(request=request), JudgeTimeout),
        (ant, anthropic.APIConnectionError(request=request), JudgeServerError),
        (ant, anthropic.APIResponseValidationError(response, None), JudgeBadResponse),
        (ant, anthropic.AnthropicError("something local"), JudgeRequestError),
    ]
    for client, exc, cls in cases:
        mapped = client._map_sdk_error(exc)
        assert type(mapped) is cls, (exc, mapped)
        assert repr(client.spec.name) in str(mapped)
    assert oai._map_sdk_error(KeyError("not the SDK's")) is None


class _Stuck(SdkJudgeClient[object]):
    """An SDK client that never answers and ignores its own timeout (a server trickling bytes)."""

    def _new_sdk(self, api_key: str) -> object:
        return object()

    async def _close_sdk(self, sdk: object) -> None:
        return None

    async def _ask(self, sdk: object, request: JudgeRequest) -> JudgeAnswer:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    def _map_sdk_error(self, exc: Exception) -> JudgeError | None:
        return None


def test_deadline_ends_an_attempt_the_sdk_does_not(srv: FakeLLMServer) -> None:
    client = _Stuck(make_spec(srv, "chat_completions", timeout_s=0.2))
    t0 = time.monotonic()
    with pytest.raises(JudgeTimeout, match=r"no answer within 0\.2 s"):
        asyncio.run(client.judge(JudgeRequest(SYSTEM, MATCH)))
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_non_json_content_type_is_bad_response(srv: FakeLLMServer, protocol: str) -> None:
    """A 200 text/html page (a proxy, a captive portal): the SDKs return the body as a str, not a model."""

    def html(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/html"}, text="<html>Please sign in</html>")

    def transport() -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(html))

    spec = make_spec(srv, protocol)
    base = cast(SdkJudgeClient[Any], make_client(spec))
    if isinstance(base, AnthropicMessagesClient):
        base._new_sdk = lambda api_key: anthropic.AsyncAnthropic(  # type: ignore[method-assign]
            api_key=api_key, base_url="http://proxy", http_client=transport(), max_retries=0
        )
    else:
        base._new_sdk = lambda api_key: openai.AsyncOpenAI(  # type: ignore[method-assign]
            api_key=api_key, base_url="http://proxy/v1", http_client=transport(), max_retries=0
        )
    with pytest.raises(JudgeBadResponse) as exc:
        asyncio.run(base.judge(JudgeRequest(SYSTEM, MATCH)))
    assert_names(exc.value, spec, "HTTP 200", "not an API response", "Please sign in")
