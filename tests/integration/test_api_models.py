"""Every route of the API answers what it declares: each answer of a running service, success or error,
validates against the route's `response_model` (or `ErrorBody`) with no key the model does not declare; every
`/api/` route declares one; errors have one small shape that never carries the request back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any
from unittest.mock import Mock

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from connectors.api.app import build_api_app
from connectors.api.errors import ErrorBody, install_error_handlers
from dataflow.errors import QueryError
from dataflow.judging.connections import ConnectionSpec
from tests import builders
from tests.integration.service import ServiceProcess, http
from tests.integration.test_rules_e2e import JS, call

# Routes that answer plain text or Prometheus' format, not JSON; and the web UI's pages (HTML, tests/ui/).
NOT_JSON = frozenset({"/healthz", "/readyz", "/metrics"})


def answers_json(path: str) -> bool:
    return path not in NOT_JSON and path.startswith("/api/")


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """The routes of an app, into included routers (which FastAPI keeps as one route each, lazily)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


ROUTES = {
    (method, route.path): route
    for route in api_routes(build_api_app(Mock()).routes)
    for method in route.methods
}
KEY_ROUTES = frozenset(
    {("GET", "/api/v1/keys"), ("POST", "/api/v1/keys"), ("DELETE", "/api/v1/keys/{key_id}")}
)
CODE = {"type": "code", "name": "short", "function": "length_between", "args": {"max": 100}}


def conforms(model: Any, doc: Any) -> None:
    """`doc` validates against `model`, and holds no key the model does not declare."""
    adapter = TypeAdapter(model)
    assert adapter.dump_python(adapter.validate_python(doc), mode="json", exclude_unset=True) == doc


class Checker:
    """Calls routes of a service and checks each answer against the route's declared model."""

    def __init__(self, svc: ServiceProcess) -> None:
        self.svc = svc
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, method: str, route: str, path: str = "", body: Any = None, expect: int = 200) -> Any:
        status, doc = call(self.svc, method, path or route, body)
        assert status == expect, (method, path or route, doc)
        model = ROUTES[(method, route)].response_model if status < 400 else ErrorBody
        conforms(model, doc)
        self.seen.add((method, route))
        return doc


def test_every_api_route_declares_its_answer() -> None:
    missing = [
        key for key, route in ROUTES.items() if answers_json(route.path) and route.response_model is None
    ]
    assert missing == []
    assert any(path.startswith("/api/v1/rules") for _, path in ROUTES)  # the routers are included


def test_the_openapi_schema_shows_the_models(service: ServiceProcess) -> None:
    doc = service.get_json("/openapi.json")
    schemas = doc["components"]["schemas"]
    assert {
        "RuleStatus",
        "StatusCounts",
        "TraceView",
        "ConnectionView",
        "ErrorBody",
        "TraceEvalRuleView",
        "ScoreView",
        "ScoresPosted",
        "ScoreConfig",
    } <= set(schemas)
    assert list(schemas["StatusCounts"]["properties"])[:2] == ["traces_seen", "filtered_out"]
    missing = doc["paths"]["/api/v1/rules/{rule_id}"]["get"]["responses"]["404"]["content"]
    assert missing["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in json.dumps(
        doc["paths"]
    )  # FastAPI's 422 shape, which we do not answer


