"""Judge clients over the official `openai` async SDK: Chat Completions and Responses, with strict JSON schemas.

Chat Completions asks with `response_format={"type": "json_schema", ...}` and reads the message content;
Responses asks with `text.format` (the system prompt as `instructions`, `store` off unless params say
otherwise) and reads `output_text`. Both work with any OpenAI-compatible `base_url`.
"""

from __future__ import annotations

from typing import Any

import openai
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from connectors.llm.answers import (
    answer_schema,
    as_int,
    bad_answer,
    call_params,
    parse_answer,
    schema_name,
    text_body_error,
)
from connectors.llm.errors import sdk_error
from connectors.llm.sdk import SdkJudgeClient, pool_limits
from dataflow.errors import JudgeError
from dataflow.judging.client import JudgeAnswer, JudgeRequest

_SHAPE_ERRORS = (AttributeError, TypeError, IndexError, KeyError)

# The calls go through the SDK client's own `post` (what `chat.completions.create` and `responses.create`
# end in: same auth, base URL, headers, timeouts, error classes, and the answer parsed into the SDK's
# `ChatCompletion` / `Response`), with a body built here rather than by `create`'s recursive transform of
# typed params: that transform took ~40 % of a call's CPU (bench/sdk_cost.py) and does nothing to plain
# strings and dicts. `security` is what `create` passes to get the bearer key attached.
# tests/integration/test_llm_request_parity.py checks that the requests sent equal `create`'s.
REQUEST_OPTIONS: openai.RequestOptions = {"security": {"bearer_auth": True}}


class _OpenAIClient(SdkJudgeClient[openai.AsyncOpenAI]):
    def _new_sdk(self, api_key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.spec.base_url,
            timeout=self.spec.timeout_s,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(
                timeout=self.spec.timeout_s,
                limits=pool_limits(self.spec, openai.DEFAULT_CONNECTION_LIMITS),
            ),
        )

    async def _close_sdk(self, sdk: openai.AsyncOpenAI) -> None:
        await sdk.close()

    def _map_sdk_error(self, exc: Exception) -> JudgeError | None:
        return sdk_error(self.spec, exc, openai, openai.OpenAIError)


class OpenAIChatClient(_OpenAIClient):
    """OpenAI Chat Completions with `response_format` json_schema (strict)."""

    RESERVED = frozenset(
        {"model", "messages", "response_format", "tools", "tool_choice", "functions", "function_call", "n"}
    )

    def _resources(self, sdk: openai.AsyncOpenAI) -> object:
        return sdk.chat.completions

    async def _ask(self, sdk: openai.AsyncOpenAI, request: JudgeRequest) -> JudgeAnswer:
        spec = self.spec
        messages: list[Any] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {
            "model": spec.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(request),
                    "strict": True,
                    "schema": answer_schema(request),
                },
            },
            **call_params(spec, request, self.RESERVED),
        }
        completion = await sdk.post(
            "/chat/completions", body=body, cast_to=ChatCompletion, options=REQUEST_OPTIONS
        )
        if isinstance(completion, str):  # a non-JSON content type: the SDK hands the body over as text
            raise text_body_error(spec, completion)
        try:
            if not completion.choices:
                raise bad_answer(spec, "the completion has no choices", completion.model_dump_json())
            first = completion.choices[0]
            text = first.message.content or ""
            note = ""
            if first.message.refusal:
                note = f"the model refused: {first.message.refusal}"
            elif first.finish_reason in ("length", "content_filter"):
                note = f"finish_reason={first.finish_reason}"
            usage = completion.usage
            return parse_answer(
                spec,
                request,
                text,
                model=completion.model,
                input_tokens=as_int(usage.prompt_tokens) if usage else 0,
                output_tokens=as_int(usage.completion_tokens) if usage else 0,
                note=note,
            )
        except _SHAPE_ERRORS as exc:
            raise bad_answer(
                spec, f"the completion does not have the expected shape ({exc})", completion
            ) from exc


class OpenAIResponsesClient(_OpenAIClient):
    """OpenAI Responses with `text.format` json_schema (strict); the system prompt goes in `instructions`."""

    RESERVED = frozenset(
        {
            "model",
            "input",
            "instructions",
            "text",
            "tools",
            "tool_choice",
            "background",
            "conversation",
            "previous_response_id",
            "prompt",
        }
    )

    def _resources(self, sdk: openai.AsyncOpenAI) -> object:
        return sdk.responses

    async def _ask(self, sdk: openai.AsyncOpenAI, request: JudgeRequest) -> JudgeAnswer:
        spec = self.spec
        params: dict[str, Any] = {"store": False, **call_params(spec, request, self.RESERVED)}
        # text options other than the format (e.g. verbosity) may come from params
        text_options = {**spec.params, **request.params}.get("text")
        text: dict[str, Any] = dict(text_options) if isinstance(text_options, dict) else {}
        text["format"] = {
            "type": "json_schema",
            "name": schema_name(request),
            "strict": True,
            "schema": answer_schema(request),
        }
        body: dict[str, Any] = {
            "model": spec.model,
            "input": [{"role": "user", "content": request.prompt}],
            "text": text,
            **({"instructions": request.system} if request.system else {}),
            **params,
        }
        response = await sdk.post("/responses", body=body, cast_to=Response, options=REQUEST_OPTIONS)
        if isinstance(response, str):
            raise text_body_error(spec, response)
        try:
            notes: list[str] = []
            if response.status and response.status != "completed":
                notes.append(f"status={response.status}")
            if response.incomplete_details is not None and response.incomplete_details.reason:
                notes.append(f"incomplete: {response.incomplete_details.reason}")
            if response.error is not None:
                notes.append(f"error: {response.error.message}")
            for item in response.output:
                if item.type == "message":
                    for part in item.content:
                        if part.type == "refusal":
                            notes.append(f"the model refused: {part.refusal}")
            usage = response.usage
            return parse_answer(
                spec,
                request,
                response.output_text,
                model=response.model,
                input_tokens=as_int(usage.input_tokens) if usage else 0,
                output_tokens=as_int(usage.output_tokens) if usage else 0,
                note="; ".join(notes),
            )
        except _SHAPE_ERRORS as exc:
            raise bad_answer(
                spec, f"the response does not have the expected shape ({exc})", response
            ) from exc
