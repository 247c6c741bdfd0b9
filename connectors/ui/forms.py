"""The web UI's posted forms: `application/x-www-form-urlencoded` (what browsers and htmx send), parsed with
urllib, so the service needs no python-multipart (starlette's `request.form()` does).

Anything else is refused as the sender's mistake, never a 500: a multipart or other body is a 415, a form
larger than `MAX_FORM_BYTES` a 413 (unread when its Content-Length says so), a form not in UTF-8 a 400.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

from connectors.api.errors import ApiError

MAX_FORM_BYTES = 64 * 1024  # a rule with long criteria fits many times over
FORM_TYPE = "application/x-www-form-urlencoded"
_TOO_LARGE = f"the form is larger than {MAX_FORM_BYTES:,} bytes"


async def posted_form(request: Request) -> dict[str, str]:
    """The posted form: the last value of each name. Raises ApiError 415, 413 or 400 (see the module)."""
    kind = request.headers.get("content-type", FORM_TYPE).split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        msg = f"this form takes {FORM_TYPE}, not {kind or 'an empty content type'}"
        raise ApiError(415, msg, "content-type")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:  # refused before reading it
        raise ApiError(413, _TOO_LARGE, "body")
    raw = await request.body()  # read once: a second call (a route reads the form twice) gets the same bytes
    if len(raw) > MAX_FORM_BYTES:
        raise ApiError(413, _TOO_LARGE, "body")
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        msg = "the form is not UTF-8"
        raise ApiError(400, msg, "body") from exc
    return dict(parse_qsl(text, keep_blank_values=True))
