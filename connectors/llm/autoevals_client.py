"""Run a Braintrust `autoevals` LLM classifier over a connection's `openai` SDK client.

`ask_autoevals` is what `SdkJudgeClient.judge` does with an `AutoevalsRequest`: inside the same per-attempt
deadline, on the same SDK client (the connection's `base_url`, key and timeout, the SDK's retries off), with the
same SDK error mapping onto the JudgeError tree. The evaluator (e.g. `autoevals.llm.Factuality`) is built per
call with the connection's model and an autoevals `LLMClient` whose `complete` is ours, because autoevals' own:

* picks the API by model name (Responses for `gpt-5*`, else Chat Completions); ours follows the connection's
  protocol: Chat Completions with the `select_choice` function tool forced, or Responses with the same tool as
  a Responses function tool (strict when its schema allows it; `store` off unless the params say otherwise);
* drops the usage; ours records tokens and the answering model, so the row gets tokens and cost;
* retries `RateLimitError` up to 100 times; the client's `RateLimitError` is set to an exception nothing
  raises, so a 429 reaches the executor, which retries honouring Retry-After within the connection's limits.

autoevals then reads the `select_choice` arguments into its score. An answer it cannot read (no
`select_choice` call, arguments that are not JSON, a choice outside the evaluator's) is JudgeBadResponse; a
request whose variables are missing (`problem`) or a connection that is not OpenAI's is JudgeRequestError,
raised before anything is sent.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import openai
from autoevals import llm as autoevals_llm
from autoevals.oai import LLMClient
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from connectors.llm.answers import (
    as_int,
    bad_answer,
    call_params,
    snippet,
    text_body_error,
    truncate_raw,
    who,
)
from dataflow.errors import JudgeError, JudgeRequestError
from dataflow.judging.autoevals_scorer import EVALUATORS, AutoevalsRequest, connection_problem
from dataflow.judging.client import JudgeAnswer
from dataflow.judging.connections import ConnectionSpec

TOOL = "select_choice"  # the function autoevals' classifiers ask the model to call
CHAT_RESERVED = frozenset(
    {"model", "messages", "response_format", "tools", "tool_choice", "functions", "function_call", "n"}
)
RESPONSES_RESERVED = frozenset(
    {"model", "input", "instructions", "text", "tools", "tool_choice", "background", "conversation",
     "previous_response_id", "prompt"}
)  # fmt: skip


class _NeverRaised(Exception):
    """Stands in for autoevals' RateLimitError, which it would retry up to 100 times by itself."""


async def ask_autoevals(spec: ConnectionSpec, sdk: object, request: AutoevalsRequest) -> JudgeAnswer:
    """One classifier call; raises the SDK's errors (mapped by the caller) or JudgeErrors."""
    if request.problem:
        raise JudgeRequestError(request.problem)
    problem = connection_problem(spec)
    if problem or not isinstance(sdk, openai.AsyncOpenAI):
        raise JudgeRequestError(problem or f"{who(spec)}: autoevals needs an openai.AsyncOpenAI client")
    if request.evaluator not in EVALUATORS:
        msg = f"unknown autoevals evaluator {request.evaluator!r}; supported: {', '.join(EVALUATORS)}"
        raise JudgeRequestError(msg)
    call = _Call(spec, sdk, request)
    try:
        evaluator = copy.copy(_evaluator(request.evaluator, spec.model))
        evaluator.client = call.llm_client()
        score = await evaluator.eval_async(**request.arguments)
    except (JudgeError, openai.OpenAIError):
        raise
    except Exception as exc:  # autoevals' own code failing must end in a score row, never escape the executor
        if call.arguments is not None:
            problem = f"autoevals {request.evaluator} could not read the answer ({type(exc).__name__}: {exc})"
            raise bad_answer(spec, problem, call.arguments) from exc
        if isinstance(exc, ValueError):  # the SDK's (a 200 whose body is not JSON...): mapped by the caller
            raise
        msg = f"{who(spec)}: autoevals {request.evaluator} failed before any answer: {type(exc).__name__}: {exc}"
        raise JudgeRequestError(snippet(msg, 2000)) from exc
    metadata: dict[str, Any] = dict(score.metadata or {})
    value = score.score
    return JudgeAnswer(
        score=None if value is None else float(value),
        choice=str(metadata["choice"]) if metadata.get("choice") is not None else None,
        rationale=str(metadata.get("rationale") or ""),
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        model=call.model or spec.model,
        raw=truncate_raw(call.arguments or ""),
    )


