"""JSON bodies parsed by orjson (`connectors/api/orjson_body.py`) are accepted and refused as the standard
library's parser would."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, FastAPI
from fastapi.testclient import TestClient

from connectors.api.orjson_body import OrjsonRoute


def client() -> TestClient:
    router = APIRouter(route_class=OrjsonRoute)

    @router.post("/echo")
    async def echo(body: Any = Body(...)) -> dict[str, str]:  # noqa: B008
        return {"repr": repr(body)}

    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def post(text: str) -> Any:
    return client().post("/echo", content=text.encode(), headers={"content-type": "application/json"})


def test_a_body_is_parsed_as_the_standard_library_parses_it() -> None:
    for text in (
        '[{"a": 1.5, "b": [true, null], "c": "é"}]',
        '{"n": NaN}',
        '{"big": 123456789012345678901234}',
    ):
        answer = post(text)
        assert answer.status_code == 200, text
        assert answer.json() == {"repr": repr(json.loads(text))}


def test_a_body_that_is_not_json_is_refused_where_the_standard_library_refuses_it() -> None:
    answer = post('{"a": 1,')
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["type"] == "json_invalid"
    try:
        json.loads('{"a": 1,')
    except json.JSONDecodeError as exc:
        assert error["loc"] == ["body", exc.pos]
