"""The web UI's login: `GET/POST /login` takes an API key and sets a session cookie; `POST /logout` ends it.

The cookie (`connectors/auth/session.py`) names the key by id, signed; it is `HttpOnly` (no script reads it),
`SameSite=Strict` (no other site's page sends it) and `Secure` when the request came over https. The key typed
in is checked like any other and never echoed or logged; a wrong one is answered as an unknown one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from connectors.api.errors import ApiError
from connectors.auth.middleware import same_origin
from connectors.auth.ring import KeyRing
from connectors.auth.session import COOKIE, SessionSigner
from connectors.ui.forms import posted_form
from connectors.ui.pages import TEMPLATES


def _safe_next(target: str) -> str:
    """Only a path of this site (never `//elsewhere` or a full URL) to go back to after logging in."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def build_login_router(ring: KeyRing, sessions: SessionSigner) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def page(request: Request, next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
        context = {"active": "", "next": _safe_next(next_path), "error": error}
        return TEMPLATES.TemplateResponse(request, "login.html", context, status_code=status)

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, next)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not same_origin(request.headers):
            raise ApiError(403, "cross-site request refused: its Origin is not this site", code="forbidden")
        form = await posted_form(request)
        next_path = form.get("next", "/")
        found = ring.verify(form.get("key", "").strip())
        if found is None:
            return page(request, next_path, "That key is not valid.", 401)
        if found.limited:
            return page(request, next_path, "The web UI needs a key over every project.", 403)
        response = RedirectResponse(_safe_next(next_path), status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.issue(found.key_id),
            max_age=sessions.max_age_s,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        if not same_origin(request.headers):
            raise ApiError(403, "cross-site request refused: its Origin is not this site", code="forbidden")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return router
