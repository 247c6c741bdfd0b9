"""Who may call which route: the scope each API and UI path needs, and the checks of a key's projects.

The middleware (`connectors/auth/middleware.py`) asks `api_scope` for every request: the few open paths
answer None, the key routes need `admin`, span ingest `ingest`, reads `read` (a POST that only reads, such as
SQL or a rule test, too) and every other change `write`. Routes then ask `projects_of` / `require_project`
for the projects of the key (None: every project; auth off, or a key not limited to any).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Scope

from connectors.api.errors import ApiError, error_response
from connectors.auth.middleware import caller_projects

_OPEN = frozenset(
    {"/healthz", "/readyz", "/login", "/logout", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
_INGEST = frozenset({"/api/v1/traces", "/api/public/otel/v1/traces", "/api/public/ingestion"})
_READ_POSTS = frozenset({"/api/v1/sql", "/api/v1/rules/test", "/rules/check", "/rules/test"})


def api_scope(method: str, path: str) -> str | None:
    """The scope `method path` needs on the API listener; None when it is open."""
    if path in _OPEN or path.startswith("/static/"):
        return None
    if path == "/api/v1/keys" or path.startswith("/api/v1/keys/"):
        return "admin"
    if method == "POST" and path in _INGEST:
        return "ingest"
    if method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and path in _READ_POSTS):
        return "read"
    return "write"


def limited_may(method: str, path: str) -> bool:
    """What a key limited to projects may call at all: the API, but not the web UI (its pages show every
    project) nor changes to what every project shares (connections, score configs)."""
    if not path.startswith("/api/"):
        return False
    shared = path.startswith(("/api/v1/connections", "/api/v1/score-configs"))
    return not shared or method in ("GET", "HEAD", "OPTIONS")


def project_in_path(request: Request, project: str) -> None:
    """A router dependency: 403 unless the key may touch the `{project}` of the path."""
    require_project(request, project)


def api_deny(status: int, message: str, scope: Scope) -> Response:
    """The API's refusal: its error body; a browser asking for a UI page without a session goes to /login."""
    path = scope["path"]
    if status == 401 and scope["method"] == "GET" and not path.startswith("/api/") and path != "/metrics":
        target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, "unauthorized" if status == 401 else "forbidden", message, None, headers)


projects_of = caller_projects


def require_project(request: Request, project: str) -> None:
    """403 unless `request`'s key may touch `project`."""
    allowed = projects_of(request)
    if allowed is not None and project not in allowed:
        raise ApiError(403, f"this API key is not allowed project {project!r}", code="forbidden")


def in_key_projects(request: Request, items: list[Any]) -> list[Any]:
    """Scores (JSON objects) to write with `request`'s key: each in one of its projects (403 otherwise); one
    without a project gets the key's project when it has one only (else the trace's could be anyone's)."""
    allowed = projects_of(request)
    if allowed is None:
        return items
    only = next(iter(allowed)) if len(allowed) == 1 else None
    out = []
    for i, doc in enumerate(items):
        project = doc.get("project") if isinstance(doc, dict) else None
        if not project and only is not None and isinstance(doc, dict):
            doc = {**doc, "project": only}
        elif not isinstance(project, str) or project not in allowed:
            msg = f"item {i}: a key limited to projects writes scores with one of them as `project`"
            raise ApiError(403, msg, "project", code="forbidden")
        out.append(doc)
    return out


def visible(request: Request, project: str) -> bool:
    allowed = projects_of(request)
    return allowed is None or project in allowed
