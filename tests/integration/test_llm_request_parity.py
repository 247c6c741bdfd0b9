"""The OpenAI judge clients send what the SDK's typed `create` would send, and parse its answer the same way.

`OpenAIChatClient` and `OpenAIResponsesClient` call the SDK client's own `post` with a body they build, not
`chat.completions.create` / `responses.create` (whose recursive transform of typed params took ~40 % of a
call's CPU: bench/sdk_cost.py). This test is what keeps that honest as the SDK moves: for the same judge
request, the fake LLM server must receive the same JSON body and the same headers (auth, content type, the
SDK's own `x-stainless-*`, user agent) from our client as from the real `create`, with connection params
merged in and across the judge shapes (numeric, categorical, no system prompt). The real `openai` SDK, through
the same aiohttp transport the clients use.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from connectors.llm.answers import answer_schema, schema_name
from connectors.llm.factory import make_client
from dataflow.judging.client import JudgeRequest
from dataflow.judging.connections import ConnectionSpec
from tests.fakes.llm_server import FakeLLMServer

KEY_ENV = "TRACEJUDGE_TEST_PARITY_KEY"
REQUESTS = [
    JudgeRequest("You are a strict grader.", "<expected>Paris</expected>\n<output>Paris</output>", 1, 5),
    JudgeRequest("", "Is it polite?\n<output>Thanks!</output>", 0, 1, params={"temperature": 0.5}),
    JudgeRequest("Grade.", "<output>fine</output>", 0, 1, choices=("good", "bad"), params={"seed": 7}),
]
CONNECTION_PARAMS = {"temperature": 0.0, "max_completion_tokens": 300, "metadata": {"team": "qa"}}
# headers whose value is expected to differ between two calls (none of the logged ones today)
VOLATILE: frozenset[str] = frozenset()


def spec(srv: FakeLLMServer, protocol: str) -> ConnectionSpec:
    params = dict(CONNECTION_PARAMS)
    if protocol == "responses":
        params["max_output_tokens"] = params.pop("max_completion_tokens")
    return ConnectionSpec(
        name=f"parity-{protocol}",
        provider="openai",
        protocol=protocol,
        base_url=srv.openai_base_url,
        api_key_env=KEY_ENV,
        model="parity-model",
        params=params,
        max_retries=0,
    )


async def typed_create(sdk: openai.AsyncOpenAI, conn: ConnectionSpec, request: JudgeRequest) -> Any:
    """The same call through the SDK's typed `create`, as the clients made it before."""
    params = {**conn.params, **request.params}
    if conn.protocol == "chat_completions":
        messages: list[Any] = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": request.prompt})
        return await sdk.chat.completions.create(
            model=conn.model,
            messages=messages,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(request),
                    "strict": True,
                    "schema": answer_schema(request),
                },
            },
            extra_body=params or None,
        )
    text: Any = {
        "format": {
            "type": "json_schema",
            "name": schema_name(request),
            "strict": True,
            "schema": answer_schema(request),
        }
    }
    return await sdk.responses.create(
        model=conn.model,
        input=[{"role": "user", "content": request.prompt}],
        instructions=request.system or openai.omit,
        text=text,
        extra_body={"store": False, **params},
    )


@pytest.mark.parametrize("protocol", ["chat_completions", "responses"])
def test_the_request_equals_the_typed_create(
    llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv(KEY_ENV, "parity-key")
    conn = spec(llm, protocol)
    path = "/v1/chat/completions" if protocol == "chat_completions" else "/v1/responses"

    async def run() -> list[tuple[Any, Any]]:
        client = make_client(conn)
        sdk = openai.AsyncOpenAI(
            api_key="parity-key",
            base_url=conn.base_url,
            timeout=conn.timeout_s,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(timeout=conn.timeout_s),
        )
        answers = []
        try:
            for request in REQUESTS:
                ours = await client.judge(request)
                theirs = await typed_create(sdk, conn, request)
                answers.append((ours, theirs))
        finally:
            await client.aclose()
            await sdk.close()
        return answers

    answers = asyncio.run(run())
    sent = llm.requests_for(path)
    assert len(sent) == 2 * len(REQUESTS)
    for i, (ours, theirs) in enumerate(answers):
        mine, typed = sent[2 * i], sent[2 * i + 1]
        assert mine["body"] == typed["body"], (protocol, i)
        headers = {k: v for k, v in mine["headers"].items() if k not in VOLATILE}
        assert headers == {k: v for k, v in typed["headers"].items() if k not in VOLATILE}, (protocol, i)
        assert headers["authorization"] == "Bearer parity-key"
        # the same answer, parsed by the SDK's own models in both cases
        if protocol == "chat_completions":
            assert theirs.choices[0].message.content is not None
            assert ours.model == theirs.model
            assert ours.input_tokens == theirs.usage.prompt_tokens
        else:
            assert theirs.output_text
            assert ours.model == theirs.model
            assert ours.input_tokens == theirs.usage.input_tokens
        assert ours.rationale
    # the bodies really carry the connection's and the request's params, and the system prompt where given
    first, second = sent[0]["body"], sent[2]["body"]
    assert first["temperature"] == 0.0 and first["metadata"] == {"team": "qa"}
    assert second["temperature"] == 0.5
    if protocol == "responses":
        assert first["instructions"] == "You are a strict grader." and "instructions" not in second
        assert first["store"] is False
    else:
        assert first["messages"][0] == {"role": "system", "content": "You are a strict grader."}
        assert second["messages"][0]["role"] == "user"
