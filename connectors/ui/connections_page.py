"""The web UI's connections (issue 12, item 6): the list, the form, delete with a confirmation, and Test.

Pages and the API share `parse_connection` and `connection_doc` (connectors/api/connections.py). A key is never
taken, shown or sent to the browser: a connection names the env var that holds it, and the page says whether
that variable is set (`key_status`). **Test** makes one small judge call through the connection's own client
(`connectors.llm.factory.make_client`, as the judges do) and shows the answer or the error, with the key's
value blanked out of any error text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from connectors.api.blocking import run
from connectors.api.connections import _connections_of, connection_doc, parse_connection
from connectors.api.errors import ApiError
from connectors.clickhouse.connections_store import ConnectionStore
from connectors.clickhouse.rules_store import RuleStore
from connectors.llm.factory import make_client
from connectors.ui.forms import posted_form
from connectors.ui.lookup import found
from connectors.ui.pages import TEMPLATES
from dataflow.judging.client import JudgeRequest
from dataflow.judging.connections import ConnectionSpec

_TEXT = ("name", "provider", "protocol", "base_url", "api_key_env", "model")
_NUMBERS = ("timeout_s", "max_retries", "max_concurrency", "requests_per_minute", "tokens_per_minute",
            "input_price_per_mtok", "output_price_per_mtok")  # fmt: skip
PROBE = JudgeRequest(
    system="You check that an LLM connection works.",
    prompt='Answer with the score 1 and the rationale "ok".',
    params={"max_tokens": 50},
)
PROTOCOLS = {"openai": ("chat_completions", "responses"), "anthropic": ("messages",)}


def connection_values(spec: ConnectionSpec | None) -> dict[str, str]:
    """A connection as the form shows it (a new one: OpenAI chat completions with OPENAI_API_KEY)."""
    if spec is None:
        return {"provider": "openai", "protocol": "chat_completions", "api_key_env": "OPENAI_API_KEY",
                "timeout_s": "60", "max_retries": "3", "max_concurrency": "64"}  # fmt: skip
    data = spec.model_dump(mode="json")
    values = {k: "" if data[k] is None else str(data[k]) for k in (*_TEXT, *_NUMBERS)}
    values["params"] = json.dumps(data["params"]) if data["params"] else ""
    return values


def connection_body(form: Mapping[str, str]) -> dict[str, Any]:
    """The connections API's body of the form; a field that does not parse is left for the model to name."""
    body: dict[str, Any] = {k: form.get(k, "").strip() for k in _TEXT}
    body["base_url"] = body["base_url"] or None
    body.update({k: form[k].strip() for k in _NUMBERS if form.get(k, "").strip()})
    params = form.get("params", "").strip()
    if params:
        try:
            body["params"] = json.loads(params)
        except ValueError as exc:
            raise ApiError(400, f"params: not JSON: {exc}", "params") from exc
    return body


async def probe(spec: ConnectionSpec) -> dict[str, Any]:
    """One small judge call: {"ok", "answer" or "error"}; the key's value never appears in the error."""
    if problem := spec.key_problem():
        return {"ok": False, "error": problem}
    client = make_client(spec)
    try:
        answer = await asyncio.wait_for(client.judge(PROBE), timeout=spec.timeout_s + 5)
    except Exception as exc:  # any failure of the call is the answer to show
        text = f"{type(exc).__name__}: {exc}"
        key = spec.api_key()
        return {"ok": False, "error": text.replace(key, "***") if key else text}
    finally:
        await client.aclose()
    return {"ok": True, "answer": answer}


def build_connections_ui_router(
    store: ConnectionStore, rules: RuleStore, on_change: Callable[[], object]
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, name, {"active": "/connections", **context}, status_code=status
        )

    async def get_or_404(conn_id: str) -> ConnectionSpec:
        spec: ConnectionSpec | None = await run(store.get, conn_id)
        if spec is None:
            raise ApiError(404, f"connection {conn_id} not found")
        return spec

    def form_page(request: Request, values: dict[str, str], spec: ConnectionSpec | None, error: str = "",
                  status: int = 200) -> HTMLResponse:  # fmt: skip
        context = {"values": values, "spec": spec, "error": error, "protocols": PROTOCOLS}
        return page(request, "connection_form.html", context, status)

    def stored(form: dict[str, str], current: ConnectionSpec | None) -> ConnectionSpec:
        spec = parse_connection(connection_body(form), keep=current)
        clash = store.by_name(spec.name)
        if clash is not None and (current is None or clash.id != current.id):
            raise ApiError(409, f"a connection named {spec.name!r} exists", "name")
        saved = store.save(spec)
        on_change()
        return saved

    async def save(request: Request, current: ConnectionSpec | None) -> Response:
        form = await posted_form(request)
        try:
            await run(stored, form, current)
        except ApiError as exc:
            return form_page(request, form, current, exc.message, 400)
        return RedirectResponse("/connections", status_code=303)

    @router.get("/connections", response_class=HTMLResponse)
    async def connections(request: Request) -> HTMLResponse:
        conns = [connection_doc(c) for c in await run(store.load)]
        return page(request, "connections.html", {"connections": conns})

    @router.get("/connections/new", response_class=HTMLResponse)
    async def new(request: Request) -> HTMLResponse:
        return form_page(request, connection_values(None), None)

    @router.post("/connections/new", response_class=HTMLResponse)
    async def create(request: Request) -> Response:
        return await save(request, None)

    @router.get("/connections/{conn_id}/edit", response_class=HTMLResponse)
    async def edit(request: Request, conn_id: str) -> HTMLResponse:
        spec = await found(request, store.get, conn_id, "connection", "/connections")
        if isinstance(spec, HTMLResponse):
            return spec
        return form_page(request, connection_values(spec), spec)

    @router.post("/connections/{conn_id}/edit", response_class=HTMLResponse)
    async def update(request: Request, conn_id: str) -> Response:
        return await save(request, await get_or_404(conn_id))

    @router.post("/connections/{conn_id}/test", response_class=HTMLResponse)
    async def test(request: Request, conn_id: str) -> HTMLResponse:
        spec = await get_or_404(conn_id)
        return page(request, "_connection_test.html", {"spec": spec, "result": await probe(spec)})

    @router.get("/connections/{conn_id}/delete", response_class=HTMLResponse)
    async def confirm_delete(request: Request, conn_id: str) -> HTMLResponse:
        spec = await found(request, store.get, conn_id, "connection", "/connections")
        if isinstance(spec, HTMLResponse):
            return spec
        users = [r.name for r in await run(rules.load, None) if spec.name in _connections_of(r)]
        context = {"title": f"Delete connection {spec.name}?", "action": f"/connections/{conn_id}/delete",
                   "cancel": "/connections", "what": f"connection {spec.name!r}",
                   "blocked": f"Rules use it: {', '.join(users)}. Change them first." if users else ""}  # fmt: skip
        return page(request, "confirm_delete.html", context)

    @router.post("/connections/{conn_id}/delete")
    async def delete(conn_id: str) -> RedirectResponse:
        spec = await get_or_404(conn_id)
        if any(spec.name in _connections_of(r) for r in await run(rules.load, None)):
            raise ApiError(409, f"connection {spec.name!r} is used by rules")
        await run(store.delete, spec)
        await run(on_change)
        return RedirectResponse("/connections", status_code=303)

    return router
