"""Rules end to end: the rules API, real OTel exporter spans in, score rows in ClickHouse exactly once,
the rule's status, and a kill -9 mid-stream."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.builders import otlp_request, otlp_span
from tests.integration.service import ServiceProcess, http
from tests.waiting import eventually

JS = {"Content-Type": "application/json"}
FAST_WINDOWS = {"TRACEJUDGE_WINDOWS__SETTLE_S": "0.5", "TRACEJUDGE_RULES__STATUS_INTERVAL_S": "0.5"}


def call(svc: ServiceProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, raw = http(method, svc.api + path, json.dumps(body).encode() if body is not None else b"", JS)
    return status, json.loads(raw) if raw else None


def rules_for(project: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "capital-questions",
            "project": project,
            "scope": "trace",
            "filter": "input ILIKE '%capital%'",
            "scorers": [
                {
                    "type": "code",
                    "name": "mentions_paris",
                    "function": "contains",
                    "args": {"value": "Paris"},
                },
                {"type": "code", "name": "short", "function": "length_between", "args": {"max": 100}},
            ],
        },
        {
            "name": "llm-json",
            "project": project,
            "scope": "span",
            "span_names": ["llm.call"],
            "scorers": [{"type": "code", "name": "valid_json", "function": "json_valid"}],
        },
    ]


def send_traces(svc: ServiceProcess, project: str, questions: list[tuple[str, str]]) -> list[str]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "e2e", "tracejudge.project": project})
    )
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=svc.otlp_grpc, insecure=True)))
    tracer = provider.get_tracer("e2e")
    ids = []
    for question, answer in questions:
        with tracer.start_as_current_span("agent") as root:
            root.set_attribute("input.value", question)
            root.set_attribute("output.value", answer)
            with tracer.start_as_current_span("llm.call") as child:
                child.set_attribute("input.value", question)
                child.set_attribute("output.value", json.dumps({"answer": answer}))
            with tracer.start_as_current_span("tool") as tool:
                tool.set_attribute("output.value", "not json")
        ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return ids


def scores(svc: ServiceProcess, project: str) -> list[list[Any]]:
    return svc.sql(
        "SELECT RuleName, TraceId, SpanId != '' AS on_span, Name, Value, Passed, Error FROM scores FINAL "
        f"WHERE Project = '{project}' ORDER BY RuleName, TraceId, Name"
    )


def wait_scores(svc: ServiceProcess, project: str, n: int, timeout: float = 60.0) -> list[list[Any]]:
    return eventually(
        lambda: scores(svc, project), until=lambda rows: len(rows) >= n, timeout=timeout, interval=0.2,
        message=lambda: f"expected {n} scores\n{svc.output}",
    )  # fmt: skip


def wait_status(svc: ServiceProcess, rule_id: str, traces_seen: int) -> dict[str, Any]:
    """The rule's status once it has seen `traces_seen` traces."""
    return eventually(
        lambda: call(svc, "GET", f"/api/v1/rules/{rule_id}/status")[1],
        until=lambda st: st["counts"]["traces_seen"] >= traces_seen, timeout=20, interval=0.2,
    )  # fmt: skip


@pytest.mark.parametrize("batch_filters", ["false", "true"])
def test_rules_score_real_traces(tmp_path: Path, batch_filters: str) -> None:
    """Both filter paths (per span, per batch: `rules.batch_filters`) store the same scores and decisions."""
    env = {**FAST_WINDOWS, "TRACEJUDGE_RULES__BATCH_FILTERS": batch_filters}
    svc = ServiceProcess(tmp_path / "data", env=env).start()
    try:
        project = f"e2e-{uuid.uuid4().hex[:8]}"
        created = []
        for rule in rules_for(project):
            status, body = call(svc, "POST", "/api/v1/rules", rule)
            assert status == 201, body
            created.append(body)
        time.sleep(0.5)  # other processes reload within rules.reload_interval_s; this one reloaded already
        ids = send_traces(
            svc,
            project,
            [
                ("What is the capital of France?", "Paris"),
                ("What is the capital of Italy?", "Rome, not Paris. " + "x" * 100),
                ("How tall is Everest?", "8849 m"),
            ],
        )
        # capital-questions: traces 0 and 1 (filter), 2 scorers each; llm-json: one llm.call span per trace.
        rows = wait_scores(svc, project, 4 + 3)
        time.sleep(1.5)  # nothing more may arrive
        rows = scores(svc, project)
        trace_scope = sorted((r[1], r[3], r[4], r[5]) for r in rows if r[0] == "capital-questions")
        assert trace_scope == sorted(
            [
                (ids[0], "mentions_paris", 1.0, True),
                (ids[0], "short", 1.0, True),
                (ids[1], "mentions_paris", 1.0, True),
                (ids[1], "short", 0.0, False),
            ]
        )
        span_scope = [r for r in rows if r[0] == "llm-json"]
        assert sorted(r[1] for r in span_scope) == sorted(ids)
        assert all(r[2] == 1 and r[4] == 1.0 and r[6] == "" for r in span_scope)

        # The rule's status: three traces seen by each rule, one filtered out by the trace rule.
        st = wait_status(svc, created[0]["id"], 3)
        counts = st["counts"]
        assert (counts["traces_seen"], counts["scored"], counts["filtered_out"], counts["sampled_out"]) == (
            3,
            2,
            1,
            0,
        )
        metrics = http("GET", svc.api + "/metrics")[2].decode()
        assert (
            'tracejudge_rule_decisions_total{outcome="filtered_out",rule="capital-questions"} 1.0' in metrics
        )
    finally:
        assert svc.stop() == 0, svc.output


