"""A TEST FAKE of the OpenAI and Anthropic HTTP APIs, for running the real SDKs offline.

Nothing here talks to a real model. The server answers deterministically, in the wire shapes the official
``openai`` and ``anthropic`` Python SDKs parse, so tests (and benchmarks) can drive the real client code:

* OpenAI Chat Completions ``POST /v1/chat/completions`` (plain text, ``stream=true`` SSE, ``response_format``
  ``json_schema`` / ``json_object``, function ``tools`` + ``tool_choice``), usage in prompt/completion tokens.
* OpenAI Responses ``POST /v1/responses`` (``input`` string or message list, ``instructions``,
  ``text.format`` ``json_schema``, function ``tools`` + ``tool_choice``), usage in input/output tokens.
* Anthropic Messages ``POST /v1/messages`` (``system``, ``messages``, ``tools`` + ``tool_choice``,
  ``output_config.format`` ``json_schema``), ``stop_reason``, usage in input/output tokens.
* ``GET /v1/models`` (OpenAI list shape, or Anthropic's when an ``anthropic-version`` header is sent).
  The same routes also answer without the ``/v1`` prefix.

Every API route needs a key (``Authorization: Bearer K`` or ``x-api-key: K``; any non-empty key unless the
server was given ``api_key=``); without one it answers 401 in that API's error shape.

Answers: a request that asks for structured output (a JSON schema) or a tool call gets a JSON object built
from the schema, scored by :func:`default_scorer` (pluggable: ``scorer(text, min, max) -> (score, rationale)``)
over all the message text: with ``<expected>E</expected>`` and ``<output>O</output>`` the score is the
schema's maximum when E occurs in O (case-insensitive), else its minimum; with no ``<expected>``, the maximum
when O is non-empty and lacks the word "wrong". Min/max come from the ``score`` property's
``minimum``/``maximum`` (default 0 and 1); an enum property gets its first value for the maximum and its
last for the minimum; a string property named like ``rationale``/``reasoning``/``explanation`` gets the
rationale. Plain-text answers are ``"echo: " + <last user message text>`` unless a reply is configured.

autoevals classifiers (a function tool named ``select_choice``) whose prompt has no ``<expected>``/``<output>``
tags are read the way autoevals lays out its data: the ``[Expert]:`` line is the expected answer and the
``[Submission]:`` line the output; Factuality's choices ``A``..``E`` then answer ``C`` ("all the same details",
worth 1) for the maximum and ``D`` ("a disagreement", worth 0) for the minimum. Other enums, and prompts with
tags, keep the first/last rule above.

Fault knobs (in-process methods, or ``POST /_control/faults``):

* global ``latency`` (seconds), added to every API request;
* a FIFO script of faults, each consumed by the next API request whose path starts with the fault's
  ``path`` (any request when absent). Fields of a fault:
  ``status`` (error status, e.g. 429/500/503, with the API's error body), ``retry_after`` (seconds: sends
  ``retry-after`` as whole seconds rounded up and ``retry-after-ms``, which both SDKs prefer),
  ``should_retry`` (sends ``x-should-retry``), ``timeout`` (hold the request that many seconds before
  answering normally, so a client with a shorter timeout gives up), ``latency`` (extra delay for that one
  request), ``malformed`` (200 with a body that is not valid JSON), ``bad_structured`` (a valid API
  response whose structured content / tool arguments break the schema: ``true`` or ``"missing"`` drops the
  score (or the first required property), ``"out_of_range"`` puts the score past the maximum (or an enum
  value outside the enum), ``"not_json"`` makes the arguments invalid JSON), ``headers`` (extra response
  headers), ``message`` (error message).

HTTP control endpoints (no key, never logged or faulted): ``GET|POST /_control/faults``,
``POST /_control/reset``, ``GET /_control/requests`` (``?path=prefix``, ``?since=seq``),
``POST /_control/requests/clear``, ``GET /_control/stats`` (API requests in flight now, their peak, the
time integral of in-flight requests in request-seconds (mean in flight over an interval = its increase / the
interval) and the count of API requests received), ``POST /_control/stats/reset``.

Use in tests: ``with FakeLLMServer() as srv: OpenAI(base_url=srv.openai_base_url, api_key="x")``.
Standalone: ``python -m tests.fakes.llm_server --port N`` prints ``READY <port>`` once it accepts requests.

It is one asyncio server (uvicorn, one coroutine per request, no thread per request): thousands of requests
held in flight by latency cost little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import math
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn

Scorer = Callable[[str, float, float], tuple[float, str]]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_LOGGED_HEADERS = (
    "authorization",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "user-agent",
    "idempotency-key",
    "x-stainless-retry-count",
    "x-stainless-timeout",
    "x-stainless-lang",
    "x-stainless-package-version",
    "openai-organization",
    "openai-project",
)

_API_ROUTES = {
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/models",
}

_FAULT_KEYS = {
    "status",
    "retry_after",
    "should_retry",
    "timeout",
    "latency",
    "malformed",
    "bad_structured",
    "headers",
    "message",
    "path",
}

_RATIONALE_WORDS = (
    "rationale",
    "reason",
    "explanation",
    "explain",
    "justification",
    "critique",
    "feedback",
    "comment",
    "thought",
    "analysis",
)

_EXPECTED_RE = re.compile(r"<expected>(.*?)</expected>", re.IGNORECASE | re.DOTALL)
_OUTPUT_RE = re.compile(r"<output>(.*?)</output>", re.IGNORECASE | re.DOTALL)
_WRONG_RE = re.compile(r"\bwrong\b", re.IGNORECASE)
_AUTOEVALS_TOOL = "select_choice"
_AUTOEVALS_DATA = (
    ("expected", re.compile(r"^\[Expert\]:[ \t]*(.*?)\n\*{3,}", re.MULTILINE | re.DOTALL)),
    ("output", re.compile(r"^\[Submission\]:[ \t]*(.*?)\n\*{3,}", re.MULTILINE | re.DOTALL)),
)
# autoevals Factuality's choices -> (its best verdict, its worst): C "all the same details", D "a disagreement".
_AUTOEVALS_VERDICTS: dict[tuple[Any, ...], tuple[str, str]] = {("A", "B", "C", "D", "E"): ("C", "D")}


# --------------------------------------------------------------------------------------------------------------
# Scoring and schema filling
# --------------------------------------------------------------------------------------------------------------


def default_scorer(text: str, lo: float, hi: float) -> tuple[float, str]:
    """The deterministic rule: see the module docstring. Uses the last ``<expected>``/``<output>`` tags."""
    expected = _EXPECTED_RE.findall(text)
    outputs = _OUTPUT_RE.findall(text)
    output = outputs[-1] if outputs else ""
    if expected:
        exp = expected[-1].strip().lower()
        if exp in output.lower():
            return hi, f"The output contains the expected answer {exp!r}."
        return lo, f"The output does not contain the expected answer {exp!r}."
    if not output.strip():
        return lo, "The output is empty."
    if _WRONG_RE.search(output):
        return lo, "The output says it is wrong."
    return hi, "The output is non-empty and not marked wrong."


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _non_null(options: list[Any]) -> Any:
    for opt in options:
        if isinstance(opt, dict) and opt.get("type") != "null":
            return opt
    return options[0] if options else {}


class _SchemaFiller:
    """Builds a JSON value for a JSON schema, driven by a score."""

    def __init__(self, root: Mapping[str, Any], text: str, scorer: Scorer) -> None:
        self.root = root
        self.rationale = ""
        self.score: float = 0.0
        self.lo, self.hi = 0.0, 1.0
        top = self.resolve(root)
        props = top.get("properties") or {}
        score_key = next((k for k in props if k.lower() == "score"), None)
        self.score_key = score_key
        if score_key is not None:
            sp = self.resolve(props[score_key])
            self.lo = float(sp.get("minimum", sp.get("exclusiveMinimum", 0)))
            self.hi = float(sp.get("maximum", sp.get("exclusiveMaximum", 1)))
        score, rationale = scorer(text, self.lo, self.hi)
        self.score = float(score)
        self.rationale = rationale
        self.verdicts: Mapping[tuple[Any, ...], tuple[str, str]] = {}  # enum -> (value at max, value at min)

    def resolve(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        if depth > 20:
            return schema
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            merged = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.resolve(merged, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema and isinstance(schema[key], list):
                rest = {k: v for k, v in schema.items() if k != key}
                return self.resolve({**_non_null(schema[key]), **rest}, depth + 1)
        if "allOf" in schema and isinstance(schema["allOf"], list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = {**self.resolve(part, depth + 1), **merged}
            return merged
        return schema

    def pick(self, options: list[Any]) -> Any:
        """First option for the maximum score, last for the minimum, in between proportionally."""
        if not options:
            return None
        if self.hi == self.lo:
            return options[0]
        verdicts = self.verdicts.get(tuple(options))
        if verdicts is not None and (self.is_max() or self.score <= self.lo):
            return verdicts[0] if self.is_max() else verdicts[1]
        frac = (self.hi - self.score) / (self.hi - self.lo)
        frac = min(1.0, max(0.0, frac))
        return options[round(frac * (len(options) - 1))]

    def is_max(self) -> bool:
        return self.score >= self.hi

    def build(self) -> Any:
        return self.value(self.root, name=None, top=True)

    def value(self, schema: Any, name: str | None, top: bool = False, depth: int = 0) -> Any:
        s = self.resolve(schema)
        if depth > 12:
            return None
        if "const" in s:
            return s["const"]
        if isinstance(s.get("enum"), list) and s["enum"]:
            return self.pick(s["enum"])
        typ = s.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "null")
        if typ is None:
            typ = "object" if "properties" in s else ("array" if "items" in s else "string")
        if typ == "object":
            props = s.get("properties") or {}
            out: dict[str, Any] = {}
            for key, sub in props.items():
                if top and key == self.score_key:
                    out[key] = self.score_value(sub)
                else:
                    out[key] = self.value(sub, key, depth=depth + 1)
            return out
        if typ == "array":
            n = max(1, int(s.get("minItems", 1)))
            if "maxItems" in s:
                n = min(n, int(s["maxItems"]))
            return [self.value(s.get("items", {}), name, depth=depth + 1) for _ in range(n)]
        if typ == "boolean":
            return self.is_max()
        if typ in ("number", "integer"):
            val: float = float(s.get("minimum", s.get("exclusiveMinimum", 0)))
            if "maximum" in s:
                val = min(val, float(s["maximum"]))
            return int(val) if typ == "integer" else val
        if typ == "null":
            return None
        # string
        lname = (name or "").lower()
        if any(w in lname for w in _RATIONALE_WORDS):
            text = self.rationale
        elif lname in ("label", "verdict", "result", "grade", "decision"):
            text = "pass" if self.is_max() else "fail"
        else:
            text = f"fake {name or 'value'}"
        min_len = int(s.get("minLength", 0))
        if len(text) < min_len:
            text = text + "." * (min_len - len(text))
        if "maxLength" in s:
            text = text[: int(s["maxLength"])]
        return text

    def score_value(self, schema: Any) -> Any:
        s = self.resolve(schema)
        if isinstance(s.get("enum"), list) and s["enum"]:
            return self.pick(s["enum"])
        typ = s.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "number")
        if typ == "integer":
            return round(self.score)
        if typ == "boolean":
            return self.is_max()
        if typ == "string":
            return str(self.score)
        return self.score


def _autoevals_text(text: str) -> tuple[str, bool]:
    """``text`` plus autoevals' ``[Expert]:``/``[Submission]:`` data as ``<expected>``/``<output>`` tags, and
    whether any were added (never when the prompt has tags of its own)."""
    if _EXPECTED_RE.search(text) or _OUTPUT_RE.search(text):
        return text, False
    tags = [f"<{tag}>{m.group(1)}</{tag}>" for tag, rx in _AUTOEVALS_DATA if (m := rx.search(text))]
    return (text + "\n" + "\n".join(tags), True) if tags else (text, False)


def _break_structured(obj: Any, filler: _SchemaFiller, mode: Any) -> Any:
    """Make a schema-valid object invalid, per the ``bad_structured`` mode."""
    if not isinstance(obj, dict):
        return obj
    obj = dict(obj)
    if mode == "out_of_range":
        if filler.score_key is not None:
            obj[filler.score_key] = filler.hi + max(1.0, (filler.hi - filler.lo) * 10)
            return obj
        top = filler.resolve(filler.root)
        for key, sub in (top.get("properties") or {}).items():
            if isinstance(filler.resolve(sub).get("enum"), list):
                obj[key] = "not-a-valid-choice"
                return obj
        obj["score"] = filler.hi + 10
        return obj
    # "missing" (the default)
    if filler.score_key is not None:
        obj.pop(filler.score_key, None)
        return obj
    required = filler.resolve(filler.root).get("required") or list(obj)
    if required:
        obj.pop(required[0], None)
    return obj


# --------------------------------------------------------------------------------------------------------------
# Request text extraction
# --------------------------------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Text of an OpenAI/Anthropic message content: a string, or a list of parts/blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif "content" in part:  # anthropic tool_result
                    parts.append(_content_text(part["content"]))
                elif isinstance(part.get("output"), str):  # responses function_call_output
                    parts.append(part["output"])
        return "\n".join(p for p in parts if p)
    if isinstance(content, dict):
        return _content_text([content])
    return str(content)


def _messages_text(messages: Any) -> tuple[str, str]:
    """(all text, last user text) of a message list."""
    if isinstance(messages, str):
        return messages, messages
    texts: list[str] = []
    last_user = ""
    if isinstance(messages, list):
        for m in messages:
            if not isinstance(m, dict):
                continue
            t = _content_text(m.get("content")) if "content" in m else _content_text([m])
            if t:
                texts.append(t)
            if m.get("role") == "user" and t:
                last_user = t
    return "\n".join(texts), last_user


# --------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


class _Disconnected(Exception):
    pass


class FakeLLMServer:
    """A TEST FAKE speaking OpenAI Chat Completions / Responses and Anthropic Messages; see the module doc.

    ``with FakeLLMServer() as srv`` runs it in a background thread on a free port; ``srv.app`` is the ASGI
    app, usable with any ASGI server.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        scorer: Scorer | None = None,
        reply: str | None = None,
        api_key: str | None = None,
        record_bodies: bool = True,
        max_log: int = 100_000,
        backlog: int = 4096,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.scorer: Scorer = scorer or default_scorer
        self.api_key = api_key
        self.record_bodies = record_bodies
        self.backlog = backlog
        self._lock = threading.Lock()
        self._latency = float(latency)
        self._reply = reply
        self._faults: deque[dict[str, Any]] = deque()
        self._log: deque[dict[str, Any]] = deque(maxlen=max_log)
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._server: _Uvicorn | None = None
        self._sock: socket.socket | None = None
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._in_flight = 0
        self._in_flight_peak = 0
        self._in_flight_area = 0.0
        self._in_flight_stamp = time.monotonic()
        self._api_requests = 0

    # ---- addresses ------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeLLMServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI``: ``http://host:port/v1``."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic``: ``http://host:port`` (the SDK adds ``/v1/messages``)."""
        return self.base_url

    # ---- knobs ----------------------------------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delay every API request by ``seconds`` (0 to turn off)."""
        with self._lock:
            self._latency = max(0.0, float(seconds))

    @property
    def latency(self) -> float:
        return self._latency

    def set_reply(self, text: str | None) -> None:
        """Answer plain-text requests with ``text`` (``None``: back to ``"echo: " + last user text``)."""
        with self._lock:
            self._reply = text

    def set_scorer(self, scorer: Scorer | None) -> None:
        self.scorer = scorer or default_scorer

    def fail_next(self, fault: Mapping[str, Any] | None = None, /, *, times: int = 1, **fields: Any) -> None:
        """Queue a fault for the next ``times`` matching requests, e.g. ``fail_next(status=429, retry_after=1.5)``
        or ``fail_next({"timeout": 30}, path="/v1/messages")``."""
        spec = {**(dict(fault) if fault else {}), **fields}
        self.add_faults([spec] * times)

    def add_faults(self, faults: Iterable[Mapping[str, Any]]) -> None:
        """Append faults to the FIFO script."""
        normalized = [_normalize_fault(f) for f in faults]
        with self._lock:
            self._faults.extend(normalized)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def reset(self) -> None:
        """Clear faults, latency, the configured reply and the request log."""
        with self._lock:
            self._faults.clear()
            self._latency = 0.0
            self._reply = None
            self._log.clear()

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The log of received API requests: ``seq``, ``method``, ``path``, ``query``, ``t`` (arrival,
        ``time.monotonic()``), ``headers`` (a subset, lower-case names), ``body`` (parsed JSON), ``fault``
        (the fault applied, or None), ``status`` (None until answered; 499 when the client went away)."""
        with self._lock:
            return [dict(r) for r in self._log]

    def requests_for(self, path_prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"latency": self._latency, "reply": self._reply, "faults": [dict(f) for f in self._faults]}

    def _count_in_flight(self, delta: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._in_flight_area += self._in_flight * (now - self._in_flight_stamp)
            self._in_flight_stamp = now
            self._in_flight += delta
            if delta > 0:
                self._api_requests += delta
                self._in_flight_peak = max(self._in_flight_peak, self._in_flight)

    def stats(self) -> dict[str, Any]:
        """API requests in flight now and at most, the in-flight time integral (request-seconds) and the
        number of API requests received, as of ``t`` (``time.monotonic()``)."""
        with self._lock:
            now = time.monotonic()
            area = self._in_flight_area + self._in_flight * (now - self._in_flight_stamp)
            return {"t": now, "in_flight": self._in_flight, "max_in_flight": self._in_flight_peak,
                    "in_flight_seconds": area, "requests": self._api_requests}  # fmt: skip

    def reset_stats(self) -> None:
        """Start the peak, the integral and the request count again (requests in flight stay counted)."""
        with self._lock:
            self._in_flight_area, self._in_flight_stamp = 0.0, time.monotonic()
            self._in_flight_peak, self._api_requests = self._in_flight, 0

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(self.backlog)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        return sock

    def _make_server(self, on_started: Callable[[], None], log_level: str = "warning") -> _Uvicorn:
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            interface="asgi3",
            proxy_headers=False,
            log_level=log_level,
            access_log=False,
            ws="none",
            backlog=self.backlog,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
        )
        return _Uvicorn(config, on_started)

    def start(self, timeout: float = 10.0) -> FakeLLMServer:
        """Run in a background thread (its own asyncio loop) on ``host:port`` (a free port when 0)."""
        if self._thread is not None:
            return self
        self._sock = self._bind()
        self._server = self._make_server(self._started.set)
        sock = self._sock
        server = self._server

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # surfaced by start()
                self._start_error = exc
            finally:
                self._started.set()

        self._thread = threading.Thread(target=run, name="fake-llm-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout) or self._start_error is not None or not server.started:
            self.stop()
            raise RuntimeError(f"FakeLLMServer did not start: {self._start_error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ev.set)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._thread = None
        self._server = None
        self._sock = None
        self._started.clear()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, log_level: str = "warning") -> None:
        """Run in this thread until SIGINT/SIGTERM; prints ``READY <port>`` once accepting."""
        sock = self._bind()

        def ready() -> None:
            print(f"READY {self.port}", flush=True)

        server = self._make_server(ready, log_level=log_level)
        self._server = server
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    # ---- ASGI -----------------------------------------------------------------------------------------------

    async def app(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        raw = b"".join(chunks)
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        if path.startswith("/_control/"):
            await self._control(method, path, query, raw, send)
            return
        self._count_in_flight(1)
        try:
            await self._api(method, path, query, headers, raw, receive, send)
        finally:
            self._count_in_flight(-1)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._stop_event = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self._stop_event is not None:
                    self._stop_event.set()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- control --------------------------------------------------------------------------------------------

    async def _control(self, method: str, path: str, query: str, raw: bytes, send: Send) -> None:
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            await _send_json(send, 400, {"error": "control body is not JSON"})
            return
        path = path.rstrip("/")
        if path == "/_control/faults" and method == "GET":
            await _send_json(send, 200, self.state())
        elif path == "/_control/faults" and method == "POST":
            if not isinstance(body, dict):
                await _send_json(send, 400, {"error": "expected a JSON object"})
                return
            try:
                if body.get("clear"):
                    self.clear_faults()
                if "latency" in body:
                    self.set_latency(float(body["latency"] or 0))
                if "reply" in body:
                    self.set_reply(body["reply"])
                if "faults" in body:
                    self.add_faults(body["faults"])
                if "fault" in body:
                    self.fail_next(body["fault"], times=int(body.get("times", 1)))
            except (TypeError, ValueError) as exc:
                await _send_json(send, 400, {"error": str(exc)})
                return
            await _send_json(send, 200, self.state())
        elif path == "/_control/reset" and method == "POST":
            self.reset()
            await _send_json(send, 200, {"ok": True})
        elif path == "/_control/requests" and method == "GET":
            qs = parse_qs(query)
            reqs = self.requests
            if "path" in qs:
                reqs = [r for r in reqs if r["path"].startswith(qs["path"][0])]
            if "since" in qs:
                since = int(qs["since"][0])
                reqs = [r for r in reqs if r["seq"] > since]
            await _send_json(send, 200, {"count": len(reqs), "requests": reqs})
        elif path == "/_control/requests/clear" and method == "POST":
            self.clear_requests()
            await _send_json(send, 200, {"ok": True})
        elif path == "/_control/stats" and method == "GET":
            await _send_json(send, 200, self.stats())
        elif path == "/_control/stats/reset" and method == "POST":
            self.reset_stats()
            await _send_json(send, 200, self.stats())
        else:
            await _send_json(send, 404, {"error": f"no control endpoint {method} {path}"})

    # ---- API ------------------------------------------------------------------------------------------------

    def _pop_fault(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                prefix = fault.get("path")
                if not prefix or path.startswith(prefix):
                    del self._faults[i]
                    return fault
        return None

    async def _hold(self, seconds: float, receive: Receive) -> None:
        """Sleep, but give up when the client disconnects or the server stops."""
        if seconds <= 0:
            return
        sleep: asyncio.Future[Any] = asyncio.ensure_future(asyncio.sleep(seconds))
        recv: asyncio.Future[Any] | None = asyncio.ensure_future(receive())
        stop: asyncio.Future[Any] | None = None
        if self._stop_event is not None:
            stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            while True:
                waiting = {f for f in (sleep, recv, stop) if f is not None}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if sleep in done:
                    return
                if stop is not None and stop in done:
                    raise _Disconnected
                if recv is not None and recv in done:
                    if recv.result().get("type") == "http.disconnect":
                        raise _Disconnected
                    recv = None  # not a disconnect: stop watching, just sleep
        finally:
            for f in (sleep, recv, stop):
                if f is not None:
                    f.cancel()

    async def _api(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        raw: bytes,
        receive: Receive,
        send: Send,
    ) -> None:
        t = time.monotonic()
        route = path.rstrip("/") or "/"
        if not route.startswith("/v1/") and "/v1" + route in _API_ROUTES:
            route = "/v1" + route
        flavor = "anthropic" if route == "/v1/messages" or "anthropic-version" in headers else "openai"
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
                body = raw.decode("utf-8", "replace")
        entry: dict[str, Any] = {
            "seq": next(self._seq),
            "method": method,
            "path": path,
            "query": query,
            "t": t,
            "headers": {h: headers[h] for h in _LOGGED_HEADERS if h in headers},
            "body": body if self.record_bodies else None,
            "fault": None,
            "status": None,
            "t_end": None,
        }
        with self._lock:
            self._log.append(entry)
            latency = self._latency
            reply = self._reply

        async def answer(status: int, obj: Any, extra: Mapping[str, str] | None = None) -> None:
            entry["status"] = status
            entry["t_end"] = time.monotonic()
            await _send_json(send, status, obj, extra)

        async def error(status: int, message: str, extra: Mapping[str, str] | None = None) -> None:
            err = _error_body(flavor, status, message)
            if status == 401 and flavor == "openai" and not key:
                err["error"]["code"] = None
            await answer(status, err, {**_request_id(flavor), **(extra or {})})

        key = _api_key(headers)
        try:
            await self._hold(latency, receive)
            if not key:
                msg = (
                    "x-api-key header is required"
                    if flavor == "anthropic"
                    else "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
                await error(401, msg)
                return
            if self.api_key is not None and key != self.api_key:
                await error(401, "Incorrect API key provided (fake server).")
                return
            fault = self._pop_fault(path)
            entry["fault"] = fault
            if fault:
                await self._hold(float(fault.get("latency") or 0) + float(fault.get("timeout") or 0), receive)
                status = int(fault.get("status") or 0)
                if status >= 400:
                    extra = dict(fault.get("headers") or {})
                    if fault.get("retry_after") is not None:
                        ra = float(fault["retry_after"])
                        extra["retry-after"] = str(math.ceil(ra))
                        extra["retry-after-ms"] = str(round(ra * 1000))
                    if fault.get("should_retry") is not None:
                        extra["x-should-retry"] = "true" if fault["should_retry"] else "false"
                    await error(status, str(fault.get("message") or _default_message(status)), extra)
                    return
                if fault.get("malformed"):
                    entry["status"] = 200
                    is_stream = isinstance(body, dict) and body.get("stream") is True
                    if is_stream and route == "/v1/chat/completions":
                        await _send_raw(
                            send,
                            200,
                            b'data: {"id": "chatcmpl-broken", "choices": [\n\n',
                            "text/event-stream",
                        )
                    else:
                        await _send_raw(
                            send,
                            200,
                            b'{"id": "broken", "object": "chat.completion", "choi',
                            "application/json",
                        )
                    return
            if bad_json:
                await error(400, "We could not parse the JSON body of your request.")
                return
            if route == "/v1/models":
                if method != "GET":
                    await error(405, f"Method {method} not allowed on {path}")
                    return
                await answer(200, _models(flavor), _request_id(flavor))
                return
            if route not in _API_ROUTES:
                await error(404, f"Invalid URL ({method} {path})")
                return
            if method != "POST":
                await error(405, f"Method {method} not allowed on {path}")
                return
            if not isinstance(body, dict):
                await error(400, "The request body must be a JSON object.")
                return
            bad = (fault or {}).get("bad_structured") or None
            if route == "/v1/chat/completions":
                if body.get("stream"):
                    entry["status"] = 200
                    await self._chat_stream(body, reply, bad, send)
                    return
                await answer(200, self._chat(body, reply, bad), _request_id(flavor))
            elif route == "/v1/responses":
                if body.get("stream"):
                    await error(400, "stream=true is not supported by the fake Responses endpoint")
                    return
                await answer(200, self._responses(body, reply, bad), _request_id(flavor))
            else:
                if body.get("stream"):
                    await error(400, "stream=true is not supported by the fake Messages endpoint")
                    return
                await answer(200, self._messages(body, reply, bad), _request_id(flavor))
        except _Disconnected:
            entry["status"] = 499

    # ---- answer builders ------------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):010d}"

    def _structured(self, schema: Any, text: str, bad: Any, tool: Any = None) -> str:
        """JSON text for ``schema`` scored over ``text``; broken per ``bad`` (a bad_structured mode)."""
        if not isinstance(schema, dict):
            schema = {"type": "object", "properties": {}}
        autoevals = False
        if tool == _AUTOEVALS_TOOL:
            text, autoevals = _autoevals_text(text)
        filler = _SchemaFiller(schema, text, self.scorer)
        if autoevals:
            filler.verdicts = _AUTOEVALS_VERDICTS
        obj = filler.build()
        if bad:
            if bad == "not_json":
                return orjson.dumps(obj).decode()[:-1] + ', "oops": '
            obj = _break_structured(obj, filler, bad)
        return orjson.dumps(obj).decode()

    def _chat_answer(self, body: dict[str, Any], reply: str | None, bad: Any) -> tuple[str, str | None, Any]:
        """(prompt text, content, tool call) for a chat request."""
        text, last_user = _messages_text(body.get("messages"))
        tools = [
            t
            for t in body.get("tools") or []
            if isinstance(t, dict) and t.get("type", "function") == "function"
        ]
        tool_choice = body.get("tool_choice")
        if tools and tool_choice != "none":
            tool = tools[0]
            if isinstance(tool_choice, dict):
                wanted = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
                tool = next((t for t in tools if (t.get("function") or {}).get("name") == wanted), tool)
            fn = tool.get("function") or {}
            args = self._structured(fn.get("parameters"), text, bad, fn.get("name"))
            call = {
                "id": self._next_id("call_"),
                "type": "function",
                "function": {"name": fn.get("name", "tool"), "arguments": args},
            }
            return text, None, call
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            return text, self._structured((rf.get("json_schema") or {}).get("schema"), text, bad), None
        if isinstance(rf, dict) and rf.get("type") == "json_object":
            return text, self._structured(_DEFAULT_SCHEMA, text, bad), None
        return text, reply if reply is not None else "echo: " + last_user, None

    def _chat(self, body: dict[str, Any], reply: str | None, bad: Any) -> dict[str, Any]:
        text, content, call = self._chat_answer(body, reply, bad)
        out_text = content if content is not None else call["function"]["arguments"]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "annotations": [],
        }
        if call is not None:
            message["tool_calls"] = [call]
        pt, ct = _tokens(text), _tokens(out_text)
        return {
            "id": self._next_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "fake-model",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if call is not None else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": pt,
                "completion_tokens": ct,
                "total_tokens": pt + ct,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    async def _chat_stream(self, body: dict[str, Any], reply: str | None, bad: Any, send: Send) -> None:
        text, content, call = self._chat_answer(body, reply, bad)
        cid = self._next_id("chatcmpl-")
        created = int(time.time())
        model = body.get("model") or "fake-model"

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", f"req_{cid}".encode()),
                ],
            }
        )
        parts = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
        if call is not None:
            parts.append(chunk({"tool_calls": [{"index": 0, **call}]}, None))
            out_text = call["function"]["arguments"]
        else:
            out_text = content or ""
            for i in range(0, len(out_text), 16):
                parts.append(chunk({"content": out_text[i : i + 16]}, None))
        parts.append(chunk({}, "tool_calls" if call is not None else "stop"))
        opts = body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage"):
            pt, ct = _tokens(text), _tokens(out_text)
            usage: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            }
            parts.append(b"data: " + orjson.dumps(usage) + b"\n\n")
        parts.append(b"data: [DONE]\n\n")
        for p in parts:
            await send({"type": "http.response.body", "body": p, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _responses(self, body: dict[str, Any], reply: str | None, bad: Any) -> dict[str, Any]:
        instructions = body.get("instructions")
        inp = body.get("input")
        text, last_user = _messages_text(inp)
        if isinstance(instructions, str) and instructions:
            text = instructions + "\n" + text
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        tool_choice = body.get("tool_choice")
        fmt = ((body.get("text") or {}).get("format") or {}) if isinstance(body.get("text"), dict) else {}
        output: list[dict[str, Any]] = []
        if tools and tool_choice != "none":
            tool = tools[0]
            if isinstance(tool_choice, dict) and tool_choice.get("name"):
                tool = next((t for t in tools if t.get("name") == tool_choice["name"]), tool)
            args = self._structured(tool.get("parameters"), text, bad, tool.get("name"))
            out_text = args
            output.append(
                {
                    "type": "function_call",
                    "id": self._next_id("fc_"),
                    "call_id": self._next_id("call_"),
                    "name": tool.get("name", "tool"),
                    "arguments": args,
                    "status": "completed",
                }
            )
        else:
            if fmt.get("type") == "json_schema":
                out_text = self._structured(fmt.get("schema"), text, bad)
            elif fmt.get("type") == "json_object":
                out_text = self._structured(_DEFAULT_SCHEMA, text, bad)
            else:
                out_text = reply if reply is not None else "echo: " + last_user
            output.append(
                {
                    "type": "message",
                    "id": self._next_id("msg_"),
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": out_text, "annotations": [], "logprobs": []}],
                }
            )
        it, ot = _tokens(text), _tokens(out_text)
        return {
            "id": self._next_id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": instructions,
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model") or "fake-model",
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": fmt or {"type": "text"}},
            "tool_choice": tool_choice if tool_choice is not None else "auto",
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": it,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": ot,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": it + ot,
            },
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    def _messages(self, body: dict[str, Any], reply: str | None, bad: Any) -> dict[str, Any]:
        system = _content_text(body.get("system"))
        text, last_user = _messages_text(body.get("messages"))
        if system:
            text = system + "\n" + text
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
        raw_choice = body.get("tool_choice")
        tool_choice: dict[str, Any] = raw_choice if isinstance(raw_choice, dict) else {}
        content: list[dict[str, Any]]
        if tools and tool_choice.get("type") != "none":
            tool = tools[0]
            if tool_choice.get("type") == "tool":
                tool = next((t for t in tools if t.get("name") == tool_choice.get("name")), tool)
            args = self._structured(tool.get("input_schema"), text, bad)
            try:
                tool_input: Any = orjson.loads(args)
            except orjson.JSONDecodeError:
                tool_input = args  # bad_structured="not_json": a string where an object belongs
            content = [
                {
                    "type": "tool_use",
                    "id": self._next_id("toolu_"),
                    "name": tool.get("name", "tool"),
                    "input": tool_input,
                }
            ]
            out_text, stop = args, "tool_use"
        else:
            fmt = (
                (body.get("output_config") or {}).get("format")
                if isinstance(body.get("output_config"), dict)
                else None
            )
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                out_text = self._structured(fmt.get("schema"), text, bad)
            else:
                out_text = reply if reply is not None else "echo: " + last_user
            content = [{"type": "text", "text": out_text}]
            stop = "end_turn"
        return {
            "id": self._next_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or "fake-model",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": _tokens(text),
                "output_tokens": _tokens(out_text),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }


_DEFAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}, "rationale": {"type": "string"}},
    "required": ["score", "rationale"],
}


def _normalize_fault(fault: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(fault, Mapping):
        raise TypeError(f"a fault must be a JSON object, got {fault!r}")
    unknown = set(fault) - _FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown fault fields {sorted(unknown)}; known: {sorted(_FAULT_KEYS)}")
    out = dict(fault)
    if out.get("bad_structured") is True:
        out["bad_structured"] = "missing"
    if out.get("bad_structured") not in (None, False, "missing", "out_of_range", "not_json"):
        raise ValueError("bad_structured must be true, 'missing', 'out_of_range' or 'not_json'")
    return copy.deepcopy(out)


def _api_key(headers: Mapping[str, str]) -> str:
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    auth = headers.get("authorization", "").strip()
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return ""


def _request_id(flavor: str) -> dict[str, str]:
    rid = f"req_fake{time.monotonic_ns()}"
    return {"request-id": rid} if flavor == "anthropic" else {"x-request-id": rid}


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    405: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def _default_message(status: int) -> str:
    return {
        429: "Rate limit reached (fake server).",
        500: "The server had an error while processing your request (fake server).",
        502: "Bad gateway (fake server).",
        503: "The engine is currently overloaded, please try again later (fake server).",
        529: "Overloaded (fake server).",
    }.get(status, f"Fake error {status}.")


def _error_body(flavor: str, status: int, message: str) -> dict[str, Any]:
    if flavor == "anthropic":
        etype = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {
            "type": "error",
            "error": {"type": etype, "message": message},
            "request_id": f"req_fake{time.monotonic_ns()}",
        }
    etype, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def _models(flavor: str) -> dict[str, Any]:
    ids = ["fake-model", "gpt-5-mini", "claude-fake"]
    if flavor == "anthropic":
        data = [
            {"type": "model", "id": i, "display_name": i, "created_at": "2025-01-01T00:00:00Z"} for i in ids
        ]
        return {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": 0, "owned_by": "fake"} for i in ids],
    }


async def _send_raw(
    send: Send, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
) -> None:
    hdrs = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    hdrs.extend((k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
    await _send_raw(send, status, orjson.dumps(obj), "application/json", headers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TEST FAKE of the OpenAI / Anthropic HTTP APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API request")
    parser.add_argument("--reply", default=None, help="fixed plain-text answer instead of 'echo: ...'")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    parser.add_argument("--no-record-bodies", action="store_true", help="log requests without their bodies")
    parser.add_argument(
        "--max-log", type=int, default=100_000, help="requests kept in the log (default 100,000)"
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    srv = FakeLLMServer(
        args.host,
        args.port,
        latency=args.latency,
        reply=args.reply,
        api_key=args.api_key,
        record_bodies=not args.no_record_bodies,
        max_log=args.max_log,
    )
    srv.serve_forever(log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
