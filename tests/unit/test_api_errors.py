"""The API's error bodies never carry the request back (issue 13, item 3), whichever part of the input is huge."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from connectors.api.errors import install_error_handlers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = ""
    number: int = 0


def _client() -> TestClient:
    app = FastAPI()

    @app.post("/strict")
    async def strict(body: _Strict) -> dict[str, str]:
        return {}

    install_error_handlers(app)
    return TestClient(app)


@pytest.mark.parametrize(
    "body",
    [
        {"k" * 100_000: 1},  # the key is the field path
        {"number": "9" * 100_000},
        {"text": ["x" * 100_000]},
        {f"extra{i}": "x" * 1000 for i in range(100)},
    ],
    ids=["huge-key", "huge-number", "huge-value", "many-problems"],
)
def test_a_validation_error_does_not_echo_the_body(body: dict[str, Any]) -> None:
    answer = _client().post("/strict", json=body)
    assert answer.status_code == 422
    assert len(answer.content) < 2_000, answer.text[:300]
    assert answer.json()["error"]["code"] == "validation_error"