def test_rules_api_semantics(service: ServiceProcess) -> None:
    project = f"api-{uuid.uuid4().hex[:8]}"
    rule = rules_for(project)[0]
    status, first = call(service, "POST", "/api/v1/rules", rule)
    assert status == 201 and first["id"] and first["version"] == 1
    status, again = call(service, "POST", "/api/v1/rules", {**rule, "sampling_rate": 0.5})
    assert status == 200 and again == first  # existing name: returned unchanged
    status, replaced = call(service, "PUT", "/api/v1/rules", {**rule, "sampling_rate": 0.5})
    assert status == 200 and replaced["id"] == first["id"] and replaced["version"] == 2
    assert replaced["sampling_rate"] == 0.5
    status, patched = call(service, "PATCH", f"/api/v1/rules/{first['id']}", {"enabled": False})
    assert status == 200 and patched["enabled"] is False and patched["version"] == 3
    status, got = call(service, "GET", f"/api/v1/rules/{first['id']}")
    assert got == patched
    status, listed = call(service, "GET", f"/api/v1/rules?project={project}")
    assert [r["id"] for r in listed["rules"]] == [first["id"]]
    status, put_new = call(service, "PUT", "/api/v1/rules", {**rule, "name": "another"})
    assert status == 201
    status, body = call(service, "PATCH", f"/api/v1/rules/{put_new['id']}", {"name": rule["name"]})
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body = call(service, "POST", "/api/v1/rules", {**rule, "name": "bad", "filter": "output = = 'x'"})
    error = body["error"]
    assert status == 400 and error["code"] == "validation_error"
    assert error["field"] == "filter" and "position" in error["message"]
    status, body = call(service, "POST", "/api/v1/rules", {**rule, "name": "bad", "sampling_rate": 2})
    assert status == 400 and body["error"]["field"] == "sampling_rate"
    status, body = call(service, "POST", "/api/v1/rules", {**rule, "name": "bad", "scorers": [
        {"type": "code", "name": "x", "function": "nope"}]})  # fmt: skip
    assert status == 400 and body["error"]["field"] == "scorers[0].function"
    status, _ = call(service, "DELETE", f"/api/v1/rules/{first['id']}")
    assert status == 200
    status, body = call(service, "GET", f"/api/v1/rules/{first['id']}")
    assert status == 404 and body["error"]["code"] == "not_found" and "not found" in body["error"]["message"]


def test_scores_exactly_once_across_kill_9(tmp_path: Path) -> None:
    env = {**FAST_WINDOWS, "TRACEJUDGE_WINDOWS__SETTLE_S": "3"}
    svc = ServiceProcess(tmp_path / "data", env=env).start()
    project = f"crash-{uuid.uuid4().hex[:8]}"
    for rule in rules_for(project):
        assert call(svc, "POST", "/api/v1/rules", rule)[0] == 201
    time.sleep(0.5)
    questions = [(f"Capital question {i}?", "Paris") for i in range(20)]
    ids = send_traces(svc, project, questions)
    time.sleep(1.0)  # durable, windows still open (settle 3 s): the crash hits open windows
    svc.kill()
    svc = ServiceProcess(tmp_path / "data", env=env).start()
    try:
        expected = 20 * 2 + 20  # two trace scorers per trace, one span scorer per trace
        rows = wait_scores(svc, project, expected)
        time.sleep(2.0)
        rows = scores(svc, project)
        assert len(rows) == expected, rows
        keys = {(r[0], r[1], r[3]) for r in rows}
        assert len(keys) == expected
        assert {r[1] for r in rows} == set(ids)
        # Resumed traces (slim snapshots) were completed from ClickHouse: every scorer saw the real output.
        assert all(r[6] == "" and r[4] == 1.0 for r in rows), rows
        raw = svc.scalar(f"SELECT count() FROM scores WHERE Project = '{project}'")
        assert raw >= expected  # replays may write again; FINAL keeps one per score id
    finally:
        assert svc.stop() == 0, svc.output


