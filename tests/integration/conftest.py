from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One running tracejudge shared by a test module."""
    svc = ServiceProcess(tmp_path_factory.mktemp("svc") / "data").start()
    yield svc
    if svc.proc is not None and svc.proc.poll() is None:
        code = svc.stop()
        assert code == 0, svc.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLLMServer]:
    """One fake OpenAI/Anthropic server (tests/fakes/llm_server.py) shared by a test module."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def llm(llm_server: FakeLLMServer) -> FakeLLMServer:
    """The module's fake LLM server, reset for this test: no faults, latency, reply, logged requests or stats."""
    llm_server.reset()
    llm_server.reset_stats()
    return llm_server
