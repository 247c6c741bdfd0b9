"""API keys end to end (issue 13.1): each scope on each transport, project limits, revocation, the UI login.

One service, its first key made by the CLI on the stopped data directory, the others through `/api/v1/keys`.
OTLP goes through the real OpenTelemetry SDK exporters with the `authorization` header that
OTEL_EXPORTER_OTLP_HEADERS sets, and through raw requests where the answer's partial success is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration.service import REPO, ServiceProcess, http
from tests.integration.test_api_models import KEY_ROUTES, conforms
from tests.integration.test_api_models import ROUTES as DECLARED
from tests.waiting import eventually

JS = {"Content-Type": "application/json"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def spans(*projects: str) -> list[ReadableSpan]:
    """One finished span per project, made by the SDK."""
    out: list[ReadableSpan] = []
    for project in projects:
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"tracejudge.project": project}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("tests").start_as_current_span("auth.test"):
            pass
        out += memory.get_finished_spans()
        provider.shutdown()
    return out


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracejudge", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
        env=env,
    )  # fmt: skip


class Keys:
    """The keys of the test, by role."""

    def __init__(self, svc: ServiceProcess, admin: str) -> None:
        self.svc = svc
        self.admin = admin
        self.made: dict[str, str] = {"admin": admin}

    def make(self, role: str, scopes: list[str], projects: list[str] | None = None) -> str:
        status, doc = call(self.svc, "POST", "/api/v1/keys", self.admin, {"name": role, "scopes": scopes,
                                                                          "projects": projects or []})  # fmt: skip
        assert status == 201, doc
        self.made[role] = doc["key"]
        return str(doc["key"])


def call(svc: ServiceProcess, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    headers = dict(JS)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else b""
    status, _, answer = http(method, svc.api + path, data, headers)
    try:
        return status, json.loads(answer)
    except ValueError:
        return status, answer.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("auth") / "data"
    made = cli("keys", "create", "--name", "first", "--scopes", "admin", "--data-dir", str(data))
    assert made.returncode == 0, made.stderr
    service = ServiceProcess(data)
    service.admin_key = made.stdout.strip()  # type: ignore[attr-defined]
    service.start()
    yield service
    if service.proc is not None and service.proc.poll() is None:
        assert service.stop() == 0, service.output


@pytest.fixture(scope="module")
def keys(svc: ServiceProcess) -> Keys:
    k = Keys(svc, svc.admin_key)  # type: ignore[attr-defined]
    for role in ("ingest", "read", "write"):
        k.make(role, [role])
    k.make("ingest_p1", ["ingest"], ["p1"])
    k.make("reader_p1", ["read", "write"], ["p1"])
    return k


SCORER = {"type": "code", "name": "c", "function": "contains", "args": {"value": "x"}}
ROUTES = [  # (method, path, body, scope it needs)
    ("GET", "/api/v1/traces", None, "read"),
    ("GET", "/api/v1/rules", None, "read"),
    ("GET", "/api/v1/jobs", None, "read"),
    ("GET", "/api/v1/scores", None, "read"),
    ("POST", "/api/v1/sql", {"query": "SELECT 1"}, "read"),
    ("PUT", "/api/v1/rules", {"name": "r", "project": "p1", "scorers": [SCORER]}, "write"),
    ("POST", "/api/v1/scores", {"trace_id": "ab" * 16, "name": "n", "value": 1, "project": "p1"}, "write"),
    ("POST", "/api/v1/traces", {"resourceSpans": []}, "ingest"),
    ("GET", "/api/v1/keys", None, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
def test_each_api_route_needs_its_scope(
    svc: ServiceProcess, keys: Keys, method: str, path: str, body: Any, needed: str
) -> None:
    status, doc = call(svc, method, path, None, body)
    assert status == 401 and doc["error"]["code"] == "unauthorized"
    for role in ("ingest", "read", "write", "admin"):
        status, doc = call(svc, method, path, keys.made[role], body)
        allowed = role in (needed, "admin")
        assert (status < 400) == allowed, (role, status, doc)
        if not allowed:
            assert status == 403 and needed in doc["error"]["message"]


def test_unknown_malformed_and_revoked_keys_answer_alike(svc: ServiceProcess, keys: Keys) -> None:
    doomed = keys.make("doomed", ["read"])
    assert call(svc, "GET", "/api/v1/traces", doomed)[0] == 200
    key_id = doomed.split("_")[1]
    assert call(svc, "DELETE", f"/api/v1/keys/{key_id}", keys.admin)[0] == 200
    answers = [call(svc, "GET", "/api/v1/traces", k) for k in (doomed, "tj_0123456789ab_nope", "garbage")]
    assert answers[0] == answers[1] == answers[2] and answers[0][0] == 401
    assert doomed not in json.dumps(answers[0][1])
    listed = call(svc, "GET", "/api/v1/keys", keys.admin)[1]["keys"]
    assert next(k for k in listed if k["key_id"] == key_id)["revoked_at"] is not None
    assert all("hash" not in k and "key" not in k for k in listed)


def test_sdk_exporters_send_with_an_ingest_key_only(svc: ServiceProcess, keys: Keys) -> None:
    project = f"sdk-{uuid.uuid4().hex[:6]}"
    for role, expected in (("ingest", SpanExportResult.SUCCESS), ("read", SpanExportResult.FAILURE)):
        auth = {"authorization": f"Bearer {keys.made[role]}"}
        exporters: list[SpanExporter] = [
            HttpExporter(endpoint=svc.otlp_http + "/v1/traces", headers=auth, timeout=30),
            GrpcExporter(endpoint=svc.otlp_grpc, insecure=True, headers=auth, timeout=30),
        ]
        for exporter in exporters:
            assert exporter.export(spans(project)) == expected, (role, type(exporter).__module__)
            exporter.shutdown()
    for exporter in (HttpExporter(endpoint=svc.otlp_http + "/v1/traces", timeout=30),
                     GrpcExporter(endpoint=svc.otlp_grpc, insecure=True, timeout=30)):  # fmt: skip
        assert exporter.export(spans(project)) == SpanExportResult.FAILURE
        exporter.shutdown()
    query = {"query": f"SELECT count() FROM otel_traces WHERE Project = '{project}'"}
    eventually(lambda: call(svc, "POST", "/api/v1/sql", keys.admin, query)[1]["data"][0][0] == 2)


def test_grpc_codes_and_project_limited_partial_success(svc: ServiceProcess, keys: Keys) -> None:
    body = encode_spans(spans("p1", "p2", "p1")).SerializeToString()  # the SDK's own encoding
    with grpc.insecure_channel(svc.otlp_grpc) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.RpcError) as none:
            export(body, timeout=30)
        assert none.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as wrong:
            export(body, timeout=30, metadata=(("authorization", f"Bearer {keys.made['read']}"),))
        assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED
        answer = ExportTraceServiceResponse.FromString(
            export(body, timeout=30, metadata=(("authorization", f"Bearer {keys.made['ingest_p1']}"),))
        )
    assert answer.partial_success.rejected_spans == 1
    assert "'p2' is not one of this API key's" in answer.partial_success.error_message


def test_otlp_http_project_limit_and_error_bodies(svc: ServiceProcess, keys: Keys) -> None:
    body = encode_spans(spans("p1", "p2")).SerializeToString()
    pb = {"Content-Type": "application/x-protobuf"}
    status, _, answer = http("POST", svc.otlp_http + "/v1/traces", body, pb)
    assert status == 401 and b"Bearer" in answer
    status, _, answer = http("POST", svc.otlp_http + "/v1/traces", body,
                             {**pb, "Authorization": f"Bearer {keys.made['ingest_p1']}"})  # fmt: skip
    result = ExportTraceServiceResponse.FromString(answer)
    assert status == 200 and result.partial_success.rejected_spans == 1
    metrics = http("GET", svc.api + "/metrics", b"", {"Authorization": f"Bearer {keys.admin}"})[2].decode()
    assert 'tracejudge_receiver_rejected_spans_total{reason="project"}' in metrics
    assert 'tracejudge_auth_requests_total{listener="http",outcome="unauthenticated"}' in metrics


def test_reads_of_a_limited_key_are_filtered(svc: ServiceProcess, keys: Keys) -> None:
    tag = uuid.uuid4().hex[:6]
    exporter = HttpExporter(
        endpoint=svc.otlp_http + "/v1/traces", headers={"authorization": f"Bearer {keys.admin}"}
    )
    assert exporter.export(spans("p1", "p2")) == SpanExportResult.SUCCESS
    limited = keys.made["reader_p1"]

    def projects() -> set[str]:
        return {t["project"] for t in call(svc, "GET", "/api/v1/traces", keys.admin)[1]["traces"]}

    eventually(lambda: {"p1", "p2"} <= projects())
    seen = call(svc, "GET", "/api/v1/traces", limited)[1]["traces"]
    assert seen and {t["project"] for t in seen} == {"p1"}
    other = next(t for t in call(svc, "GET", "/api/v1/traces?project=p2", keys.admin)[1]["traces"])
    assert call(svc, "GET", f"/api/v1/traces/{other['trace_id']}", limited)[0] == 404
    assert call(svc, "GET", "/api/v1/traces?project=p2", limited)[0] == 403
    sql = {"query": "SELECT DISTINCT Project FROM otel_traces WHERE Project IN ('p1', 'p2') ORDER BY 1"}
    assert call(svc, "POST", "/api/v1/sql", keys.admin, sql)[1]["data"] == [["p1"], ["p2"]]
    status, doc = call(svc, "POST", "/api/v1/sql", limited, sql)
    assert status == 200 and doc["data"] == [["p1"]], doc
    joined = {
        "query": "SELECT count() FROM otel_traces AS t JOIN otel_traces AS u USING TraceId WHERE u.Project = 'p2'"
    }
    assert call(svc, "POST", "/api/v1/sql", limited, joined)[1]["data"] == [[0]]
    status, doc = call(svc, "POST", "/api/v1/sql", limited, {"query": "SELECT * FROM keys"})
    assert status == 403 and "'keys'" in doc["error"]["message"]
    rule = {
        "name": f"r-{tag}",
        "project": "p2",
        "scorers": [SCORER],
    }
    assert call(svc, "PUT", "/api/v1/rules", limited, rule)[0] == 403
    assert call(svc, "PUT", "/api/v1/rules", limited, {**rule, "project": "p1"})[0] == 201
    assert call(svc, "PUT", "/api/v1/rules", keys.admin, rule)[0] == 201
    assert {r["project"] for r in call(svc, "GET", "/api/v1/rules", limited)[1]["rules"]} == {"p1"}
    score = {"trace_id": other["trace_id"], "name": f"s-{tag}", "value": 1, "project": "p2"}
    assert call(svc, "POST", "/api/v1/scores", limited, score)[0] == 403
    assert call(svc, "GET", "/traces", limited)[0] == 403  # the UI shows every project


def test_ui_login_sets_a_strict_session_and_refuses_cross_site_posts(svc: ServiceProcess, keys: Keys) -> None:
    assert (
        http("GET", svc.api + "/traces")[0] == 200 and "Log in" in http("GET", svc.api + "/login")[2].decode()
    )  # redirected to /login
    origin = {"Origin": svc.api, "Content-Type": "application/x-www-form-urlencoded"}
    ui_key = keys.make("ui", ["read", "write"])
    form = urllib.parse.urlencode({"key": ui_key, "next": "/rules"}).encode()
    bad = urllib.parse.urlencode({"key": "tj_0123456789ab_nope"}).encode()
    assert http("POST", svc.api + "/login", bad, origin)[0] == 401
    assert http("POST", svc.api + "/login", form, {**origin, "Origin": "https://evil.example"})[0] == 403
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(svc.api + "/login", data=form, headers=origin, method="POST")
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(req, timeout=30)
    cookie = answer.value.headers["set-cookie"]
    assert answer.value.code == 303 and answer.value.headers["location"] == "/rules"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ui_key not in cookie
    session = {"Cookie": cookie.split(";", 1)[0]}
    status, _, page = http("GET", svc.api + "/rules", b"", session)
    assert status == 200 and b'action="/logout"' in page  # a logged-in page offers "Log out"
    change = {**session, "Content-Type": "application/json"}
    status, _, body = http("PATCH", svc.api + "/api/v1/rules/x", b"{}", change)
    assert status == 403 and b"cross-site request refused" in body  # no Origin
    assert (
        http("PATCH", svc.api + "/api/v1/rules/x", b"{}", {**change, "Origin": svc.api})[0] == 404
    )  # let through
    assert call(svc, "DELETE", f"/api/v1/keys/{ui_key.split('_')[1]}", keys.admin)[0] == 200
    assert http("GET", svc.api + "/api/v1/rules", b"", session)[0] == 401  # the session ends with its key


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_keys_never_reach_the_log(svc: ServiceProcess, keys: Keys) -> None:
    log = "\n".join(svc.log)
    assert "authentication on" in log
    for key in keys.made.values():
        assert key not in log and key.split("_", 2)[2] not in log  # the secret (it may hold "_")


def test_cli_goes_through_the_api_while_the_service_holds_the_data_dir(
    svc: ServiceProcess, keys: Keys
) -> None:
    env = {**os.environ, "TRACEJUDGE_API_URL": svc.api, "TRACEJUDGE_API_KEY": keys.admin}
    listed = cli("keys", "list", "--format", "json", "--data-dir", str(svc.data_dir), env=env)
    assert listed.returncode == 0, listed.stderr
    assert {"first", "ingest", "read"} <= {k["name"] for k in json.loads(listed.stdout)}
    env["TRACEJUDGE_API_KEY"] = keys.made["read"]
    refused = cli("keys", "list", "--api-url", svc.api, env=env)
    assert refused.returncode == 1 and "403" in refused.stderr


def test_keys_routes_answer_their_models(svc: ServiceProcess, keys: Keys) -> None:
    answers = {
        ("POST", "/api/v1/keys"): call(
            svc, "POST", "/api/v1/keys", keys.admin, {"name": "m", "scopes": ["read"]}
        ),
        ("GET", "/api/v1/keys"): call(svc, "GET", "/api/v1/keys", keys.admin),
    }
    key_id = answers[("POST", "/api/v1/keys")][1]["key_id"]
    answers[("DELETE", "/api/v1/keys/{key_id}")] = call(svc, "DELETE", f"/api/v1/keys/{key_id}", keys.admin)
    assert set(answers) == KEY_ROUTES
    for route, (status, doc) in answers.items():
        assert status < 300, doc
        conforms(DECLARED[route].response_model, doc)
    missing = call(svc, "DELETE", "/api/v1/keys/000000000000", keys.admin)
    assert missing[0] == 404 and missing[1]["error"]["code"] == "not_found"
    bad = call(svc, "POST", "/api/v1/keys", keys.admin, {"name": "m", "scopes": ["root"]})
    assert bad[0] == 422 and "root" in bad[1]["error"]["message"]


def test_a_network_address_with_no_key_refuses_to_start(tmp_path: Path) -> None:
    ports = ["--otlp-grpc-port", "0", "--otlp-http-port", "0", "--api-port", "0"]
    refused = cli("run", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "data"), *ports)
    assert refused.returncode == 2
    assert (
        "refusing to listen on 0.0.0.0 with no API key" in refused.stderr and "--insecure" in refused.stderr
    )
