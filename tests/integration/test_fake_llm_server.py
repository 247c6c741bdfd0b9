"""The fake LLM server, driven by the REAL openai / anthropic SDKs (and autoevals) over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import autoevals
import httpx
import openai
import pytest
from autoevals.llm import Factuality
from pydantic import BaseModel, Field

from tests.fakes.llm_server import FakeLLMServer, default_scorer
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]

SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "reasoning": {"type": "string"},
        "label": {"type": "string", "enum": ["good", "meh", "bad"]},
        "passed": {"type": "boolean"},
    },
    "required": ["score", "reasoning", "label", "passed"],
    "additionalProperties": False,
}

MATCH = "Grade this.\n<expected>Paris</expected>\n<output>The capital is PARIS.</output>"
MISMATCH = "Grade this.\n<expected>Paris</expected>\n<output>The capital is Lyon.</output>"


def oai(llm: FakeLLMServer, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 10.0)
    return openai.OpenAI(base_url=llm.openai_base_url, api_key="test-key", **kw)


def ant(llm: FakeLLMServer, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 10.0)
    return anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="test-key", **kw)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# ---- scoring rule -------------------------------------------------------------------------------------------


def test_default_scorer_rule() -> None:
    assert default_scorer(MATCH, 0, 1)[0] == 1
    assert default_scorer(MISMATCH, 0, 1)[0] == 0
    # case-insensitive tags, DOTALL, expected stripped
    assert default_scorer("<EXPECTED>\n  yes \n</Expected><OUTPUT>well\nYES indeed</OUTPUT>", 1, 5)[0] == 5
    # no <expected>: max when output non-empty and not "wrong"
    assert default_scorer("<output>fine answer</output>", 0, 10)[0] == 10
    assert default_scorer("<output>this is Wrong.</output>", 0, 10)[0] == 0
    assert default_scorer("<output>  </output>", 0, 10)[0] == 0
    assert default_scorer("no tags at all", 0, 10)[0] == 0
    _, rationale = default_scorer(MISMATCH, 0, 1)
    assert "paris" in rationale


# ---- OpenAI Chat Completions --------------------------------------------------------------------------------


def test_chat_plain_echo_usage_and_log(llm: FakeLLMServer) -> None:
    prompt = "hello there, fake"
    r = oai(llm).chat.completions.create(
        model="gpt-x", messages=[{"role": "system", "content": "be brief"}, *user(prompt)]
    )
    assert r.choices[0].message.content == "echo: " + prompt
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-x"
    assert r.usage is not None
    assert r.usage.prompt_tokens == math.ceil(len("be brief\n" + prompt) / 4)
    assert r.usage.completion_tokens == math.ceil(len("echo: " + prompt) / 4)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    [req] = llm.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer test-key"
    assert req["body"]["messages"][1]["content"] == prompt
    assert req["status"] == 200
    assert isinstance(req["t"], float)


def test_chat_configured_reply(llm: FakeLLMServer) -> None:
    llm.set_reply("fixed answer")
    r = oai(llm).chat.completions.create(model="m", messages=user("anything"))
    assert r.choices[0].message.content == "fixed answer"


def test_chat_json_schema_scores_max_and_min(llm: FakeLLMServer) -> None:
    client = oai(llm)
    rf = {"type": "json_schema", "json_schema": {"name": "grade", "schema": SCORE_SCHEMA, "strict": True}}
    good = json.loads(
        client.chat.completions.create(model="m", messages=user(MATCH), response_format=rf)
        .choices[0]
        .message.content
        or ""
    )
    bad = json.loads(
        client.chat.completions.create(model="m", messages=user(MISMATCH), response_format=rf)
        .choices[0]
        .message.content
        or ""
    )
    assert good == {"score": 5, "reasoning": good["reasoning"], "label": "good", "passed": True}
    assert bad["score"] == 1 and bad["label"] == "bad" and bad["passed"] is False
    assert "expected" in good["reasoning"]


class Grade(BaseModel):
    score: float = Field(ge=0, le=1)
    explanation: str


def test_chat_parse_with_pydantic_model(llm: FakeLLMServer) -> None:
    parsed = oai(llm).chat.completions.parse(model="m", messages=user(MATCH), response_format=Grade)
    grade = parsed.choices[0].message.parsed
    assert grade is not None and grade.score == 1.0 and grade.explanation
    rf = llm.requests[-1]["body"]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True


def test_chat_tool_call(llm: FakeLLMServer) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "other", "parameters": {"type": "object", "properties": {}}},
        },
        {"type": "function", "function": {"name": "submit_grade", "parameters": SCORE_SCHEMA}},
    ]
    r = oai(llm).chat.completions.create(
        model="m",
        messages=user(MISMATCH),
        tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "submit_grade"}},
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "submit_grade"
    args = json.loads(call.function.arguments)
    assert args["score"] == 1 and args["label"] == "bad"


def test_chat_streaming(llm: FakeLLMServer) -> None:
    prompt = "stream a rather long answer back to me please"
    stream = oai(llm).chat.completions.create(
        model="m", messages=user(prompt), stream=True, stream_options={"include_usage": True}
    )
    pieces: list[str] = []
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == "echo: " + prompt
    assert len([p for p in pieces if p]) > 1
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == math.ceil(len("echo: " + prompt) / 4)


# ---- OpenAI Responses ---------------------------------------------------------------------------------------


def test_responses_plain(llm: FakeLLMServer) -> None:
    client = oai(llm)
    r = client.responses.create(model="gpt-5-mini", input="what is up", instructions="answer briefly")
    assert r.output_text == "echo: what is up"
    assert r.status == "completed"
    assert r.usage is not None
    assert r.usage.input_tokens == math.ceil(len("answer briefly\nwhat is up") / 4)
    assert r.usage.output_tokens == math.ceil(len("echo: what is up") / 4)
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    r2 = client.responses.create(
        model="m",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
    )
    assert r2.output_text == "echo: second"


def test_responses_json_schema(llm: FakeLLMServer) -> None:
    client = oai(llm)
    fmt = {"type": "json_schema", "name": "grade", "schema": SCORE_SCHEMA, "strict": True}
    good = client.responses.create(model="m", input=MATCH, text={"format": fmt})  # type: ignore[arg-type]
    bad = client.responses.create(model="m", input=MISMATCH, text={"format": fmt})  # type: ignore[arg-type]
    assert json.loads(good.output_text)["score"] == 5
    assert json.loads(bad.output_text)["score"] == 1
    content = good.output[0].content[0]  # type: ignore[union-attr]
    assert json.loads(content.text)["label"] == "good"  # type: ignore[union-attr]


def test_responses_parse_with_pydantic_model(llm: FakeLLMServer) -> None:
    r = oai(llm).responses.parse(model="m", input=MISMATCH, text_format=Grade)
    assert r.output_parsed is not None and r.output_parsed.score == 0.0


def test_responses_function_tool_required(llm: FakeLLMServer) -> None:
    tools = [{"type": "function", "name": "select_choice", "parameters": SCORE_SCHEMA, "strict": True}]
    r = oai(llm).responses.create(
        model="m",
        input=[{"role": "user", "content": MATCH}],
        tools=tools,
        tool_choice="required",  # type: ignore[arg-type]
    )
    [item] = r.output
    assert item.type == "function_call"
    assert item.name == "select_choice" and item.call_id
    assert json.loads(item.arguments)["score"] == 5


# ---- Anthropic Messages -------------------------------------------------------------------------------------


def test_anthropic_plain(llm: FakeLLMServer) -> None:
    m = ant(llm).messages.create(
        model="claude-x",
        max_tokens=100,
        system="be nice",
        messages=user("hi claude"),  # type: ignore[arg-type]
    )
    assert m.content[0].type == "text" and m.content[0].text == "echo: hi claude"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == math.ceil(len("be nice\nhi claude") / 4)
    assert m.usage.output_tokens == math.ceil(len("echo: hi claude") / 4)
    req = llm.requests[-1]
    assert req["path"] == "/v1/messages"
    assert "anthropic-version" in req["headers"]
    # anthropic 2.x sends api_key as "Authorization: Bearer", not x-api-key
    assert req["headers"].get("authorization") == "Bearer test-key" or req["headers"].get("x-api-key")


def test_anthropic_forced_tool(llm: FakeLLMServer) -> None:
    client = ant(llm)
    tools = [
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
        {"name": "grade", "description": "grade it", "input_schema": SCORE_SCHEMA},
    ]
    for text, score in ((MATCH, 5), (MISMATCH, 1)):
        m = client.messages.create(
            model="c",
            max_tokens=100,
            system=[{"type": "text", "text": "You grade."}],
            messages=user(text),  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            tool_choice={"type": "tool", "name": "grade"},
        )
        assert m.stop_reason == "tool_use"
        [block] = m.content
        assert block.type == "tool_use" and block.name == "grade"
        assert isinstance(block.input, dict) and block.input["score"] == score


def test_models_endpoint(llm: FakeLLMServer) -> None:
    ids = [m.id for m in oai(llm).models.list()]
    assert "fake-model" in ids
    aids = [m.id for m in ant(llm).models.list()]
    assert "fake-model" in aids


# ---- faults: retries, timeouts, malformed, bad structured ---------------------------------------------------


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_429_retry_after_honoured_by_sdk_retry(llm: FakeLLMServer, sdk: str) -> None:
    llm.fail_next(status=429, retry_after=1.5)
    if sdk == "openai":
        r = oai(llm, max_retries=2).chat.completions.create(model="m", messages=user("after 429"))
        assert r.choices[0].message.content == "echo: after 429"
    else:
        m = ant(llm, max_retries=2).messages.create(model="c", max_tokens=10, messages=user("after 429"))
        assert m.content[0].text == "echo: after 429"  # type: ignore[union-attr]
    first, second = llm.requests
    assert first["status"] == 429 and first["fault"]["retry_after"] == 1.5
    assert second["status"] == 200
    assert second["t"] - first["t"] >= 1.5 - 0.02
    assert second["headers"]["x-stainless-retry-count"] == "1"


def test_429_error_shape_without_retries(llm: FakeLLMServer) -> None:
    llm.fail_next(status=429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as oe:
        oai(llm).chat.completions.create(model="m", messages=user("x"))
    assert oe.value.status_code == 429
    assert oe.value.response.headers["retry-after"] == "2"
    assert oe.value.response.headers["retry-after-ms"] == "2000"
    assert oe.value.code == "rate_limit_exceeded"
    llm.fail_next(status=429, retry_after=2)
    with pytest.raises(anthropic.RateLimitError) as ae:
        ant(llm).messages.create(model="c", max_tokens=10, messages=user("x"))
    assert isinstance(ae.value.body, dict) and ae.value.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(("sdk", "status"), [("openai", 500), ("anthropic", 503)])
def test_5xx_retried_then_success(llm: FakeLLMServer, sdk: str, status: int) -> None:
    llm.fail_next(status=status)
    if sdk == "openai":
        r = oai(llm, max_retries=2).chat.completions.create(model="m", messages=user("x"))
        assert r.choices[0].message.content == "echo: x"
    else:
        m = ant(llm, max_retries=2).messages.create(model="c", max_tokens=10, messages=user("x"))
        assert m.content[0].text == "echo: x"  # type: ignore[union-attr]
    assert [r["status"] for r in llm.requests] == [status, 200]


def test_5xx_without_retries_raises(llm: FakeLLMServer) -> None:
    llm.fail_next(status=500, times=2)
    with pytest.raises(openai.InternalServerError):
        oai(llm).chat.completions.create(model="m", messages=user("x"))
    with pytest.raises(anthropic.InternalServerError):
        ant(llm).messages.create(model="c", max_tokens=10, messages=user("x"))


def test_timeout_fault_raises_sdk_timeout(llm: FakeLLMServer) -> None:
    llm.fail_next(timeout=30, times=2)
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oai(llm, timeout=0.5).chat.completions.create(model="m", messages=user("x"))
    with pytest.raises(anthropic.APITimeoutError):
        ant(llm, timeout=0.5).messages.create(model="c", max_tokens=10, messages=user("x"))
    assert time.monotonic() - t0 < 10
    # the server noticed the client going away and freed the held request (status 499)
    eventually(lambda: all(r["status"] is not None for r in llm.requests), timeout=10, interval=0.05)
    assert [r["status"] for r in llm.requests] == [499, 499]
    # and it still answers at once
    assert (
        oai(llm).chat.completions.create(model="m", messages=user("y")).choices[0].message.content
        == "echo: y"
    )


def test_timeout_fault_then_sdk_retry_succeeds(llm: FakeLLMServer) -> None:
    llm.fail_next(timeout=30)
    r = oai(llm, timeout=0.5, max_retries=1).chat.completions.create(model="m", messages=user("x"))
    assert r.choices[0].message.content == "echo: x"
    assert len(llm.requests) == 2


def test_malformed_json_surfaces_as_error(llm: FakeLLMServer) -> None:
    # Both SDKs let the raw json.JSONDecodeError (a ValueError) through: it is not an openai/anthropic APIError.
    llm.fail_next(malformed=True, times=2)
    with pytest.raises(json.JSONDecodeError):
        oai(llm).chat.completions.create(model="m", messages=user("x"))
    with pytest.raises(json.JSONDecodeError):
        ant(llm).messages.create(model="c", max_tokens=10, messages=user("x"))
    llm.fail_next(malformed=True)
    with pytest.raises(json.JSONDecodeError):
        list(oai(llm).chat.completions.create(model="m", messages=user("x"), stream=True))


def test_bad_structured_modes(llm: FakeLLMServer) -> None:
    client = oai(llm)
    rf = {"type": "json_schema", "json_schema": {"name": "grade", "schema": SCORE_SCHEMA}}

    def content() -> str:
        r = client.chat.completions.create(model="m", messages=user(MATCH), response_format=rf)  # type: ignore[arg-type]
        assert r.choices[0].finish_reason == "stop"
        return r.choices[0].message.content or ""

    llm.fail_next(bad_structured=True)
    assert "score" not in json.loads(content())
    llm.fail_next(bad_structured="out_of_range")
    assert json.loads(content())["score"] > 5
    llm.fail_next(bad_structured="not_json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(content())
    assert json.loads(content())["score"] == 5  # script used up: valid again

    # Responses function tool and Anthropic forced tool
    llm.fail_next(bad_structured=True, path="/v1/responses")
    llm.fail_next(bad_structured="out_of_range", path="/v1/messages")
    r = client.responses.create(
        model="m",
        input=MATCH,
        tool_choice="required",
        tools=[{"type": "function", "name": "g", "parameters": SCORE_SCHEMA, "strict": True}],  # type: ignore[list-item]
    )
    assert "score" not in json.loads(r.output[0].arguments)  # type: ignore[union-attr]
    m = ant(llm).messages.create(
        model="c",
        max_tokens=10,
        messages=user(MATCH),
        tools=[{"name": "g", "input_schema": SCORE_SCHEMA}],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "g"},
    )
    assert m.content[0].input["score"] > 5  # type: ignore[union-attr]


def test_fault_path_scope_and_fifo(llm: FakeLLMServer) -> None:
    llm.fail_next(status=503, path="/v1/messages")
    llm.fail_next(status=500)
    llm.fail_next(status=429)
    with pytest.raises(openai.InternalServerError):  # the first fault matching /v1/models is the 500
        oai(llm).models.list()
    assert [r["status"] for r in llm.requests] == [500]
    with pytest.raises(openai.RateLimitError):
        oai(llm).chat.completions.create(model="m", messages=user("x"))
    assert (
        oai(llm).chat.completions.create(model="m", messages=user("x")).choices[0].message.content
        == "echo: x"
    )
    assert llm.pending_faults == [{"status": 503, "path": "/v1/messages"}]
    with pytest.raises(anthropic.InternalServerError) as e:
        ant(llm).messages.create(model="c", max_tokens=10, messages=user("x"))
    assert e.value.status_code == 503
    assert llm.pending_faults == []


def test_401_without_key(llm: FakeLLMServer) -> None:
    with pytest.raises(openai.AuthenticationError) as oe:
        oai(llm).chat.completions.create(
            model="m", messages=user("x"), extra_headers={"Authorization": openai.Omit()}
        )
    assert oe.value.status_code == 401
    assert isinstance(oe.value.body, dict) and oe.value.body["type"] == "invalid_request_error"
    no_key = anthropic.Anthropic(
        base_url=llm.anthropic_base_url,
        api_key=None,
        auth_token=None,
        max_retries=0,
        default_headers={"Authorization": anthropic.Omit()},
    )
    with pytest.raises(anthropic.AuthenticationError) as ae:
        no_key.messages.create(model="c", max_tokens=10, messages=user("x"))
    assert isinstance(ae.value.body, dict) and ae.value.body["error"]["type"] == "authentication_error"
    # raw HTTP, each API's error shape; x-api-key alone is accepted
    with httpx.Client(base_url=llm.base_url) as h:
        for path in ("/v1/chat/completions", "/v1/responses", "/chat/completions"):
            resp = h.post(path, json={"model": "m", "messages": user("x"), "input": "x"})
            assert resp.status_code == 401 and "message" in resp.json()["error"]
        resp = h.post("/v1/messages", json={"model": "c", "max_tokens": 5, "messages": user("x")})
        assert resp.status_code == 401 and resp.json()["type"] == "error"
        resp = h.post(
            "/v1/messages",
            headers={"x-api-key": "k"},
            json={"model": "c", "max_tokens": 5, "messages": user("x")},
        )
        assert resp.status_code == 200
    assert [r["status"] for r in llm.requests][-6:] == [401, 401, 401, 401, 401, 200]


def test_required_api_key() -> None:
    with FakeLLMServer(api_key="right") as s:
        with pytest.raises(openai.AuthenticationError) as e:
            oai(s).chat.completions.create(model="m", messages=user("x"))
        assert e.value.code == "invalid_api_key"
        ok = openai.OpenAI(base_url=s.openai_base_url, api_key="right", max_retries=0)
        assert (
            ok.chat.completions.create(model="m", messages=user("x")).choices[0].message.content == "echo: x"
        )


def test_pluggable_scorer() -> None:
    seen: list[tuple[str, float, float]] = []

    def scorer(text: str, lo: float, hi: float) -> tuple[float, str]:
        seen.append((text, lo, hi))
        return 3, "always three"

    with FakeLLMServer(scorer=scorer) as s:
        rf = {"type": "json_schema", "json_schema": {"name": "g", "schema": SCORE_SCHEMA}}
        r = oai(s).chat.completions.create(model="m", messages=user("judge me"), response_format=rf)  # type: ignore[arg-type]
        out = json.loads(r.choices[0].message.content or "")
    assert out["score"] == 3 and out["reasoning"] == "always three" and out["label"] == "meh"
    assert seen == [("judge me", 1.0, 5.0)]


# ---- HTTP control, latency, concurrency, CLI ----------------------------------------------------------------


def test_http_control_endpoints(llm: FakeLLMServer) -> None:
    with httpx.Client(base_url=llm.base_url) as h:
        state = h.post(
            "/_control/faults",
            json={
                "latency": 0.3,
                "reply": "canned",
                "faults": [{"status": 500, "path": "/v1/chat"}],
            },
        ).json()
        assert state["latency"] == 0.3 and state["faults"] == [{"status": 500, "path": "/v1/chat"}]
        assert h.post("/_control/faults", json={"faults": [{"nope": 1}]}).status_code == 400
        client = oai(llm, max_retries=1)
        t0 = time.monotonic()
        r = client.chat.completions.create(model="m", messages=user("x"))
        assert r.choices[0].message.content == "canned"
        assert time.monotonic() - t0 >= 0.6  # latency on both the 500 and the retry
        log = h.get("/_control/requests").json()
        assert log["count"] == 2 and [q["status"] for q in log["requests"]] == [500, 200]
        assert log["requests"][0]["body"]["messages"] == user("x")
        assert h.get("/_control/requests", params={"since": log["requests"][0]["seq"]}).json()["count"] == 1
        assert h.get("/_control/requests", params={"path": "/v1/messages"}).json()["count"] == 0
        assert h.post("/_control/reset").json() == {"ok": True}
        assert h.get("/_control/faults").json() == {"latency": 0.0, "reply": None, "faults": []}
        assert h.get("/_control/requests").json()["count"] == 0


def test_latency_is_cheap_under_concurrency(llm: FakeLLMServer) -> None:
    """1,000 requests held 1 s each at once finish in about 1 s: one coroutine per request, not a thread."""
    llm.set_latency(1.0)
    llm.record_bodies = False
    n = 1000
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection(llm.host, llm.port)
        writer.write(head.encode() + body)
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data.split(b" ", 2)[1]

    async def run() -> list[bytes]:
        return await asyncio.gather(*[one() for _ in range(n)])

    t0 = time.monotonic()
    try:
        statuses = asyncio.run(run())
    finally:
        llm.record_bodies = True
    elapsed = time.monotonic() - t0
    assert statuses == [b"200"] * n
    assert 1.0 <= elapsed < 10  # all held at once, not one after another
    assert len(llm.requests) == n and llm.requests[0]["body"] is None


def test_cli_prints_ready_and_serves() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.llm_server", "--port", "0", "--reply", "from cli"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(line.split()[1])
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=5)
        assert (
            client.chat.completions.create(model="m", messages=user("x")).choices[0].message.content
            == "from cli"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)


# ---- autoevals ----------------------------------------------------------------------------------------------


def test_autoevals_factuality_against_fake(llm: FakeLLMServer) -> None:
    autoevals.init(client=openai.OpenAI(base_url=llm.openai_base_url, api_key="x", max_retries=0, timeout=10))
    try:
        # Factuality's tool has no "score": it picks an enum `choice` in A..E. The fake picks the first value
        # for its maximum (tags match -> "A", worth 0.4) and the last for its minimum ("E", worth 1).
        good = Factuality()(
            output="<output>Paris</output>", expected="<expected>paris</expected>", input="Capital of France?"
        )
        bad = Factuality()(
            output="<output>Lyon</output>", expected="<expected>paris</expected>", input="Capital of France?"
        )
    finally:
        autoevals.init(client=None)
    assert good.metadata["choice"] == "A" and good.score == 0.4
    assert bad.metadata["choice"] == "E" and bad.score == 1
    assert good.metadata["rationale"]
    req = llm.requests[0]
    assert req["path"] == "/v1/responses"
    assert req["body"]["tool_choice"] == "required"
    assert [t["name"] for t in req["body"]["tools"]] == ["select_choice"]
