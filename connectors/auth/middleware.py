"""The check in front of every HTTP listener: which key is calling, and may it do this?

An ASGI middleware, so one piece of code guards the API, the UI and the OTLP/HTTP receiver alike. A listener
gives it `scope_of(method, path)`: the scope a request needs, or None for the few open paths (health, the
login page, static files). The key comes from `authorization: Bearer <key>` (what OTEL_EXPORTER_OTLP_HEADERS
sets), from HTTP Basic's password (the Langfuse and InteractiveAI SDKs send their secret key there), or from
the UI's signed session cookie. Without a valid key: 401 (unknown, malformed and revoked keys alike); with a
key that lacks the scope: 403. A request authenticated by the cookie that changes something must come from
this site: SameSite=Strict keeps the cookie off cross-site requests, and its Origin (or Referer) must be this
host. The key found is left in `request.state.api_key` for the routes' project checks.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.auth.keys import ApiKey
from connectors.auth.ring import KeyRing
from connectors.auth.session import COOKIE, SessionSigner
from dataflow import metrics

ScopeOf = Callable[[str, str], str | None]
LimitedMay = Callable[[str, str], bool]
Deny = Callable[[int, str, Scope], Response]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHENTICATED = "a valid API key is required (authorization: Bearer <key>)"


def bearer_token(value: str | None) -> str | None:
    """The key in an `authorization` header value: Bearer's token, or Basic's password."""
    if not value:
        return None
    kind, _, rest = value.strip().partition(" ")
    if kind.lower() == "bearer":
        return rest.strip() or None
    if kind.lower() == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def same_origin(headers: Headers) -> bool:
    """The request comes from a page of this host (its Origin, else its Referer, names it)."""
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == headers.get("host", "")


def caller_key(request: HTTPConnection) -> ApiKey | None:
    """The key that authenticated `request`; None when authentication is off."""
    key = getattr(request.state, "api_key", None)
    return key if isinstance(key, ApiKey) else None


def caller_projects(request: HTTPConnection) -> frozenset[str] | None:
    """The projects `request` may touch; None: every project (authentication off, or an unlimited key)."""
    key = caller_key(request)
    return key.projects if key is not None and key.limited else None


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        ring: KeyRing,
        listener: str,
        scope_of: ScopeOf,
        deny: Deny,
        sessions: SessionSigner | None = None,
        limited_may: LimitedMay = lambda _method, _path: True,
    ) -> None:
        self.app = app
        self._ring = ring
        self._listener = listener
        self._scope_of = scope_of
        self._deny = deny
        self._sessions = sessions
        self._limited_may = limited_may

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._ring.enabled:
            await self.app(scope, receive, send)
            return
        needed = self._scope_of(scope["method"], scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key, by_cookie = self._caller(headers)
        status, message = 0, ""
        if key is None:
            status, message = 401, UNAUTHENTICATED
        elif by_cookie and scope["method"] not in _SAFE_METHODS and not same_origin(headers):
            status, message = 403, "cross-site request refused: its Origin is not this site"
        elif not key.allows(needed):
            status, message = 403, f"this API key lacks the {needed!r} scope"
        elif key.limited and not self._limited_may(scope["method"], scope["path"]):
            status, message = 403, "this needs an API key over every project"
        if status:
            outcome = "unauthenticated" if status == 401 else "forbidden"
            metrics.AUTH_REQUESTS.labels(self._listener, outcome).inc()
            await self._deny(status, message, scope)(scope, receive, send)
            return
        metrics.AUTH_REQUESTS.labels(self._listener, "ok").inc()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["api_key"] = key
        await self.app(scope, receive, send)

    def _caller(self, headers: Headers) -> tuple[ApiKey | None, bool]:
        token = bearer_token(headers.get("authorization"))
        if token is not None:
            return self._ring.verify(token), False
        if self._sessions is not None:
            value = cookie_parser(headers.get("cookie", "")).get(COOKIE)
            key_id = self._sessions.key_id(value) if value else None
            if key_id is not None:
                return self._ring.by_id(key_id), True
        return None, False
