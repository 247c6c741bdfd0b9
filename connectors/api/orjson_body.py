"""A FastAPI route class whose JSON request bodies are parsed by orjson (~3x the standard library's speed).

FastAPI's documented way to change the request (a custom `APIRoute` handing the endpoint a `Request` subclass).
Only the parser changes: a body orjson refuses, or with a run of 19 digits (an integer orjson may turn into a
float where the standard library keeps it exact), is parsed by the standard library, so what is accepted, its
values and the errors (422 `json_invalid` with the standard library's position) stay exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

_UNSET = object()
# A run of 19 digits (may not fit 64 bits), found as a run of zeros once every digit is 0 and all else a space:
# translate and find run in C, ~3x faster than the regex \d{19} over a body of floats.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_LONG_NUMBER = b"0" * 19


class OrjsonRequest(Request):
    """A request whose `json()` parses with orjson, falling back to the standard library when orjson refuses."""

    _parsed: Any = _UNSET

    async def json(self) -> Any:
        if self._parsed is _UNSET:
            body = await self.body()
            try:
                if _LONG_NUMBER in body.translate(_DIGITS_AS_ZERO):
                    self._parsed = json.loads(body)
                else:
                    self._parsed = orjson.loads(body)
            except orjson.JSONDecodeError:  # NaN, bad JSON, ...: the standard library decides
                self._parsed = json.loads(body)
        return self._parsed


class OrjsonRoute(APIRoute):
    """An `APIRoute` whose endpoints get an `OrjsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return route
