"""The scores API against a running service: every field, the type rules, each error (status, field, message),
partial lists, idempotency by score_id (across months of timestamp, names, projects and a restart), delete
(also after a restart), a score posted before its trace, the trace view's scores and judge spans, filters and
cursor paging, and the metric."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.api.params import iso_ns
from tests import builders
from tests.integration.service import ServiceProcess, http
from tests.integration.test_rules_e2e import JS, call

SCORES = "/api/v1/scores"


def tid() -> str:
    return uuid.uuid4().hex


def post(svc: ServiceProcess, body: Any, expect: int) -> Any:
    status, doc = call(svc, "POST", SCORES, body)
    assert status == expect, doc
    return doc


def stored(svc: ServiceProcess, score_id: str) -> dict[str, Any]:
    status, doc = call(svc, "GET", f"{SCORES}/{score_id}")
    assert status == 200, doc
    return dict(doc)


def final_rows(svc: ServiceProcess, score_id: str) -> list[list[Any]]:
    return svc.sql(f"SELECT Name, Project, Value FROM scores FINAL WHERE ScoreId = '{score_id}'")


def test_one_score_with_every_field(service: ServiceProcess) -> None:
    trace = "ABCDEF" + tid()[6:]
    body = {
        "name": "helpfulness", "value": 0.75, "trace_id": trace, "observation_id": "ABCDEF1234567890",
        "session_id": "sess-1", "dataset_run_id": "run-1", "score_id": f"s-{tid()}", "data_type": "NUMERIC",
        "comment": "mostly", "metadata": {"reviewer": "ann", "n": 2, "tags": ["a"]},
        "timestamp": "2026-03-01T12:00:00.5+02:00", "project": "shop", "source": "ANNOTATION",
    }  # fmt: skip
    answer = post(service, body, 201)
    assert answer == {"accepted": 1, "score_ids": [body["score_id"]], "errors": []}
    got = stored(service, body["score_id"])
    assert {k: got[k] for k in ("trace_id", "observation_id", "session_id", "dataset_run_id")} == {
        "trace_id": trace.lower(),
        "observation_id": "abcdef1234567890",
        "session_id": "sess-1",
        "dataset_run_id": "run-1",
    }
    assert (got["name"], got["value"], got["data_type"], got["comment"]) == (
        "helpfulness",
        0.75,
        "NUMERIC",
        "mostly",
    )
    assert (got["project"], got["source"], got["string_value"], got["passed"]) == (
        "shop",
        "ANNOTATION",
        "",
        None,
    )
    assert got["metadata"] == {"reviewer": "ann", "n": "2", "tags": '["a"]'}
    assert got["timestamp"] == "2026-03-01T10:00:00.500000Z"
    assert got["trace_start"] == got["timestamp"]  # no trace stored: the score's own time


def test_without_score_id_one_is_generated_and_defaults_apply(service: ServiceProcess) -> None:
    before = time.time()
    answer = post(service, {"name": "thumbs", "value": True, "trace_id": tid()}, 201)
    (score_id,) = answer["score_ids"]
    got = stored(service, score_id)
    assert (got["project"], got["source"], got["data_type"]) == ("default", "API", "BOOLEAN")
    stamp = got["timestamp"].replace("Z", "+00:00")
    assert datetime.fromisoformat(stamp).timestamp() >= before - 1  # "now" at the server


@pytest.mark.parametrize(
    ("fields", "data_type", "value", "string_value", "passed"),
    [
        ({"value": 3}, "NUMERIC", 3.0, "", None),
        ({"value": -0.5, "data_type": "NUMERIC"}, "NUMERIC", -0.5, "", None),
        ({"value": True}, "BOOLEAN", 1.0, "", True),
        ({"value": False}, "BOOLEAN", 0.0, "", False),
        ({"value": 1, "data_type": "BOOLEAN"}, "BOOLEAN", 1.0, "", True),
        ({"value": 0, "data_type": "BOOLEAN"}, "BOOLEAN", 0.0, "", False),
        ({"value": "positive"}, "CATEGORICAL", None, "positive", None),
        ({"value": "neg", "data_type": "CATEGORICAL"}, "CATEGORICAL", None, "neg", None),
    ],
)
def test_type_rules_and_inference(
    service: ServiceProcess,
    fields: dict[str, Any],
    data_type: str,
    value: float | None,
    string_value: str,
    passed: bool | None,
) -> None:
    (score_id,) = post(service, {"name": "t", "session_id": "s", **fields}, 201)["score_ids"]
    got = stored(service, score_id)
    assert (got["data_type"], got["value"], got["string_value"], got["passed"]) == (
        data_type,
        value,
        string_value,
        passed,
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "must not be empty"),
        ({"name": None}, "name", "is required"),
        ({"value": None}, "value", "is required"),
        ({"value": True, "data_type": "NUMERIC"}, "value", "a NUMERIC score takes a number, not a bool"),
        ({"value": 0.5, "data_type": "BOOLEAN"}, "value", "a BOOLEAN score takes true/false or 0/1"),
        ({"value": 2, "data_type": "CATEGORICAL"}, "value", "a CATEGORICAL score takes a string, not a number"),
        ({"value": [1]}, "value", "takes a number, a bool or a string, not a list"),
        ({"data_type": "PERCENT"}, "data_type", "must be one of NUMERIC, BOOLEAN, CATEGORICAL"),
        ({"trace_id": "xyz"}, "trace_id", "must be 32 hex digits"),
        ({"observation_id": "123"}, "observation_id", "must be 16 hex digits"),
        ({"trace_id": None, "session_id": "s", "observation_id": "a" * 16}, "observation_id",
         "needs trace_id (the trace the span belongs to)"),
        ({"trace_id": None}, "trace_id", "a score names a trace_id, a session_id or a dataset_run_id"),
        ({"score_id": "a/b"}, "score_id", "must be 1 to 200 characters of A-Z a-z 0-9 . _ : -"),
        ({"comment": 5}, "comment", "must be a string, not a number"),
        ({"timestamp": "yesterday"}, "timestamp", "must be an RFC 3339 date and time with an offset"),
        ({"timestamp": "2026-03-01T10:00:00"}, "timestamp", "must be an RFC 3339 date and time with an offset"),
        ({"source": "EVAL"}, "source", "must be one of API, ANNOTATION"),
        ({"project": " "}, "project", "must not be empty"),
        ({"traceId": "a" * 32}, "traceId", "unknown field"),
    ],
)  # fmt: skip
def test_each_error_is_a_400_naming_the_field(
    service: ServiceProcess, fields: dict[str, Any], field: str, message: str
) -> None:
    body = {k: v for k, v in ({"name": "n", "value": 1, "trace_id": tid()} | fields).items() if v is not None}
    doc = post(service, body, 400)
    assert doc == {"error": {"code": "validation_error", "message": f"{field}: {message}", "field": field}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"42", "the body must be a score (a JSON object) or a list of scores"),
        (b'"x"', "the body must be a score (a JSON object) or a list of scores"),
        (json.dumps([{"name": "n", "value": 1, "session_id": "s"}] * 1001).encode(), "at most 1000 scores per request, not 1001"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_scores_is_a_400(service: ServiceProcess, body: bytes, message: str) -> None:
    status, _, raw = http("POST", service.api + SCORES, body, JS)
    assert (status, json.loads(raw)) == (
        400,
        {"error": {"code": "validation_error", "message": message, "field": "body"}},
    )


def test_a_list_stores_the_good_items_and_answers_207_for_the_bad(service: ServiceProcess) -> None:
    good = {"name": "n", "value": 1, "trace_id": tid()}
    answer = post(service, [good, {**good, "value": "x", "data_type": "NUMERIC"}, good, {"name": "n"}], 207)
    assert answer["accepted"] == 2 and len(answer["score_ids"]) == 2
    assert answer["errors"] == [
        {"index": 1, "field": "value", "message": "a NUMERIC score takes a number, not a string"},
        {"index": 3, "field": "value", "message": "is required"},
    ]
    assert all(stored(service, i)["trace_id"] == good["trace_id"] for i in answer["score_ids"])
    assert post(service, [{"name": ""}], 207) == {
        "accepted": 0,
        "score_ids": [],
        "errors": [{"index": 0, "field": "name", "message": "must not be empty"}],
    }
    assert post(service, [good, good], 200)["accepted"] == 2
    assert post(service, [], 200) == {"accepted": 0, "score_ids": [], "errors": []}


def test_a_repost_replaces_across_months_names_and_projects(service: ServiceProcess) -> None:
    score_id = f"idem-{tid()}"
    first = {
        "name": "a",
        "value": 0.1,
        "session_id": "s",
        "score_id": score_id,
        "timestamp": "2026-05-10T00:00:00Z",
    }
    post(service, first, 201)
    # an earlier month (another partition, an older version), another name and project
    post(
        service,
        {**first, "name": "b", "value": 0.2, "project": "other", "timestamp": "2025-01-02T00:00:00Z"},
        201,
    )
    assert final_rows(service, score_id) == [["b", "other", 0.2]]
    # in a list, repeated: the last one counts
    post(service, [{**first, "value": 0.3}, {**first, "value": 0.4}], 200)
    assert final_rows(service, score_id) == [["a", "default", 0.4]]
    post(service, {**first, "value": 0.5, "timestamp": "2026-05-11T00:00:00Z"}, 201)  # a plain newer version
    assert final_rows(service, score_id) == [["a", "default", 0.5]]
    assert stored(service, score_id)["timestamp"] == "2026-05-11T00:00:00Z"


def test_a_score_posted_before_its_trace_is_found_once_the_trace_lands(service: ServiceProcess) -> None:
    trace = tid()
    early = post(service, {"name": "early", "value": 1, "trace_id": trace}, 201)["score_ids"][0]
    assert stored(service, early)["project"] == "default"
    now = time.time_ns()
    span = builders.otlp_span(trace_id=trace, span_id="1" * 16, name="agent", start_ns=now)
    assert (
        call(
            service,
            "POST",
            "/api/v1/traces",
            builders.otlp_request(span, resource={"tracejudge.project": "shop"}),
        )[0]
        == 200
    )
    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace}'", 1)
    late = post(service, {"name": "late", "value": 2, "trace_id": trace, "observation_id": "1" * 16}, 201)[
        "score_ids"
    ][0]
    late_doc = stored(service, late)
    assert late_doc["project"] == "shop"  # the stored trace's
    assert late_doc["trace_start"] == iso_ns(now)  # the stored trace's start
    view = service.get_json(f"/api/v1/traces/{trace}")
    assert {s["score_id"] for s in view["scores"]} == {early, late}
    assert view["judge_spans"] == []
    listed = service.get_json(f"{SCORES}?trace_id={trace.upper()}")
    assert [s["name"] for s in listed["scores"]] == ["late", "early"]  # newest first


def test_the_trace_view_lists_judge_spans(service: ServiceProcess) -> None:
    trace = tid()
    app_span = builders.otlp_span(trace_id=trace, span_id="1" * 16, name="agent")
    judge = builders.otlp_span(trace_id=trace, span_id="2" * 16, parent_span_id="1" * 16, name="judge r/s")
    export = builders.otlp_request(app_span)
    export["resourceSpans"][0]["scopeSpans"].append({"scope": {"name": "tracejudge.judge"}, "spans": [judge]})
    assert call(service, "POST", "/api/v1/traces", export)[0] == 200
    service.wait_for(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace}'", 2)
    view = service.get_json(f"/api/v1/traces/{trace}")
    assert [s["span_id"] for s in view["judge_spans"]] == ["2" * 16]
    assert view["span_count"] == 2


def test_filters_and_cursor_paging(service: ServiceProcess) -> None:
    project, trace = f"page-{tid()[:8]}", tid()
    base = {"trace_id": trace, "project": project, "value": 1}
    scores = [
        {**base, "name": "p", "timestamp": f"2026-01-0{d}T00:00:00Z", "session_id": f"s{d % 2}",
         "observation_id": f"{d:016x}", "source": "API" if d % 2 else "ANNOTATION"}
        for d in range(1, 8)
    ]  # fmt: skip
    ids = post(service, scores, 200)["score_ids"]
    seen, cursor, pages = [], None, 0
    while True:
        doc = service.get_json(
            f"{SCORES}?project={project}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        )
        seen += [s["score_id"] for s in doc["scores"]]
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (ids[::-1], 3)

    def names(query: str) -> list[str]:
        return [s["score_id"] for s in service.get_json(f"{SCORES}?project={project}&{query}")["scores"]]

    assert names("session_id=s1") == [ids[6], ids[4], ids[2], ids[0]]
    assert names("source=ANNOTATION") == [ids[5], ids[3], ids[1]]
    assert names(f"observation_id={3:016X}") == [ids[2]]
    assert names("since=2026-01-03T00:00:00Z&until=2026-01-05T00:00:00Z") == [ids[3], ids[2]]
    assert names("name=q") == []
    assert names("rule_id=nope") == []
    assert names(f"trace_id={trace}&limit=1") == [ids[6]]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("cursor=bm90LWEtY3Vyc29y", 400, "cursor"),
        ("trace_id=abc", 400, "trace_id"),
        ("observation_id=zz", 400, "observation_id"),
        ("since=soon", 400, "since"),
        ("until=later", 400, "until"),
        ("limit=0", 422, "limit"),
        ("limit=1001", 422, "limit"),
    ],
)
def test_bad_list_parameters(service: ServiceProcess, query: str, status: int, field: str) -> None:
    got, _, raw = http("GET", f"{service.api}{SCORES}?{query}")
    assert (got, json.loads(raw)["error"]["field"]) == (status, field)


def test_get_and_delete_an_unknown_score_are_404(service: ServiceProcess) -> None:
    for method in ("GET", "DELETE"):
        status, doc = call(service, method, f"{SCORES}/no-such-score")
        assert (status, doc["error"]["code"]) == (404, "not_found")


def test_the_metric_counts_by_source_data_type_and_outcome(service: ServiceProcess) -> None:
    post(
        service, [{"name": "m", "value": "x", "session_id": "s", "source": "ANNOTATION"}, {"name": "m"}], 207
    )
    _, _, raw = http("GET", service.api + "/metrics")
    text = raw.decode()
    assert (
        'tracejudge_api_scores_total{data_type="CATEGORICAL",outcome="accepted",source="ANNOTATION"}' in text
    )
    assert 'tracejudge_api_scores_total{data_type="unknown",outcome="invalid",source="API"}' in text


def test_delete_and_idempotency_hold_across_a_restart(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path / "data").start()
    try:
        keep, gone = f"keep-{tid()}", f"gone-{tid()}"
        body = {"name": "n", "value": 1, "session_id": "s", "timestamp": "2026-02-01T00:00:00Z"}
        post(svc, [{**body, "score_id": keep}, {**body, "score_id": gone}], 200)
        assert call(svc, "DELETE", f"{SCORES}/{gone}") == (200, {"deleted": gone})
        assert call(svc, "GET", f"{SCORES}/{gone}")[0] == 404
        assert svc.stop() == 0
        svc.start()
        assert call(svc, "GET", f"{SCORES}/{gone}")[0] == 404
        assert svc.scalar(f"SELECT count() FROM scores FINAL WHERE ScoreId = '{gone}'") == 0
        post(svc, {**body, "score_id": keep, "value": 2, "timestamp": "2025-12-31T23:59:59Z"}, 201)
        assert final_rows(svc, keep) == [["n", "default", 2.0]]
    finally:
        if svc.proc is not None and svc.proc.poll() is None:
            assert svc.stop() == 0, svc.output
