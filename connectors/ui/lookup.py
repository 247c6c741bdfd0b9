"""What a page of the UI shows by id (a rule, a connection): the thing, or a "Not found" page (404) in HTML,
where the API would answer its JSON error."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse

from connectors.api.blocking import run
from connectors.ui.pages import TEMPLATES

T = TypeVar("T")


async def found(
    request: Request, get: Callable[[str], T | None], key: str, what: str, back: str
) -> T | HTMLResponse:
    """`get(key)`, or the page saying the `what` is not there, with a link `back` to its list."""
    value: T | None = await run(get, key)
    if value is not None:
        return value
    context = {"active": back, "message": f"{what} {key} not found", "back": back}
    return TEMPLATES.TemplateResponse(request, "missing.html", context, status_code=404)
