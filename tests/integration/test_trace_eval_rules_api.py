"""Seed 003 trace eval rules through a running service: POST and GET in the seed's shape, the ordinary rule
they become, and end to end through seed-shaped OTLP JSON and the fake LLM: a matching span with output is
judged, a matching span without output is not."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import builders
from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess, http
from tests.integration.test_rules_e2e import FAST_WINDOWS, JS, call
from tests.waiting import eventually

KEY = "app.route'\\%_"  # a quote, a backslash and both LIKE wildcards
VALUE = "it's 50%_off\\"
PROJECT = f"seed3-e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLLMServer) -> Iterator[ServiceProcess]:
    env = {**FAST_WINDOWS, "FAKE_LLM_KEY": "secret"}
    service = ServiceProcess(tmp_path_factory.mktemp("seed3") / "data", env=env).start()
    status, conn = call(service, "POST", "/api/v1/connections", {
        "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm_server.openai_base_url,
        "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 10,
    })  # fmt: skip
    assert status == 201, conn
    yield service
    assert service.stop() == 0, service.output


def connection_id(svc: ServiceProcess) -> str:
    _, doc = call(svc, "GET", "/api/v1/connections")
    return str(next(c["id"] for c in doc["connections"] if c["name"] == "fake"))


def seed_rule(**changes: Any) -> dict[str, Any]:
    return {
        "name": "helpfulness", "enabled": True, "matchType": "SPAN_NAME", "matchValue": "llm.generate",
        "connectionId": "fake", "evaluatorName": "helpfulness",
        "criteria": "The response correctly and helpfully answers the question.",
        "minScore": 0, "maxScore": 1, "threshold": 0.5, **changes,
    }  # fmt: skip


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def path(project: str) -> str:
    return f"/api/v1/projects/{project}/trace-eval-rules"


def test_post_and_get_in_the_seed_shape(svc: ServiceProcess) -> None:
    project, conn_id = f"seed3-{uuid.uuid4().hex[:8]}", connection_id(svc)
    status, headers, raw = http("POST", svc.api + path(project), dumps(seed_rule(connectionId=conn_id)), JS)
    created = json.loads(raw)
    assert status == 201, created
    assert headers["location"] == f"/api/v1/rules/{created['id']}"
    expected = {
        **seed_rule(connectionId=conn_id),
        "matchKey": None,
        "projectId": project,
        "connectionName": "fake",
    }
    assert created == {**expected, "id": created["id"], "minScore": 0.0, "maxScore": 1.0}
    # The same name again: the rule as it is, unchanged, whatever the body says.
    status, again = call(svc, "POST", path(project), seed_rule(criteria="Something else.", matchValue="x"))
    assert (status, again) == (200, created)
    # By attribute, the connection named instead of its id; the answer gives the id either way.
    status, by_attr = call(svc, "POST", path(project), seed_rule(
        name="routed", matchType="ATTRIBUTE", matchKey=KEY, matchValue=VALUE, enabled=False, threshold=None))  # fmt: skip
    assert status == 201, by_attr
    assert (by_attr["matchKey"], by_attr["matchValue"], by_attr["connectionId"]) == (KEY, VALUE, conn_id)
    assert (by_attr["enabled"], by_attr["threshold"]) == (False, None)
    status, listed = call(svc, "GET", path(project))
    assert (status, listed) == (200, [created, by_attr])
    # They are ordinary rules: span scope, one judge, output required.
    _, rules = call(svc, "GET", f"/api/v1/rules?project={project}")
    by_name = {r["name"]: r for r in rules["rules"]}
    assert (by_name["helpfulness"]["scope"], by_name["helpfulness"]["span_names"]) == (
        "span",
        ["llm.generate"],
    )
    assert by_name["helpfulness"]["filter"] == "output != ''"
    assert by_name["routed"]["filter"] == "attributes['app.route''\\%_'] = 'it''s 50%_off\\' AND output != ''"
    judge = by_name["helpfulness"]["scorers"]
    assert [(j["type"], j["name"], j["connection"], j["threshold"]) for j in judge] == [
        ("llm_judge", "helpfulness", "fake", 0.5)
    ]
    # A change through the rules API shows here; a rule of another kind is not listed and keeps its name.
    status, _ = call(svc, "PATCH", f"/api/v1/rules/{created['id']}", {"enabled": False})
    assert status == 200
    status, plain = call(svc, "POST", "/api/v1/rules", {"name": "plain", "project": project, "scorers": [
        {"type": "code", "name": "short", "function": "length_between", "args": {"max": 10}}]})  # fmt: skip
    assert status == 201, plain
    _, listed = call(svc, "GET", path(project))
    assert [(r["name"], r["enabled"]) for r in listed] == [("helpfulness", False), ("routed", False)]
    status, clash = call(svc, "POST", path(project), seed_rule(name="plain"))
    assert status == 409 and clash["error"]["field"] == "name", clash
    assert call(svc, "GET", path(f"other-{project}")) == (200, [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (seed_rule(connectionId="no-such-connection"), "connectionId"),
        (seed_rule(matchType="ATTRIBUTE"), "matchKey"),
        (seed_rule(matchType="NAME"), "matchType"),
        (seed_rule(minScore=1, maxScore=1), "maxScore"),
        (seed_rule(threshold=3), "threshold"),
        (seed_rule(criteria=""), "criteria"),
        (seed_rule(name="x" * 201), "name"),
        (seed_rule(unknown=1), "unknown"),
        ([seed_rule()], ""),
    ],
)
def test_a_bad_rule_is_400_naming_the_field(svc: ServiceProcess, body: Any, field: str) -> None:
    project = f"bad-{uuid.uuid4().hex[:8]}"
    status, doc = call(svc, "POST", path(project), body)
    assert status == 400 and doc["error"]["code"] == "validation_error", doc
    assert doc["error"].get("field", "") == field, doc
    assert call(svc, "GET", path(project)) == (200, [])
    assert call(svc, "GET", f"/api/v1/rules?project={project}")[1]["count"] == 0


def otlp_span(trace_id: str, name: str, output: str | None, **attrs: str) -> dict[str, Any]:
    values = {"input": "What is the capital of France?", **attrs}
    if output is not None:
        values["output"] = output
    span = builders.otlp_span(
        trace_id=trace_id, span_id=trace_id[:16], name=name, duration_ns=2_000_000_000, attributes=values
    )
    return builders.otlp_request(span, resource={"dokimos.project": PROJECT})


def wait_until(svc: ServiceProcess, fetch: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    """Poll `fetch` until `done` says its value is final (results arrive asynchronously)."""
    return eventually(fetch, until=done, timeout=60.0, interval=0.3, message=lambda: f"{what}\n{svc.output}")


def test_only_matching_spans_with_output_are_judged(svc: ServiceProcess) -> None:
    status, by_name = call(svc, "POST", path(PROJECT), seed_rule())
    assert status == 201, by_name
    status, by_attr = call(svc, "POST", path(PROJECT), seed_rule(
        name="routed", evaluatorName="routed_quality", matchType="ATTRIBUTE", matchKey=KEY, matchValue=VALUE))  # fmt: skip
    assert status == 201, by_attr
    cases = {
        "named_with_output": ("llm.generate", "The capital of France is Paris.", {}),
        "named_empty_output": ("llm.generate", "", {}),
        "named_no_output": ("llm.generate", None, {}),
        "other_name": ("llm.generate.v2", "Paris", {}),
        "attr_with_output": ("tool", "Paris", {KEY: VALUE}),
        "attr_no_output": ("tool", None, {KEY: VALUE}),
        "attr_wildcard_value": ("tool", "Paris", {KEY: "it's 50xxoff\\"}),
    }
    ids = {case: uuid.uuid4().hex for case in cases}
    for case, (name, output, attrs) in cases.items():
        status, _, raw = http(
            "POST", svc.api + "/api/v1/traces", dumps(otlp_span(ids[case], name, output, **attrs)), JS
        )
        assert status == 200 and json.loads(raw)["acceptedSpans"] == 1, raw

    def counts() -> list[tuple[int, int]]:
        sts = [call(svc, "GET", f"/api/v1/rules/{r['id']}/status")[1] for r in (by_name, by_attr)]
        return [(s["counts"]["traces_seen"], s["counts"]["scored"]) for s in sts]

    # Every trace decided by both rules, and one trace (one span) scored by each: no other task exists.
    seen = wait_until(svc, counts, lambda c: all(n >= len(cases) for n, _ in c), "every trace decided")
    assert seen == [(len(cases), 1), (len(cases), 1)]
    query = (
        "SELECT RuleName, TraceId, SpanId, Name, Value, Passed, Error FROM scores FINAL "
        f"WHERE Project = '{PROJECT}' ORDER BY RuleName"
    )
    rows = wait_until(svc, lambda: svc.sql(query), lambda r: len(r) >= 2, "two score rows")
    named, attr = ids["named_with_output"], ids["attr_with_output"]
    assert rows == [
        ["helpfulness", named, named[:16], "helpfulness", 1.0, True, ""],
        ["routed", attr, attr[:16], "routed_quality", 1.0, True, ""],
    ]
