"""Score configs against a running service: create, read, change, archive and delete them, each refusal of a
config, and each check of a score that names one (type, range, category, archived, unknown)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.service import ServiceProcess
from tests.integration.test_rules_e2e import call

CONFIGS = "/api/v1/score-configs"


def create(svc: ServiceProcess, **config: Any) -> dict[str, Any]:
    status, doc = call(svc, "POST", CONFIGS, {"name": f"cfg-{uuid.uuid4().hex[:8]}", **config})
    assert status == 201, doc
    return dict(doc)


def score(svc: ServiceProcess, config: dict[str, Any], **fields: Any) -> tuple[int, Any]:
    body = {"name": config["name"], "session_id": "s", "config_id": config["id"], **fields}
    return call(svc, "POST", "/api/v1/scores", body)


def refused(svc: ServiceProcess, config: dict[str, Any], field: str, message: str, **fields: Any) -> None:
    status, doc = score(svc, config, **fields)
    assert (status, doc) == (
        400,
        {"error": {"code": "validation_error", "message": f"{field}: {message}", "field": field}},
    )


def stored(svc: ServiceProcess, answer: Any) -> dict[str, Any]:
    status, doc = call(svc, "GET", f"/api/v1/scores/{answer['score_ids'][0]}")
    assert status == 200, doc
    return dict(doc)


def test_create_read_change_and_delete(service: ServiceProcess) -> None:
    made = create(service, data_type="NUMERIC", min_value=0, max_value=1, description="0..1")
    assert made["version"] == 1 and len(made["id"]) == 32
    assert made | {"id": "", "version": 0} == {
        "id": "", "name": made["name"], "data_type": "NUMERIC", "min_value": 0.0, "max_value": 1.0,
        "categories": None, "description": "0..1", "archived": False, "version": 0,
    }  # fmt: skip
    path = f"{CONFIGS}/{made['id']}"
    assert call(service, "GET", path) == (200, made)
    assert made in call(service, "GET", CONFIGS)[1]["score_configs"]
    status, changed = call(service, "PATCH", path, {"max_value": 5, "archived": True})
    assert (status, changed["max_value"], changed["archived"], changed["version"]) == (200, 5.0, True, 2)
    assert call(service, "POST", CONFIGS, {"name": made["name"], "data_type": "BOOLEAN"})[0] == 409
    other = create(service, data_type="BOOLEAN")
    assert call(service, "PATCH", f"{CONFIGS}/{other['id']}", {"name": made["name"]})[0] == 409
    assert call(service, "DELETE", path) == (200, {"deleted": made["id"]})
    assert call(service, "GET", path)[0] == 404
    assert call(service, "DELETE", path)[0] == 404
    assert (
        call(service, "POST", CONFIGS, {"name": made["name"], "data_type": "BOOLEAN"})[0] == 201
    )  # name free


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"data_type": "PERCENT"}, "data_type"),
        ({"data_type": "NUMERIC", "min_value": 2, "max_value": 1}, "max_value"),
        ({"data_type": "NUMERIC", "min_value": float("inf")}, "min_value"),
        ({"data_type": "BOOLEAN", "min_value": 0}, "min_value"),
        ({"data_type": "CATEGORICAL"}, "categories"),
        ({"data_type": "CATEGORICAL", "categories": {}}, "categories"),
        ({"data_type": "CATEGORICAL", "categories": {"": 1}}, "categories"),
        ({"data_type": "NUMERIC", "categories": {"a": 1}}, "categories"),
        ({"data_type": "CATEGORICAL", "categories": {"a": "high"}}, "categories.a"),
        ({"data_type": "NUMERIC", "colour": "red"}, "colour"),
        ({"data_type": "NUMERIC", "name": ""}, "name"),
    ],
)
def test_a_bad_config_is_a_400_naming_the_field(
    service: ServiceProcess, config: dict[str, Any], field: str
) -> None:
    status, doc = call(service, "POST", CONFIGS, {"name": "bad", **config})
    assert (status, doc["error"]["code"], doc["error"].get("field", "")) == (
        400,
        "validation_error",
        field,
    ), doc


def test_a_numeric_config_checks_type_and_range(service: ServiceProcess) -> None:
    config = create(service, data_type="NUMERIC", min_value=0, max_value=10)
    status, answer = score(service, config, value=10)
    assert status == 201
    got = stored(service, answer)
    assert (got["value"], got["config_id"], got["data_type"]) == (10.0, config["id"], "NUMERIC")
    refused(service, config, "value", f"must be at most 10 (score config {config['name']!r})", value=10.5)
    refused(service, config, "value", f"must be at least 0 (score config {config['name']!r})", value=-1)
    refused(service, config, "data_type", f"score config {config['name']!r} is NUMERIC, not CATEGORICAL", value="x",
            data_type="CATEGORICAL")  # fmt: skip
    refused(service, config, "value", "a NUMERIC score takes a number, not a string", value="x")


def test_a_boolean_config_reads_0_and_1_as_booleans(service: ServiceProcess) -> None:
    config = create(service, data_type="BOOLEAN")
    got = stored(service, score(service, config, value=1)[1])  # inferred NUMERIC, read as BOOLEAN
    assert (got["data_type"], got["passed"], got["value"]) == ("BOOLEAN", True, 1.0)
    refused(service, config, "value", "a BOOLEAN score takes true/false or 0/1", value=0.5)


def test_a_categorical_config_gives_the_label_its_value(service: ServiceProcess) -> None:
    config = create(service, data_type="CATEGORICAL", categories={"good": 1, "meh": 0.5, "bad": 0})
    got = stored(service, score(service, config, value="meh")[1])
    assert (got["data_type"], got["string_value"], got["value"]) == ("CATEGORICAL", "meh", 0.5)
    refused(
        service,
        config,
        "value",
        f"must be one of good, meh, bad (score config {config['name']!r})",
        value="ok",
    )
    refused(service, config, "value", "a CATEGORICAL score takes a string, not a number", value=1)


def test_an_archived_or_unknown_config_is_refused(service: ServiceProcess) -> None:
    config = create(service, data_type="NUMERIC")
    assert call(service, "PATCH", f"{CONFIGS}/{config['id']}", {"archived": True})[0] == 200
    refused(
        service, config, "config_id", f"score config {config['id']} ({config['name']!r}) is archived", value=1
    )
    refused(service, {**config, "id": "nope"}, "config_id", "no score config nope", value=1)


def test_config_errors_in_a_list_are_207_items_in_order(service: ServiceProcess) -> None:
    config = create(service, data_type="NUMERIC", max_value=1)
    item = {"name": "n", "session_id": "s", "config_id": config["id"]}
    status, doc = call(service, "POST", "/api/v1/scores",
                       [{**item, "value": 2}, {**item, "value": "x", "data_type": "NUMERIC"}, {**item, "value": 1}])  # fmt: skip
    assert status == 207
    assert (doc["accepted"], [(e["index"], e["field"]) for e in doc["errors"]]) == (
        1,
        [(0, "value"), (1, "value")],
    )