@functools.lru_cache(maxsize=64)
def _evaluator(name: str, model: str) -> Any:
    """The classifier without a client (building one parses its YAML template: ~1.5 ms); each call uses a
    shallow copy with its own client (autoevals reads the rest, never changes it)."""
    return getattr(autoevals_llm, name)(model=model)


class _Call:
    """One classifier call: autoevals' `complete`, sent on the connection's protocol, its usage recorded."""

    def __init__(self, spec: ConnectionSpec, sdk: openai.AsyncOpenAI, request: AutoevalsRequest) -> None:
        self.spec = spec
        self.sdk = sdk
        self.request = request
        self.arguments: str | None = None  # the select_choice arguments, once an answer came back
        self.model = ""
        self.input_tokens = 0
        self.output_tokens = 0

    def llm_client(self) -> Any:
        client = LLMClient(openai=self.sdk, complete=self.complete, is_async=True)
        # __post_init__ put autoevals' own `complete` and the SDK's RateLimitError back: undo both.
        client.complete = self.complete
        client.RateLimitError = _NeverRaised
        return client

    async def complete(self, **kwargs: Any) -> dict[str, Any]:
        """autoevals calls this with Chat Completions arguments (model, messages, tools, tool_choice)."""
        messages = kwargs["messages"]
        tools = kwargs.get("tools") or []
        if self.spec.protocol == "responses":
            self.arguments = await self._responses(messages, tools)
        else:
            self.arguments = await self._chat(messages, tools)
        call = {"id": "", "type": "function", "function": {"name": TOOL, "arguments": self.arguments}}
        return {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]
        }

    async def _chat(self, messages: Any, tools: Any) -> str:
        spec = self.spec
        params = call_params(spec, self.request, CHAT_RESERVED)
        completion = await self.sdk.chat.completions.create(
            model=spec.model,
            messages=messages,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": TOOL}},
            extra_body=params or None,
        )
        if isinstance(completion, str):  # a non-JSON content type: the SDK hands the body over as text
            raise text_body_error(spec, completion)
        self.model = completion.model or ""
        if completion.usage is not None:
            self.input_tokens = as_int(completion.usage.prompt_tokens)
            self.output_tokens = as_int(completion.usage.completion_tokens)
        first = completion.choices[0] if completion.choices else None
        for tool_call in (first.message.tool_calls or []) if first is not None else []:
            if (
                isinstance(tool_call, ChatCompletionMessageFunctionToolCall)
                and tool_call.function.name == TOOL
            ):
                return tool_call.function.arguments
        note = f" (finish_reason={first.finish_reason})" if first is not None else ""
        raise bad_answer(spec, f"the model did not call {TOOL}{note}", completion.model_dump_json())

    async def _responses(self, messages: Any, tools: Any) -> str:
        spec = self.spec
        params: dict[str, Any] = {"store": False, **call_params(spec, self.request, RESPONSES_RESERVED)}
        response = await self.sdk.responses.create(
            model=spec.model,
            input=messages,
            tools=[responses_tool(t) for t in tools],
            tool_choice={"type": "function", "name": TOOL},
            extra_body=params,
        )
        if isinstance(response, str):
            raise text_body_error(spec, response)
        self.model = response.model or ""
        if response.usage is not None:
            self.input_tokens = as_int(response.usage.input_tokens)
            self.output_tokens = as_int(response.usage.output_tokens)
        for item in response.output:
            if item.type == "function_call" and item.name == TOOL:
                return item.arguments
        note = f" (status={response.status})" if response.status and response.status != "completed" else ""
        raise bad_answer(spec, f"the model did not call {TOOL}{note}", response.model_dump_json())


def responses_tool(tool: Any) -> Any:
    """A Chat Completions function tool as a Responses function tool; strict when every property is required
    (autoevals' schemas are: `additionalProperties: false` is added, as strict mode demands)."""
    fn = tool["function"]
    parameters = dict(fn.get("parameters") or {})
    strict = set(parameters.get("required") or ()) == set(parameters.get("properties") or {})
    if strict:
        parameters["additionalProperties"] = False
    return {
        "type": "function",
        "name": fn["name"],
        "description": fn.get("description"),
        "parameters": parameters,
        "strict": strict,
    }
