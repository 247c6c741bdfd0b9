"""Configuration: one model, documented example, precedence, clear errors; metric naming rules."""

from __future__ import annotations

import re
from pathlib import Path

import prometheus_client
import pytest
import yaml

from dataflow import metrics
from dataflow.config import Settings, load_settings
from dataflow.errors import ConfigError
from tracejudge.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tracejudge.example.yaml"


def test_example_config_lists_every_option_with_its_default() -> None:
    documented = yaml.safe_load(EXAMPLE.read_text())
    defaults = Settings().model_dump(mode="json")
    defaults["data_dir"] = "./data"
    assert documented == defaults


def test_precedence_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api_port: 7000\notlp_http_port: 7001\nwal:\n  segment_max_rows: 7\n")
    monkeypatch.setenv("TRACEJUDGE_OTLP_HTTP_PORT", "7101")
    monkeypatch.setenv("TRACEJUDGE_WAL__FSYNC", "never")
    s = load_settings(cfg, api_port=7200)
    assert (s.api_port, s.otlp_http_port, s.wal.segment_max_rows, s.wal.fsync) == (7200, 7101, 7, "never")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus: 1\n", "bogus: Extra inputs are not permitted"),
        ("wal:\n  max_bytes: 0\n", "wal.max_bytes"),
        ("clickhouse_dsn: mysql://x\n", "clickhouse_dsn"),
        ("api_port: 4317\n", "must differ"),
        ("- a list\n", "top level must be a mapping"),
        ("a: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_settings(cfg)


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--config", str(EXAMPLE)]) == 0
    assert "configuration OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("wal:\n  fsync: sometimes\n")
    assert main(["config", "check", "--config", str(bad)]) == 1
    assert "wal.fsync" in capsys.readouterr().err
    assert main(["config", "check", "--config", str(tmp_path / "missing.yaml")]) == 1


_NAME = re.compile(r"^tracejudge_[a-z]+_[a-z_]+$")
# `_ratio`: a dimensionless 0..1 quantity (score values); money is a counter, `_usd_total`. `_running` and
# `_open` are 0/1 state gauges (the flow runs; a connection's circuit breaker is open).
_UNITS = (
    "_total", "_seconds", "_bytes", "_segments", "_running", "_traces", "_rules", "_calls", "_jobs", "_ratio",
    "_open", "_keys", "_processes",
)  # fmt: skip


def test_metric_names_units_and_help() -> None:
    seen = set()
    for family in metrics.REGISTRY.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        seen.add(name)
        assert _NAME.match(name), name
        assert name.endswith(_UNITS), f"{name}: no base unit suffix"
        assert len(family.documentation) > 20, f"{name}: help text too short"
        if family.type == "counter":
            assert name.endswith("_total")
        assert "trace_id" not in {lbl for s in family.samples for lbl in s.labels}
    assert "tracejudge_receiver_requests_total" in seen


_PER_RULE_AND_SCORER = {
    "tracejudge_rule_scores": ("rule", "scorer", "outcome"),
    "tracejudge_rule_verdicts": ("rule", "scorer", "verdict"),
    "tracejudge_rule_score_ratio": ("rule", "scorer"),
    "tracejudge_rule_score_errors": ("rule", "scorer", "error_type"),
    "tracejudge_rule_shed": ("rule", "scorer", "reason"),
    "tracejudge_judge_duration_seconds": ("rule", "scorer"),
    "tracejudge_judge_tokens": ("rule", "scorer", "type"),
    "tracejudge_judge_cost_usd": ("rule", "scorer"),
}


def test_quality_metrics_are_per_rule_and_scorer() -> None:
    """Recorded from written score rows (dataflow.rules.status); labelled by rule name and score name."""
    declared = {
        m._name: m
        for m in vars(metrics).values()
        if isinstance(m, prometheus_client.metrics.MetricWrapperBase)
    }
    for name, labels in _PER_RULE_AND_SCORER.items():
        assert name in declared, name
        assert declared[name]._labelnames == labels, name


def test_sql_limits_default_to_the_issue_s() -> None:
    api = Settings().api
    assert (api.sql_max_memory_bytes, api.sql_max_concurrent) == (1024**3, 2)