def test_test_rule_previews_stored_traces_and_writes_nothing(service: ServiceProcess, tmp_path: Path) -> None:
    project = f"preview-{uuid.uuid4().hex[:8]}"
    ids = send_traces(service, project, [("capital of France?", "Paris"), ("weather?", "sunny")])
    service.wait_for(f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 6)
    rule = rules_for(project)[0]
    status, doc = call(service, "POST", "/api/v1/rules/test", {"rule": rule})
    assert status == 200, doc
    by_trace = {t["trace_id"]: t for t in doc["traces"]}
    assert set(by_trace) == set(ids)
    hit, miss = by_trace[ids[0]], by_trace[ids[1]]
    assert (hit["matched"], hit["reason"], hit["sampled"], hit["would_write"]) == (True, "scored", True, True)
    assert {s["name"]: s["value"] for s in hit["scores"]} == {"mentions_paris": 1.0, "short": 1.0}
    assert (miss["matched"], miss["reason"], miss["scores"]) == (False, "filtered_out", [])
    assert doc["summary"] == {
        "traces": 2,
        "scored": 1,
        "filtered_out": 1,
        "not_targeted": 0,
        "sampled_out": 0,
    }
    status, doc = call(service, "POST", "/api/v1/rules/test", {"rule": {**rule, "sampling_rate": 0.0}})
    assert doc["traces"][0]["sampled"] is False and doc["summary"]["sampled_out"] == 1
    assert service.scalar(f"SELECT count() FROM scores WHERE Project = '{project}'") == 0
    status, doc = call(service, "POST", "/api/v1/rules/test", {"rule": {**rule, "filter": "nonsense ="}})
    assert status == 400 and doc["error"]["field"] == "filter"

    # The CLI: apply a file (twice: the second is a no-op), list, test.
    from tests.integration.test_cli import tj

    rules_file = tmp_path / "rules.yaml"
    import yaml

    rules_file.write_text(yaml.safe_dump({"rules": rules_for(project)}))
    out = tj("rules", "apply", "-f", str(rules_file), "--api-url", service.api)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("created:") == 2
    out = tj("rules", "apply", "-f", str(rules_file), "--api-url", service.api)
    assert out.stdout.count("version 1") == 2  # unchanged rules keep their version
    out = tj("rules", "list", "--api-url", service.api)
    assert "capital-questions" in out.stdout and "llm-json" in out.stdout
    out = tj("rules", "test", "-f", str(rules_file), "--name", "capital-questions", "--api-url", service.api)
    assert out.returncode == 0 and "1 would be scored" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"rules": [{**rules_for(project)[0], "filter": "output LIKE"}]}))
    out = tj("rules", "apply", "-f", str(bad), "--api-url", service.api)
    assert out.returncode == 1 and "rules[0] (capital-questions): filter:" in out.stderr


def _json_span(trace_id: str, span_id: str, parent: str, name: str, inp: str, out: str) -> dict[str, Any]:
    attributes = {"input.value": inp, "output.value": out}
    return otlp_span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, attributes=attributes
    )


def _post_spans(svc: ServiceProcess, project: str, spans: list[dict[str, Any]]) -> None:
    doc = otlp_request(*spans, resource={"tracejudge.project": project})
    status, body = call(svc, "POST", "/api/v1/traces", doc)
    assert status == 200 and body["rejectedSpans"] == 0, body


def test_a_late_span_rescores_the_whole_trace(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path / "data", env=FAST_WINDOWS).start()
    try:
        project = f"late-{uuid.uuid4().hex[:8]}"
        rule = {
            "name": "has-late-step", "project": project, "scope": "trace", "filter": "name = 'late.step'",
            "scorers": [{"type": "code", "name": "root_says_paris", "function": "contains",
                         "args": {"value": "Paris"}}],
        }  # fmt: skip
        status, created = call(svc, "POST", "/api/v1/rules", rule)
        assert status == 201
        tid = uuid.uuid4().hex
        _post_spans(svc, project, [
            _json_span(tid, "1" * 16, "", "agent", "capital of France?", "Paris"),
            _json_span(tid, "2" * 16, "1" * 16, "llm", "q", "a"),
        ])  # fmt: skip
        st = wait_status(svc, created["id"], 1)
        assert (st["counts"]["traces_seen"], st["counts"]["filtered_out"]) == (
            1,
            1,
        )  # closed; no late.step span yet
        _post_spans(svc, project, [_json_span(tid, "3" * 16, "1" * 16, "late.step", "x", "y")])
        rows = wait_scores(svc, project, 1)
        # The score covers the whole trace: the root's output (stored before) says Paris.
        assert [(r[1], r[2], r[3], r[4]) for r in rows] == [(tid, 0, "root_says_paris", 1.0)]
        metrics = http("GET", svc.api + "/metrics")[2].decode()
        assert "tracejudge_window_late_spans_total 1.0" in metrics
        meta = svc.scalar(f"SELECT Metadata FROM scores FINAL WHERE Project = '{project}'")
        assert meta == {"close_reason": "root_settled", "late": "true"}
    finally:
        assert svc.stop() == 0, svc.output
