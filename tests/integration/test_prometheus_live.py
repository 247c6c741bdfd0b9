"""Real Prometheus and Alertmanager against a running service (issue 14.5).

One service for the module, with a code rule (`capital` / `paris`) and a judge rule on the fake LLM server
whose connection fails once (a judge error) and whose rule budget sheds calls. Then:
- Prometheus runs the repo's prometheus.yml (targets rewritten to this test's ports, 1 s intervals) and
  alerts.yml, scrapes the service under a little load, and every series a dashboard panel or an alert selects
  returns data through the HTTP API, as does every panel's expression; every alert rule evaluates healthy.
- Alertmanager with a webhook here: a copy of the rules with `for: 1s` and TracejudgeScoreDrop's hour/day
  windows shortened to seconds; the code rule's scores drop and the webhook gets the alert with its rule and
  scorer labels, then, once scoring stops, the resolved notification.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builders import otlp_request, otlp_span
from tests.fakes.llm_server import FakeLLMServer
from tests.integration import prometheus_stack as stack
from tests.integration.service import ServiceProcess
from tests.integration.test_docker_config import (
    PROMETHEUS_OWN,
    alert_rules,
    dashboard_prometheus_exprs,
    load_yaml,
    promql_metric_names,
    registry_names,
)
from tests.integration.test_rules_e2e import FAST_WINDOWS, call

ALERTS = stack.PROM_DIR / "alerts.yml"
# Grafana's $__rate_interval with a 1 s scrape interval: max(4 x scrape, interval + scrape).
GRAFANA_VARIABLES = {"$__rate_interval": "4s", "$__interval": "1s", "$__range": "1m"}
# TracejudgeScoreDrop's windows, shortened: the last hour -> 5 s, the day before it -> 30 s.
SCORE_DROP_WINDOWS = [("[1d] offset 1h", "[30s] offset 5s"), ("[1h]", "[5s]")]


@pytest.fixture(scope="module")
def project() -> str:
    return f"prom-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def svc(
    tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLLMServer, project: str
) -> Iterator[ServiceProcess]:
    env = {**FAST_WINDOWS, "FAKE_LLM_KEY": "secret"}
    service = ServiceProcess(tmp_path_factory.mktemp("prom") / "data", env=env).start()
    try:
        status, body = call(service, "POST", "/api/v1/connections", {
            "name": "fake", "provider": "openai", "protocol": "chat_completions",
            "base_url": llm_server.openai_base_url, "api_key_env": "FAKE_LLM_KEY", "model": "judge-model",
            "timeout_s": 10, "max_retries": 0, "input_price_per_mtok": 2.0, "output_price_per_mtok": 10.0,
        })  # fmt: skip
        assert status == 201, body
        status, body = call(service, "POST", "/api/v1/rules", {
            "name": "capital", "project": project,
            "scorers": [{"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}}],
        })  # fmt: skip
        assert status == 201, body
        status, body = call(service, "POST", "/api/v1/rules", {
            "name": "judged", "project": project, "scope": "span", "span_names": ["llm.call"],
            "max_calls_per_minute": 4,
            "scorers": [{"type": "llm_judge", "name": "helpfulness", "connection": "fake",
                         "criteria": "The answer is right.", "min_score": 1, "max_score": 5, "threshold": 3}],
        })  # fmt: skip
        assert status == 201, body
        llm_server.reset()
        llm_server.fail_next(status=500)  # the first judge call fails: a judge error and a score error
        bad = otlp_span(trace_id="0" * 32, span_id="1" * 16, name="bad")  # rejected: trace_id
        assert stack.post_spans(service, otlp_request(bad, resource={"tracejudge.project": project})) == 200
        yield service
    finally:
        assert service.stop() == 0, service.output


def selectors(expr: str, names: set[str]) -> set[str]:
    """The vector selectors of an expression: each metric name with the matchers written after it."""
    found = set()
    for name in promql_metric_names(expr) & names:
        for m in re.finditer(rf"(?<![\w:]){re.escape(name)}(\s*\{{[^}}]*\}})?", expr):
            found.add(name + (m.group(1) or "").strip())
    return found


def panel_expressions() -> list[tuple[str, str]]:
    out = []
    for where, expr in dashboard_prometheus_exprs():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        out.append((where, expr))
    return out


def missing(prom: str, exprs: list[str]) -> list[str]:
    return [expr for expr in exprs if not stack.query(prom, expr)]


def test_every_series_of_the_dashboards_and_alerts_returns_data(
    svc: ServiceProcess, project: str, tmp_path: Path
) -> None:
    names = set(registry_names()) | PROMETHEUS_OWN
    used = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()] + dashboard_prometheus_exprs()
    series = sorted({s for _, expr in used for s in selectors(expr, names)})
    assert len(series) > 30 and 'tracejudge_receiver_requests_total{outcome="throttled"}' in series, series
    panels = [expr for _, expr in panel_expressions()]
    with (
        stack.Load(svc, project, lambda: "Paris"),
        stack.prometheus(tmp_path, svc, load_yaml(ALERTS)) as prom,
    ):
        stack.wait_until(
            lambda: not missing(prom, series), lambda: f"series without data: {missing(prom, series)}"
        )
        stack.wait_until(
            lambda: not missing(prom, panels), lambda: f"panels without data: {missing(prom, panels)}"
        )
        groups = stack.get_json(prom + "/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {r["alert"] for r in alert_rules()}
    assert all(r["health"] == "ok" and not r.get("lastError") for r in rules.values()), rules


def fast_rules() -> dict[str, Any]:
    """A copy of alerts.yml with `for: 1s` and TracejudgeScoreDrop's windows in seconds."""
    rules: dict[str, Any] = copy.deepcopy(load_yaml(ALERTS))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
            if rule["alert"] == "TracejudgeScoreDrop":
                for long, short in SCORE_DROP_WINDOWS:
                    assert long in rule["expr"], f"TracejudgeScoreDrop no longer has {long}: update this test"
                    rule["expr"] = rule["expr"].replace(long, short)
    return rules


