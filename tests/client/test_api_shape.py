"""The client's public shape: seed 002's keyword-only signatures (on the client and the module-level
shortcuts), and the constructor's arguments with their environment fallbacks."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Callable
from typing import Any

import pytest

import tracejudge_client
from tracejudge_client import TraceJudge

CREATE_SCORE = [
    "name", "value", "session_id", "dataset_run_id", "trace_id", "observation_id", "score_id", "data_type",
    "comment", "config_id", "metadata", "timestamp",
]  # fmt: skip
SCORE_CURRENT = ["name", "value", "score_id", "data_type", "comment", "config_id"]


def keyword_only(function: Callable[..., Any]) -> list[str]:
    parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    assert [p.name for p in parameters if p.default is inspect.Parameter.empty] == ["name", "value"]
    return [p.name for p in parameters]


@pytest.mark.parametrize("owner", [TraceJudge, tracejudge_client], ids=["client", "module"])
def test_the_seeds_keyword_only_signatures(owner: object) -> None:
    assert keyword_only(owner.create_score) == CREATE_SCORE  # type: ignore[attr-defined]
    assert keyword_only(owner.score_current_span) == SCORE_CURRENT  # type: ignore[attr-defined]
    assert keyword_only(owner.score_current_trace) == SCORE_CURRENT  # type: ignore[attr-defined]


def test_the_constructor_reads_the_environment_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(inspect.signature(TraceJudge).parameters) == [
        "api_url", "api_key", "project", "flush_interval_s", "max_queue", "timeout_s",
    ]  # fmt: skip
    for name in ("TRACEJUDGE_API_URL", "TRACEJUDGE_API_KEY", "TRACEJUDGE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    plain = TraceJudge()
    assert (plain.api_url, plain.api_key, plain.project) == ("http://localhost:8080", None, None)
    assert "authorization" not in plain._make_http().headers
    monkeypatch.setenv("TRACEJUDGE_API_URL", "http://judge.internal:9000/")
    monkeypatch.setenv("TRACEJUDGE_API_KEY", "k-env")
    monkeypatch.setenv("TRACEJUDGE_PROJECT", "p-env")
    from_env = TraceJudge()
    assert (from_env.api_url, from_env.api_key, from_env.project) == (
        "http://judge.internal:9000",
        "k-env",
        "p-env",
    )
    assert from_env._sender.url == "http://judge.internal:9000/api/v1/scores"
    assert from_env._make_http().headers["authorization"] == "Bearer k-env"
    given = TraceJudge(api_url="http://other", api_key="k", project="p")
    assert (given.api_url, given.api_key, given.project) == ("http://other", "k", "p")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"max_queue": 0}, "max_queue"), ({"flush_interval_s": 0}, "flush_interval_s"), ({"timeout_s": -1}, "timeout_s"),
     ({"api_url": "localhost:8080"}, "api_url"), ({"api_url": "ftp://judge"}, "api_url")],
)  # fmt: skip
def test_a_bad_setting_fails_at_construction(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        TraceJudge(**kwargs)


def test_tls_is_set_up_at_construction_and_only_for_https() -> None:
    """The CA bundle is loaded by the constructor (not by the background thread at the first score)."""
    assert TraceJudge(api_url="http://judge.internal")._tls is None
    secure = TraceJudge(api_url="https://judge.internal")
    assert isinstance(secure._tls, ssl.SSLContext) and secure._tls.verify_mode is ssl.CERT_REQUIRED