def test_every_route_answers_its_declared_model(service: ServiceProcess) -> None:
    check = Checker(service)
    project = f"models-{uuid.uuid4().hex[:8]}"
    trace_id = uuid.uuid4().hex
    now = time.time_ns()
    agent = builders.otlp_span(trace_id=trace_id, span_id="1" * 16, name="agent", start_ns=now,
                               attributes={"output.value": "ok"})  # fmt: skip
    agent["events"] = [{"timeUnixNano": str(now), "name": "e", "attributes": []}]
    bad = {"traceId": "0" * 32, "spanId": "2" * 16, "name": "bad"}
    export = builders.otlp_request(agent, bad, resource={"tracejudge.project": project})
    ingested = check("POST", "/api/v1/traces", body=export)
    assert ingested["partialSuccess"]["rejectedSpans"] == "1"
    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'", 1)
    trace = check("GET", "/api/v1/traces/{trace_id}", f"/api/v1/traces/{trace_id}")
    assert trace["spans"][0]["events"][0]["name"] == "e"
    check("GET", "/api/v1/traces/{trace_id}", f"/api/v1/traces/{'ab' * 16}", expect=404)
    check("GET", "/api/v1/traces", f"/api/v1/traces?project={project}")
    check("POST", "/api/v1/sql", body={"query": "SELECT 1 AS one, now() AS t, [1, 2] AS a"})

    conn = {"name": f"c-{project}", "provider": "openai", "protocol": "chat_completions",
            "api_key_env": "TRACEJUDGE_TEST_UNSET_KEY", "model": "m"}  # fmt: skip
    created = check("POST", "/api/v1/connections", body=conn, expect=201)
    cid = created["id"]
    check("PUT", "/api/v1/connections", body={**conn, "model": "m2"})
    check("GET", "/api/v1/connections")
    check("GET", "/api/v1/connections/{conn_id}", f"/api/v1/connections/{cid}")
    check("PATCH", "/api/v1/connections/{conn_id}", f"/api/v1/connections/{cid}", {"model": "m3"})
    check("POST", "/api/v1/connections", body=conn, expect=409)

    rule = {"name": "r", "project": project, "scorers": [CODE]}
    rid = check("POST", "/api/v1/rules", body=rule, expect=201)["id"]
    check("PUT", "/api/v1/rules", body={**rule, "sampling_rate": 0.5})
    check("GET", "/api/v1/rules", f"/api/v1/rules?project={project}")
    check("GET", "/api/v1/rules/{rule_id}", f"/api/v1/rules/{rid}")
    check("PATCH", "/api/v1/rules/{rule_id}", f"/api/v1/rules/{rid}", {"enabled": False})
    check("POST", "/api/v1/rules/test", body={"rule": rule, "window": {"trace_ids": [trace_id]}})
    check("GET", "/api/v1/rules/{rule_id}/status", f"/api/v1/rules/{rid}/status")
    window = {"since": "2000-01-01T00:00:00Z"}
    rewind, backfill = "/api/v1/rules/{rule_id}/rewind", "/api/v1/rules/{rule_id}/backfill"
    check("POST", rewind, f"/api/v1/rules/{rid}/rewind", {**window, "dry_run": True})
    job = check("POST", rewind, f"/api/v1/rules/{rid}/rewind", window, expect=202)["job_id"]
    check("POST", rewind, f"/api/v1/rules/{rid}/rewind", {"since": "yesterday"}, expect=400)
    check("POST", backfill, f"/api/v1/rules/{rid}/backfill", {"last": 3}, expect=202)
    check("POST", "/api/v1/score-traces", body={"trace_ids": [trace_id], "rule_id": rid, "dry_run": True})
    check("POST", "/api/v1/score-traces", body={"trace_ids": [trace_id], "scorers": [CODE]}, expect=202)
    check("GET", "/api/v1/jobs", f"/api/v1/jobs?rule_id={rid}")
    check("GET", "/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job}")
    check("GET", "/api/v1/jobs/{job_id}", "/api/v1/jobs/nope", expect=404)
    check("POST", "/api/v1/jobs/{job_id}/cancel", f"/api/v1/jobs/{job}/cancel")
    check("POST", "/api/v1/rules", body={**rule, "filter": "output = = 1"}, expect=400)

    seed = {
        "name": "helpful",
        "matchType": "SPAN_NAME",
        "matchValue": "agent",
        "connectionId": cid,
        "criteria": "c",
    }
    tpath = f"/api/v1/projects/{project}/trace-eval-rules"
    troute = "/api/v1/projects/{project}/trace-eval-rules"
    check("POST", troute, tpath, seed, expect=201)
    assert [r["connectionId"] for r in check("GET", troute, tpath)] == [cid]
    check("POST", troute, tpath, {**seed, "matchType": "NAME"}, expect=400)

    check("DELETE", "/api/v1/rules/{rule_id}", f"/api/v1/rules/{rid}")
    check("DELETE", "/api/v1/rules/{rule_id}", f"/api/v1/rules/{rid}", expect=404)
    check(
        "DELETE", "/api/v1/connections/{conn_id}", f"/api/v1/connections/{cid}", expect=409
    )  # helpful uses it
    config = {"name": f"cfg-{project}", "data_type": "CATEGORICAL", "categories": {"good": 1, "bad": 0}}
    cfg = check("POST", "/api/v1/score-configs", body=config, expect=201)["id"]
    check("POST", "/api/v1/score-configs", body=config, expect=409)
    check("POST", "/api/v1/score-configs", body={**config, "categories": None}, expect=400)
    check("GET", "/api/v1/score-configs")
    check("GET", "/api/v1/score-configs/{config_id}", f"/api/v1/score-configs/{cfg}")
    check("PATCH", "/api/v1/score-configs/{config_id}", f"/api/v1/score-configs/{cfg}", {"description": "d"})
    labelled = {"name": "label", "value": "good", "trace_id": trace_id, "config_id": cfg}
    check("POST", "/api/v1/scores", body=labelled, expect=201)
    check("DELETE", "/api/v1/score-configs/{config_id}", f"/api/v1/score-configs/{cfg}")
    check("GET", "/api/v1/score-configs/{config_id}", f"/api/v1/score-configs/{cfg}", expect=404)
    check("POST", "/api/v1/scores", body=labelled, expect=400)

    score = {"name": "helpful", "value": 0.5, "trace_id": trace_id, "metadata": {"k": 1}}
    posted = check("POST", "/api/v1/scores", body=score, expect=201)
    check("POST", "/api/v1/scores", body=[score, {**score, "value": None}], expect=207)
    check("POST", "/api/v1/scores", body=[score], expect=200)
    check("POST", "/api/v1/scores", body={**score, "trace_id": "x"}, expect=400)
    sid = posted["score_ids"][0]
    check("GET", "/api/v1/scores", f"/api/v1/scores?trace_id={trace_id}&limit=1")
    check("GET", "/api/v1/scores/{score_id}", f"/api/v1/scores/{sid}")
    assert check("GET", "/api/v1/traces/{trace_id}", f"/api/v1/traces/{trace_id}")["scores"]
    check("DELETE", "/api/v1/scores/{score_id}", f"/api/v1/scores/{sid}")
    check("DELETE", "/api/v1/scores/{score_id}", f"/api/v1/scores/{sid}", expect=404)

    check_compat(check, trace_id)

    # The keys routes: tests/integration/test_auth.py (a key, once made, turns authentication on).
    declared = {key for key, route in ROUTES.items() if answers_json(route.path) and key not in KEY_ROUTES}
    assert declared - check.seen == set()


