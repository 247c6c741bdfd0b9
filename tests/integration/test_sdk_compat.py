"""The Langfuse and InteractiveAI SDKs, the REAL packages (pinned in the `test` extra), send to tracejudge
unchanged: only their host and keys point at it (issue 10, item 4).

Each SDK's own example (`tests/integration/sdk_app.py`, a process of its own) opens a span with input and
output, calls `score_current_span`, `score_current_trace` and `create_score` on the trace id, and flushes.
The spans land in `otel_traces` with their Input and Output, the scores in `scores` on the right trace and span
ids, all in the project the public key names (`compat.public_keys`), whatever the spans' resource says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.sdk_app import ANSWER, QUESTION
from tests.integration.service import REPO, ServiceProcess, http
from tests.waiting import eventually

KEYS = {"pk-lf-compat": "langfuse-app", "pk-ia-compat": "interactiveai-app"}
SDKS = [("langfuse", "LANGFUSE", "pk-lf-compat"), ("interactiveai", "INTERACTIVEAI", "pk-ia-compat")]
JS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {"TRACEJUDGE_COMPAT__PUBLIC_KEYS": json.dumps(KEYS)}
    svc = ServiceProcess(tmp_path_factory.mktemp("compat") / "data", env=env).start()
    yield svc
    if svc.proc is not None and svc.proc.poll() is None:
        assert svc.stop() == 0, svc.output


def run_example(service: ServiceProcess, sdk: str, prefix: str, public_key: str) -> dict[str, Any]:
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost")
    env.update({f"{prefix}_BASE_URL": service.api, f"{prefix}_PUBLIC_KEY": public_key,
                f"{prefix}_SECRET_KEY": "sk-compat"})  # fmt: skip
    cmd = [sys.executable, "-m", "tests.integration.sdk_app", sdk]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{sdk} example failed:\n{proc.stdout}\n{proc.stderr}"
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize(("sdk", "prefix", "public_key"), SDKS)
def test_the_sdks_example_lands_in_tracejudge(
    service: ServiceProcess, sdk: str, prefix: str, public_key: str
) -> None:
    ids = run_example(service, sdk, prefix, public_key)
    assert ids["remote"] == []  # nothing but the loopback host it was given
    trace_id, span_id, project = ids["trace_id"], ids["span_id"], KEYS[public_key]

    spans = eventually(
        lambda: service.sql(
            f"SELECT SpanId, Project, Input, Output FROM otel_traces WHERE TraceId = '{trace_id}'"
        ),
        message=service.output,
    )
    assert [(s, p, json.loads(i), o) for s, p, i, o in spans] == [(span_id, project, QUESTION, ANSWER)]

    query = (
        "SELECT Name, Project, SpanId, DataType, Value, StringValue, Passed, Comment, Source "
        f"FROM scores FINAL WHERE TraceId = '{trace_id}' ORDER BY Name"
    )
    scores = eventually(lambda: service.sql(query), until=lambda rows: len(rows) == 3, message=service.output)
    assert scores == [
        ["helpful", project, "", "BOOLEAN", 1.0, "", True, "", "API"],
        ["relevance", project, span_id, "NUMERIC", 0.9, "", None, "on topic", "API"],
        ["tone", project, "", "CATEGORICAL", None, "friendly", None, "", "API"],
    ]


def test_an_unlisted_key_sends_to_the_default_project(service: ServiceProcess) -> None:
    trace_id = "c0" * 16
    score = {"id": "compat-unlisted", "traceId": trace_id, "name": "n", "value": 1}
    status, _, raw = http("POST", service.api + "/api/public/scores", json.dumps([score]).encode(), JS)
    assert (status, json.loads(raw)) == (202, {"message": "Accepted"})
    projects = service.get_json("/api/platform/v1/projects")  # no credentials at all
    assert [p["name"] for p in projects["data"]] == ["default"]
    service.wait_for("SELECT Project FROM scores FINAL WHERE ScoreId = 'compat-unlisted'", "default")


def test_a_langfuse_post_over_a_thousand_scores_is_stored_in_chunks(service: ServiceProcess) -> None:
    """The SDK flushes up to `flush_at` scores at once and never retries a 400: none may be refused for
    the list's size alone; errors keep their index in the whole list."""
    trace_id = "c1" * 16
    scores = [{"id": f"compat-big-{i}", "traceId": trace_id, "name": "n", "value": 1} for i in range(1_500)]
    scores[1_200]["traceId"] = "not-hex"
    status, _, raw = http("POST", service.api + "/api/public/scores", json.dumps(scores).encode(), JS)
    answer = json.loads(raw)
    assert (status, answer["accepted"], answer["rejected"]) == (207, 1_499, 1), answer
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(1_200, "traceId")]
    service.wait_for(f"SELECT count() FROM scores FINAL WHERE TraceId = '{trace_id}'", 1_499)


def test_other_sdk_routes_say_what_is_supported(service: ServiceProcess) -> None:
    for path in ("/api/public/v2/prompts/greeting", "/api/platform/v1/projects/p/prompts"):
        status, _, raw = http("GET", service.api + path)
        error = json.loads(raw)["error"]
        assert (status, error["code"]) == (404, "not_found")
        assert "spans (POST /api/public/otel/v1/traces) and scores" in error["message"]
