"""`make_client`: the `JudgeClient` for a connection, and `load_sdks`, which imports the clients up front.

Only this module imports the provider clients, and only when a connection needs them, so the CLI starts
without the SDKs; `tracejudge run` imports them at start-up (`load_sdks`), not on the judge loop at the first
call. What the clients share lives in `answers` (the answer schema and parsing), `errors` (SDK errors onto
the JudgeError tree) and `sdk` (the SDK client life cycle).
"""

from __future__ import annotations

import importlib

from connectors.llm.sdk import SdkJudgeClient
from dataflow.errors import ConfigError
from dataflow.judging.client import JudgeClient
from dataflow.judging.connections import ConnectionSpec, Protocol, Provider

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