def check_compat(check: Checker, trace_id: str) -> None:
    """The Langfuse and InteractiveAI SDKs' routes (connectors/api/compat.py), successes and errors."""
    span = builders.otlp_span(trace_id=trace_id, span_id="3" * 16, name="sdk", start_ns=time.time_ns())
    spans = builders.otlp_request(span, {"traceId": "0" * 32, "spanId": "4" * 16, "name": "bad"})
    assert check("POST", "/api/public/otel/v1/traces", body=spans)["partialSuccess"]["rejectedSpans"] == "1"
    score = {"id": f"lf-{trace_id[:8]}", "traceId": trace_id, "name": "n", "value": 1, "environment": "e"}
    check("POST", "/api/public/scores", body=[score], expect=202)
    partial = check("POST", "/api/public/scores", body=[score, {**score, "traceId": "x"}], expect=207)
    assert (partial["accepted"], partial["rejected"], partial["errors"][0]["field"]) == (1, 1, "traceId")
    check("POST", "/api/public/scores", body=score)
    refused = check("POST", "/api/public/scores", body={**score, "dataType": "TEXT"}, expect=400)
    assert refused["error"]["field"] == "dataType" and refused["error"]["message"].startswith("dataType: ")
    (project,) = check("GET", "/api/platform/v1/projects")["data"]
    route = "/api/platform/v1/organizations/{org_id}/projects/{platform_project}/scores"
    path = f"/api/platform/v1/organizations/{project['orgId']}/projects/{project['id']}/scores"
    check("POST", route, path, {"id": f"ia-{trace_id[:8]}", "trace_id": trace_id, "name": "n", "value": 2},
          expect=201)  # fmt: skip
    check("POST", route, path, {"trace_id": trace_id, "name": "n"}, expect=400)
    check("POST", route, path.replace(project["id"], "elsewhere"), {"name": "n"}, expect=404)
    for prefix in ("/api/public", "/api/platform"):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            check(method, prefix + "/{rest:path}", prefix + "/v2/prompts", {} if method != "GET" else None,
                  expect=404)  # fmt: skip


