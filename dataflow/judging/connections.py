"""LLM connections: which provider, protocol, model and key a judge uses, and its limits and prices.

Keys are never stored or returned: a connection names the environment variable that holds its key.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal
from typing import Protocol as TypingProtocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataflow.errors import TracejudgeError
from dataflow.polling import Poller

logger = logging.getLogger(__name__)

Provider = Literal["openai", "anthropic"]
Protocol = Literal["chat_completions", "responses", "messages"]


class ConnectionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field("", description="Assigned when created; stable across changes.")
    name: str = Field(..., min_length=1, max_length=200, description="Unique; rules refer to it by name.")
    provider: Provider
    protocol: Protocol = Field(..., description="chat_completions|responses (openai), messages (anthropic).")
    base_url: str | None = Field(
        None, description="Any OpenAI-compatible or Anthropic endpoint; None: default."
    )
    api_key_env: str = Field(..., min_length=1, description="Name of the env var holding the API key.")
    model: str = Field(..., min_length=1)
    params: dict[str, Any] = Field(
        default_factory=dict, description="Default request parameters (temperature...)."
    )
    timeout_s: float = Field(60.0, gt=0, description="Per attempt, seconds.")
    max_retries: int = Field(
        3, ge=0, le=20, description="Retries after the first attempt (429, 5xx, timeouts)."
    )
    max_concurrency: int = Field(64, ge=1, le=100_000, description="Calls in flight at once.")
    requests_per_minute: float = Field(0, ge=0, description="Token-bucket request rate; 0: unlimited.")
    tokens_per_minute: float = Field(
        0, ge=0, description="Token-bucket token rate (input+output); 0: unlimited."
    )
    input_price_per_mtok: float = Field(0, ge=0, description="USD per million input tokens.")
    output_price_per_mtok: float = Field(0, ge=0, description="USD per million output tokens.")
    version: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _protocol_matches_provider(self) -> ConnectionSpec:
        allowed = {"openai": ("chat_completions", "responses"), "anthropic": ("messages",)}[self.provider]
        if self.protocol not in allowed:
            msg = f"protocol {self.protocol!r} is not available for provider {self.provider!r} ({', '.join(allowed)})"
            raise ValueError(msg)
        return self

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def key_problem(self) -> str:
        """'' when the key is set, else a sentence saying which env var to set."""
        if self.api_key():
            return ""
        return f"connection {self.name!r}: environment variable {self.api_key_env} is not set (it holds the API key)"

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_price_per_mtok + output_tokens * self.output_price_per_mtok) / 1e6


class ConnectionSource(TypingProtocol):
    def fingerprint(self) -> str: ...

    def load(self) -> list[ConnectionSpec]: ...


class ConnectionRegistry:
    """The live connections by name, reloaded when the store changes (like the rule registry)."""

    def __init__(self, source: ConnectionSource, reload_interval_s: float = 2.0) -> None:
        self._source = source
        self._fingerprint: str | None = None
        self._by_name: dict[str, ConnectionSpec] = {}
        self._poller = Poller("connection-reloader", reload_interval_s, self.refresh, self._reload_failed)

    def get(self, name: str) -> ConnectionSpec | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def refresh(self, force: bool = False) -> bool:
        fingerprint = self._source.fingerprint()
        if fingerprint == self._fingerprint and not force:
            return False
        self._by_name = {c.name: c for c in self._source.load()}
        self._fingerprint = fingerprint
        for conn in self._by_name.values():
            if conn.key_problem():
                logger.warning("%s", conn.key_problem())
        return True

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def _reload_failed(self, exc: TracejudgeError) -> None:
        logger.warning("reloading connections failed: %s", exc)
