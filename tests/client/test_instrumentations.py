"""score_current_span / score_current_trace inside the spans of REAL openai instrumentations (OpenInference,
OpenLLMetry, openai-v2; pinned in the ``test`` extra): the score made during the LLM call lands on the
instrumentation's span, the trace score on the application's trace (``tests/client/scoring_app.py``, one
process per instrumentation, delivered by its exit flush to the fake scores server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import as_given
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.scores_server import FakeScores

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.mark.parametrize(
    ("instrumentation", "span_name"),
    [("openinference", "ChatCompletion"), ("openllmetry", "openai.chat"), ("openai-v2", "chat fake-model")],
)
def test_scores_attach_to_the_instrumentations_spans(
    fake: FakeScores, llm: FakeLLMServer, instrumentation: str, span_name: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_", "TRACEJUDGE_"))}
    env.update(
        TRACEJUDGE_API_URL=fake.url,
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "clients" / "python")]),
    )
    cmd = [sys.executable, "-m", "tests.client.scoring_app", "--instrumentation", instrumentation,
           "--base-url", llm.openai_base_url]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    spans = {s["name"]: s for s in json.loads(done.stdout.strip().splitlines()[-1])["spans"]}
    llm_span, request = spans[span_name], spans["handle-request"]
    assert llm_span["trace_id"] == request["trace_id"]
    assert as_given(fake.received) == [
        {
            "name": "llm-call",
            "value": 0.5,
            "trace_id": llm_span["trace_id"],
            "observation_id": llm_span["span_id"],
            "project": "llm-app",  # the span's resource: the project its trace will have
        },
        {"name": "request", "value": True, "trace_id": request["trace_id"], "project": "llm-app"},
    ]