@pytest.mark.parametrize("size", [100_001, 100_000])
def test_a_huge_query_is_not_echoed(service: ServiceProcess, size: int) -> None:
    query = "SELEC " + "x" * (size - 6)  # too long (422), or as long as allowed and wrong (400)
    status, _, raw = http("POST", service.api + "/api/v1/sql", json.dumps({"query": query}).encode(), JS)
    doc = json.loads(raw)
    conforms(ErrorBody, doc)
    assert (status, doc["error"]["code"]) == (
        (422, "validation_error") if size > 100_000 else (400, "query_error")
    )
    assert len(raw) < 2_000 and "x" * 1_000 not in raw.decode()
    if size > 100_000:
        assert doc["error"]["field"] == "query" and "100000" in doc["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"),
    [
        ("GET", "/api/v1/nothing-here", b"", 404, "not_found", None),
        ("DELETE", "/api/v1/traces", b"", 405, "method_not_allowed", None),
        ("POST", "/api/v1/rules", b"{not json", 422, "validation_error", None),
        ("GET", "/api/v1/traces?limit=0", b"", 422, "validation_error", "limit"),
        ("GET", "/api/v1/traces?since=yesterday", b"", 400, "validation_error", "since"),
        ("GET", "/api/v1/traces/not-an-id", b"", 400, "validation_error", "trace_id"),
        ("POST", "/api/v1/scores", b'{"name": "n", "value": 1}', 400, "validation_error", "trace_id"),
        ("GET", "/api/v1/scores?cursor=x", b"", 400, "validation_error", "cursor"),
        (
            "POST",
            "/api/v1/connections",
            b'{"name": "x", "provider": "nope"}',
            400,
            "validation_error",
            "provider",
        ),
        (
            "POST",
            "/api/v1/connections",
            b'{"name": "x", "api_key": "sk-1"}',
            400,
            "validation_error",
            "api_key",
        ),
    ],
)
def test_errors_have_one_shape(
    service: ServiceProcess, method: str, path: str, body: bytes, status: int, code: str, field: str | None
) -> None:
    got, _, raw = http(method, service.api + path, body, JS)
    doc = json.loads(raw)
    conforms(ErrorBody, doc)
    assert (got, doc["error"]["code"], doc["error"].get("field")) == (status, code, field), doc
    assert "sk-1" not in raw.decode()


def test_an_unexpected_error_is_a_bare_500() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        msg = "secret detail"
        raise RuntimeError(msg)

    @app.get("/stored")
    async def stored() -> (
        None
    ):  # a stored row that no longer validates is the server's fault, not the caller's
        ConnectionSpec.model_validate({"name": "x", "provider": "nope"})

    @app.get("/store-down")
    async def store_down() -> None:  # a query of ours that ClickHouse fails: the caller may retry
        msg = "Connection refused"
        raise QueryError(msg)

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom")
        invalid_row = client.get("/stored")
        down = client.get("/store-down")
    assert (down.status_code, down.headers["Retry-After"], down.json()["error"]["code"]) == (
        503,
        "1",
        "unavailable",
    )
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": "internal_error", "message": "internal error (RuntimeError)"}}
    assert (invalid_row.status_code, invalid_row.json()["error"]["code"]) == (500, "internal_error")