def score_drop(webhook: stack.Webhook, status: str) -> list[dict[str, Any]]:
    return [
        alert
        for note in webhook.notifications
        for alert in note["alerts"]
        if alert["labels"]["alertname"] == "TracejudgeScoreDrop" and alert["status"] == status
    ]


def test_a_score_drop_reaches_alertmanager_and_resolves(
    svc: ServiceProcess, project: str, tmp_path: Path
) -> None:
    answer = ["Paris"]
    webhook = stack.Webhook()
    try:
        with (
            stack.alertmanager(tmp_path, webhook) as am,
            stack.prometheus(tmp_path, svc, fast_rules(), am.removeprefix("http://")) as prom,
        ):
            with stack.Load(svc, project, lambda: answer[0]):
                # A baseline of passing scores, then failing ones: the last seconds' mean falls below 80 %.
                stack.wait_until(
                    lambda: stack.query(prom, 'sum(increase(tracejudge_rule_score_ratio_count{rule="capital"}[30s])) > 20'),
                    lambda: "no baseline of scores",
                )  # fmt: skip
                answer[0] = "Berlin"
                stack.wait_until(
                    lambda: score_drop(webhook, "firing"), lambda: f"no alert: {webhook.notifications}"
                )
            # Scoring stops: the last seconds hold no scores, the alert's condition has no value and it resolves.
            stack.wait_until(
                lambda: score_drop(webhook, "resolved"), lambda: f"not resolved: {webhook.notifications}"
            )
    finally:
        webhook.close()
    (fired, *_), (resolved, *_) = score_drop(webhook, "firing"), score_drop(webhook, "resolved")
    for alert in (fired, resolved):
        assert (alert["labels"]["rule"], alert["labels"]["scorer"]) == ("capital", "paris"), alert
        assert alert["labels"]["severity"] == "warning" and alert["annotations"]["summary"], alert
    assert "dropped" in fired["annotations"]["summary"] and fired["startsAt"] == resolved["startsAt"]
