"""Judge client over the official `anthropic` async SDK: Messages with a forced `submit_score` tool.

The answer schema is the tool's `input_schema`; `tool_choice` forces that tool, and the `tool_use` block's
`input` is the answer. `max_tokens` comes from params (default 1024).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic

from connectors.llm.answers import (
    TOOL_NAME,
    answer_schema,
    as_int,
    bad_answer,
    call_params,
    parse_answer,
    text_body_error,
    who,
)
from connectors.llm.errors import sdk_error
from connectors.llm.sdk import SdkJudgeClient, pool_limits
from dataflow.errors import JudgeError, JudgeRequestError
from dataflow.judging.client import JudgeAnswer, JudgeRequest

DEFAULT_MAX_TOKENS = 1024

_SHAPE_ERRORS = (AttributeError, TypeError, IndexError, KeyError)


class AnthropicMessagesClient(SdkJudgeClient[anthropic.AsyncAnthropic]):
    """Anthropic Messages; the answer is the input of a forced `submit_score` tool call."""

    RESERVED = frozenset({"model", "messages", "system", "tools", "tool_choice"})

    def _new_sdk(self, api_key: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=self.spec.base_url,
            timeout=self.spec.timeout_s,
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(
                timeout=self.spec.timeout_s,
                limits=pool_limits(self.spec, anthropic.DEFAULT_CONNECTION_LIMITS),
            ),
        )

    async def _close_sdk(self, sdk: anthropic.AsyncAnthropic) -> None:
        await sdk.close()

    def _resources(self, sdk: anthropic.AsyncAnthropic) -> object:
        return sdk.messages

    def _map_sdk_error(self, exc: Exception) -> JudgeError | None:
        return sdk_error(self.spec, exc, anthropic, anthropic.AnthropicError)

    async def _ask(self, sdk: anthropic.AsyncAnthropic, request: JudgeRequest) -> JudgeAnswer:
        spec = self.spec
        params = call_params(spec, request, self.RESERVED)
        max_tokens = params.pop("max_tokens", DEFAULT_MAX_TOKENS)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            msg = f"{who(spec)}: params.max_tokens must be a positive integer, got {max_tokens!r}"
            raise JudgeRequestError(msg)
        tool: Any = {
            "name": TOOL_NAME,
            "description": "Submit the verdict on the output being judged.",
            "input_schema": answer_schema(request),
        }
        message = await sdk.messages.create(
            model=spec.model,
            max_tokens=max_tokens,
            system=request.system or anthropic.omit,
            messages=[{"role": "user", "content": request.prompt}],
            tools=[tool],
            tool_choice={"type": "tool", "name": TOOL_NAME},
            extra_body=params or None,
        )
        if isinstance(message, str):  # a non-JSON content type: the SDK hands the body over as text
            raise text_body_error(spec, message)
        try:
            usage = message.usage
            input_tokens = (
                as_int(usage.input_tokens)
                + as_int(usage.cache_creation_input_tokens)
                + as_int(usage.cache_read_input_tokens)
            )
            output_tokens = as_int(usage.output_tokens)
            note = f"stop_reason={message.stop_reason}" if message.stop_reason != "tool_use" else ""
            block = next((b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME), None)
            if block is None:
                text = "".join(b.text for b in message.content if b.type == "text")
                problem = f"the answer has no {TOOL_NAME} tool call" + (f" ({note})" if note else "")
                raise bad_answer(spec, problem, text)
            payload: object = block.input
            if not isinstance(payload, str | Mapping):
                raise bad_answer(spec, "the tool input is not a JSON object", payload)
            return parse_answer(
                spec,
                request,
                payload,
                model=message.model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                note=note,
            )
        except _SHAPE_ERRORS as exc:
            raise bad_answer(spec, f"the message does not have the expected shape ({exc})", message) from exc
