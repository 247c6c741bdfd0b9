"""The deployment under docker/ is checked offline: no Docker engine, no Collector, no Grafana needed.

Validators come from Debian packages (`apt-get install -y docker-compose prometheus`): docker-compose v1
validates the compose file against its schema, promtool checks the Prometheus config and rules and runs
the alert unit tests. Everything else is cross-checked here: metric names against the registry, datasource
uids, ports and DSNs between compose, the tracejudge config, the Collector and Prometheus, and what the
Dockerfile copies against what the service reads at run time. A missing validator fails, never skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import prometheus_client
import pytest
import yaml

from connectors.clickhouse import migrate
from dataflow import metrics
from dataflow.config import Settings, load_settings
from tracejudge.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
PROM_DIR = DOCKER / "prometheus"
DASHBOARDS = DOCKER / "grafana" / "dashboards"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDERS = DOCKER / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
COLLECTOR_CONFIGS = [DOCKER / "otelcol.yaml", DOCKER / "otelcol-loadbalancing.yaml"]

# The Debian package that provides each validator.
APT_PACKAGES = {"docker-compose": "docker-compose", "promtool": "prometheus"}
# A password set in the environment must reach every place that uses it.
TEST_PASSWORD = "pw-from-env-4711"
# Series Prometheus adds itself; every other name must come from dataflow.metrics.REGISTRY.
PROMETHEUS_OWN = {"up"}
TARGET_LABELS = {"instance", "job"}


# --- helpers ---------------------------------------------------------------------------------------------
def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: run `apt-get install -y {APT_PACKAGES[name]}` "
            f"(Debian package {APT_PACKAGES[name]!r}); this test needs it and does not skip"
        )
    return path


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without variables that would change what the files resolve to."""
    drop = ("TRACEJUDGE_", "COMPOSE_", "CLICKHOUSE_", "GRAFANA_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def registry_names() -> dict[str, Any]:
    """Every series name dataflow.metrics.REGISTRY exposes, mapped to its declaration in dataflow.metrics.

    Walks the registry (a labelled metric with no children yet still describes itself); counters expose
    `<name>_total`, histograms `<name>_bucket`, `_sum` and `_count`.
    """
    declared = {
        obj._name: obj
        for obj in vars(metrics).values()
        if isinstance(obj, prometheus_client.metrics.MetricWrapperBase)
    }
    names: dict[str, Any] = {}
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        for suffix in suffixes:
            names[family.name + suffix] = declared[family.name]
    assert len(names) >= len(declared) > 0
    return names


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
_KEYWORDS |= {"offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or labels."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING.sub(" ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana variables such as $__rate_interval
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == "." or s[m.end() :].lstrip().startswith("("):
            continue
        if m.group(0).lower() not in _KEYWORDS:
            names.add(m.group(0))
    return names


def promql_label_names(expr: str) -> set[str]:
    labels = {m.group(1) for sel in _SELECTOR.finditer(expr) for m in _MATCHER.finditer(sel.group(2))}
    for grouping in _GROUPING.finditer(expr):
        labels |= {x.strip() for x in grouping.group(2).split(",") if x.strip()}
    return labels


def mem_bytes(value: str | int) -> int:
    m = re.fullmatch(r"(\d+)\s*([kmg]?)b?", str(value).lower())
    assert m, f"unreadable memory size {value!r}"
    return int(m.group(1)) * 1024 ** ["", "k", "m", "g"].index(m.group(2))


def host_port(port: Any) -> tuple[int | None, int]:
    """(published, target) of a compose port in short or long syntax."""
    if isinstance(port, dict):
        published = port.get("published")
        return (int(published) if published is not None else None), int(port["target"])
    parts = str(port).split("/")[0].split(":")
    return (int(parts[-2]) if len(parts) > 1 else None), int(parts[-1])


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (absolute host path for a bind mount, name for a volume)."""
    out = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            out[vol["target"]] = vol["source"]
        else:
            source, target = str(vol).split(":")[:2]
            out[target] = source
    return out


def image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"image {image!r} has no tag"
    return tag


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it, with CLICKHOUSE_PASSWORD set in the environment."""
    exe = tool("docker-compose")
    out = run([exe, "-f", str(COMPOSE), "config"], env=clean_env(CLICKHOUSE_PASSWORD=TEST_PASSWORD)).stdout
    doc: dict[str, Any] = yaml.safe_load(out)
    return doc


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


@pytest.fixture(scope="module")
def container_settings(compose: dict[str, Any], dockerfile: list[tuple[str, str]]) -> Settings:
    """The settings tracejudge runs with in its container: entrypoint flags, compose env, mounted config."""
    entry = json.loads(next(args for ins, args in dockerfile if ins == "ENTRYPOINT"))
    assert entry[:2] == ["tracejudge", "run"]
    args = build_parser().parse_args(entry[1:])
    service = compose["services"]["tracejudge"]
    config_on_host = Path(mounts(service)[str(args.config)])
    assert config_on_host == DOCKER / "tracejudge.yaml", "compose must mount docker/tracejudge.yaml"
    with pytest.MonkeyPatch.context() as mp:
        for name in os.environ.keys() - clean_env().keys():
            mp.delenv(name)
        for name, value in service["environment"].items():
            mp.setenv(name, str(value))
        return load_settings(
            config_on_host, data_dir=args.data_dir, host=args.host, clickhouse_dsn=args.clickhouse_dsn
        )


# --- every file parses; the validators pass ----------------------------------------------------------------
def test_every_yaml_and_json_under_docker_parses() -> None:
    files = sorted(p for p in DOCKER.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert len(files) >= 10, files
    for path in files:
        doc = json.loads(path.read_text()) if path.suffix == ".json" else load_yaml(path)
        assert isinstance(doc, dict) and doc, f"{path} is empty or not a mapping"


def test_compose_file_is_valid_for_docker_compose() -> None:
    run([tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"], env=clean_env())


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "docker/prometheus/prometheus.yml"],
        ["check", "rules", "docker/prometheus/alerts.yml"],
        ["test", "rules", "docker/prometheus/alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args: list[str]) -> None:
    run([tool("promtool"), *args])


def test_tracejudge_config_check_passes() -> None:
    cmd = [sys.executable, "-m", "tracejudge", "config", "check", "--config", "docker/tracejudge.yaml"]
    out = run(cmd, env=clean_env()).stdout
    assert "configuration OK" in out


def test_tracejudge_config_check_with_the_compose_environment(compose: dict[str, Any]) -> None:
    env = {k: str(v) for k, v in compose["services"]["tracejudge"]["environment"].items()}
    cmd = [sys.executable, "-m", "tracejudge", "config", "check", "--config", "docker/tracejudge.yaml"]
    out = run(cmd, env=clean_env(**env)).stdout
    assert "@clickhouse:8123/" in out, out


# --- metric names -------------------------------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(PROM_DIR / "alerts.yml")["groups"] for rule in group["rules"]]


def dashboard_prometheus_exprs() -> list[tuple[str, str]]:
    prom_uids = {d["uid"] for d in load_yaml(DATASOURCES)["datasources"] if d["type"] == "prometheus"}
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                if (target.get("datasource") or panel["datasource"])["uid"] in prom_uids:
                    out.append((f"{path.name}: {panel['title']}", target["expr"]))
    return out


def check_expression(where: str, expr: str, names: dict[str, Any]) -> set[str]:
    used = promql_metric_names(expr)
    unknown = used - names.keys() - PROMETHEUS_OWN
    assert not unknown, f"{where}: {sorted(unknown)} not in dataflow.metrics.REGISTRY ({expr})"
    allowed = TARGET_LABELS | {"le"} | {"quantile"}
    for name in used & names.keys():
        allowed |= set(names[name]._labelnames)
    assert promql_label_names(expr) <= allowed, f"{where}: unknown label in {expr}"
    for selector in _SELECTOR.finditer(expr):
        metric = names.get(selector.group(1))
        for label, _op, value in _MATCHER.findall(selector.group(2)):
            if metric is not None and label in metric._labelnames:
                help_text = metric._documentation
                assert re.search(rf"\b{re.escape(value)}\b", help_text), (
                    f"{where}: {label}={value!r} is not a value {metric._name} documents ({help_text})"
                )
    return used


def test_alert_rules_use_only_registered_metrics() -> None:
    names = registry_names()
    used: set[str] = set()
    rules = alert_rules()
    for rule in rules:
        used |= check_expression(f"alert {rule['alert']}", rule["expr"], names)
    assert {r["alert"] for r in rules} == {
        "TracejudgeDown",
        "TracejudgeFlowNotRunning",
        "TracejudgeWalNearLimit",
        "TracejudgeReceiversThrottling",
        "TracejudgeClickHouseInsertErrors",
        "TracejudgeSinkLagHigh",
        "TracejudgeJudgeCircuitOpen",
        "TracejudgeJudgeTasksShed",
        "TracejudgeJudgeErrors",
        "TracejudgeScoreDrop",
    }
    assert used >= {
        "up",
        "tracejudge_flow_running",
        "tracejudge_wal_backlog_bytes",
        "tracejudge_wal_limit_bytes",
        "tracejudge_receiver_requests_total",
        "tracejudge_sink_inserts_total",
        "tracejudge_sink_lag_seconds",
        "tracejudge_judge_circuit_open",
        "tracejudge_judge_shed_total",
        "tracejudge_judge_calls_total",
        "tracejudge_rule_score_ratio_sum",
        "tracejudge_rule_score_ratio_count",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_alert_unit_tests_cover_every_alert() -> None:
    tested = {
        case["alertname"]
        for test in load_yaml(PROM_DIR / "alerts_test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_dashboard_uses_only_registered_metrics() -> None:
    names = registry_names()
    exprs = dashboard_prometheus_exprs()
    used: set[str] = set()
    for where, expr in exprs:
        used |= check_expression(where, expr, names)
    assert used >= {
        "tracejudge_receiver_spans_total",
        "tracejudge_receiver_request_duration_seconds_bucket",
        "tracejudge_receiver_requests_total",
        "tracejudge_wal_backlog_bytes",
        "tracejudge_wal_limit_bytes",
        "tracejudge_sink_rows_total",
        "tracejudge_sink_insert_duration_seconds_bucket",
        "tracejudge_sink_lag_seconds",
    }


def test_promql_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, transport) (rate(a_bucket{outcome="x y"}[$__rate_interval])))'
        " / on(instance) group_left b > 1e3 and c offset 5m"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b", "c"}
    assert promql_label_names(expr) == {"le", "transport", "outcome", "instance"}


# --- Grafana ------------------------------------------------------------------------------------------------
def test_dashboard_datasources_are_provisioned(compose: dict[str, Any]) -> None:
    provisioned = {d["uid"]: d for d in load_yaml(DATASOURCES)["datasources"]}
    assert len(provisioned) == len(load_yaml(DATASOURCES)["datasources"]), "duplicate datasource uid"
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert dashboards
    seen_types = set()
    for path in dashboards:
        dash = json.loads(path.read_text())
        assert dash["uid"] and dash["title"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dash["panels"]:
            for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
                if ref is None:
                    continue
                assert ref["uid"] in provisioned, f"{path.name}: {panel['title']}: unknown uid {ref['uid']}"
                assert ref["type"] == provisioned[ref["uid"]]["type"], f"{path.name}: {panel['title']}"
                seen_types.add(ref["type"])
    assert seen_types == {"prometheus", "grafana-clickhouse-datasource"}


def test_grafana_provisioning_matches_compose(compose: dict[str, Any]) -> None:
    services = compose["services"]
    grafana = services["grafana"]
    env = grafana["environment"]
    plugins = env.get("GF_PLUGINS_PREINSTALL_SYNC") or env.get("GF_PLUGINS_PREINSTALL") or ""
    assert re.search(r"\bgrafana-clickhouse-datasource@\d+\.\d+\.\d+\b", plugins), "pin the ClickHouse plugin"
    grafana_mounts = mounts(grafana)
    assert Path(grafana_mounts["/etc/grafana/provisioning"]) == DOCKER / "grafana" / "provisioning"
    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    for provider in providers:
        assert Path(grafana_mounts[provider["options"]["path"]]) == DASHBOARDS

    by_type = {d["type"]: d for d in load_yaml(DATASOURCES)["datasources"]}
    prom = urlparse(by_type["prometheus"]["url"])
    assert prom.hostname in services and prom.port == 9090
    ch = by_type["grafana-clickhouse-datasource"]["jsonData"]
    clickhouse_env = services["clickhouse"]["environment"]
    assert ch["host"] in services and services[ch["host"]]["image"].startswith("clickhouse/")
    assert (ch["protocol"], ch["port"]) == ("http", 8123)
    assert ch["username"] == clickhouse_env["CLICKHOUSE_USER"]
    secret = by_type["grafana-clickhouse-datasource"]["secureJsonData"]["password"]
    assert secret in ("${CLICKHOUSE_PASSWORD}", "$CLICKHOUSE_PASSWORD")
    assert env["CLICKHOUSE_PASSWORD"] == clickhouse_env["CLICKHOUSE_PASSWORD"] == TEST_PASSWORD
    traces = ch["traces"]
    assert traces["otelEnabled"] is True and traces["defaultTable"] == "otel_traces"


def test_dashboard_sql_reads_tables_that_migrations_create() -> None:
    created = set()
    for sql in migrate.MIGRATIONS_DIR.glob("*.sql"):
        created |= set(re.findall(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", sql.read_text()))
    assert "otel_traces" in created
    queries = [
        target["rawSql"]
        for path in DASHBOARDS.glob("*.json")
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
        if "rawSql" in target
    ]
    assert queries, "no ClickHouse panel"
    for sql in queries:
        tables = set(re.findall(r"\bFROM\s+(\w+)", sql))
        assert tables and tables <= created, sql


# --- compose against the tracejudge config, the Collector and Prometheus ------------------------------------
def test_compose_images_pinned_limits_restart_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"tracejudge", "clickhouse", "otel-collector", "prometheus", "grafana"}
    for name, svc in services.items():
        tag = image_tag(svc["image"]) if "build" not in svc else None
        assert tag is None or (tag != "latest" and re.search(r"\d+\.\d+", tag)), f"{name}: pin {svc['image']}"
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        limit = svc.get("mem_limit") or limits.get("memory")
        assert limit and mem_bytes(limit) >= 256 * 1024**2, f"{name}: memory limit"
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: restart policy"
    named = set(compose.get("volumes") or {})
    for name, path in [
        ("tracejudge", "/data"),
        ("clickhouse", "/var/lib/clickhouse"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ]:
        assert mounts(services[name]).get(path) in named, f"{name}: {path} must be a named volume"
    build = services["tracejudge"]["build"]
    assert Path(build["context"]) == ROOT and build["dockerfile"] == "docker/Dockerfile"


def test_compose_agrees_with_the_tracejudge_config(
    compose: dict[str, Any], container_settings: Settings
) -> None:
    services = compose["services"]
    s = container_settings
    assert s.host == "0.0.0.0"
    assert mounts(services["tracejudge"]).get(str(s.data_dir)), "the data dir must be a volume"
    dsn = urlparse(s.resolved_dsn)
    clickhouse_env = services["clickhouse"]["environment"]
    assert dsn.scheme == "http" and dsn.hostname == "clickhouse" and dsn.port == 8123, s.resolved_dsn
    assert (dsn.username, dsn.password) == (clickhouse_env["CLICKHOUSE_USER"], TEST_PASSWORD)
    assert dsn.path.strip("/") == clickhouse_env.get("CLICKHOUSE_DB", "default")
    assert services["tracejudge"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert services["clickhouse"]["healthcheck"]["test"]

    published = {name: {host_port(p) for p in svc.get("ports", [])} for name, svc in services.items()}
    assert published["tracejudge"] == {(s.api_port, s.api_port)}, "publish only the API of tracejudge"
    assert {(4317, 4317), (4318, 4318)} <= published["otel-collector"]
    for name, ports in published.items():
        if name != "otel-collector":
            assert not {4317, 4318} & {p for p, _ in ports}, f"{name} must not take the OTLP host ports"


def collector_service(compose: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    svc = compose["services"]["otel-collector"]
    config_path = next(arg.split("=", 1)[1] for arg in svc["command"] if arg.startswith("--config="))
    config = load_yaml(Path(mounts(svc)[config_path]))
    return svc, config


COLLECTOR_KEYS = {
    "receivers": {"otlp": {"protocols"}},
    "processors": {
        "memory_limiter": {"check_interval", "limit_mib", "spike_limit_mib", "limit_percentage"},
        "batch": {"send_batch_size", "send_batch_max_size", "timeout", "metadata_keys"},
    },
    "exporters": {
        "otlp_grpc": {"endpoint", "tls", "compression", "timeout", "retry_on_failure", "sending_queue"},
        "load_balancing": {"routing_key", "protocol", "resolver", "timeout", "retry_on_failure"}
        | {"sending_queue"},
    },
    "extensions": {"health_check": {"endpoint"}},
}


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_collector_config_is_consistent(path: Path, compose: dict[str, Any]) -> None:
    config = load_yaml(path)
    service = config["service"]
    for kind, known in COLLECTOR_KEYS.items():
        for component_id, body in (config.get(kind) or {}).items():
            component_type = component_id.split("/")[0]
            assert component_type in known, f"{path.name}: {kind} {component_id}: not expected here"
            assert set(body or {}) <= known[component_type], f"{path.name}: {component_id}: unknown keys"
    assert set(service.get("extensions", [])) <= set(config.get("extensions") or {})
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in service["pipelines"].items():
        assert name.split("/")[0] == "traces", name
        for kind in used:
            refs = pipeline.get(kind, [])
            missing = set(refs) - set(config.get(kind) or {})
            assert not missing, f"{path.name}: pipeline {name} uses undefined {kind} {sorted(missing)}"
            used[kind] |= set(refs)
        assert pipeline["processors"][0].split("/")[0] == "memory_limiter", "memory_limiter goes first"
    for kind, names in used.items():
        assert names == set(config.get(kind) or {}), f"{path.name}: unused {kind}"
    for protocol in config["receivers"]["otlp"]["protocols"].values():
        assert protocol["endpoint"].startswith("0.0.0.0:"), "bind every interface in a container"
    # The pinned image documented in the file is the one compose runs.
    collector_tag = image_tag(compose["services"]["otel-collector"]["image"])
    assert f"opentelemetry-collector-contrib:{collector_tag}" in path.read_text()
    limit_mib = config["processors"]["memory_limiter"]["limit_mib"]
    assert limit_mib * 1024**2 < mem_bytes(compose["services"]["otel-collector"]["mem_limit"])


def test_collector_forwards_to_tracejudge(compose: dict[str, Any], container_settings: Settings) -> None:
    svc, config = collector_service(compose)
    assert config == load_yaml(DOCKER / "otelcol.yaml"), "compose runs docker/otelcol.yaml"
    (exporter,) = config["exporters"].values()
    assert exporter["endpoint"] == f"tracejudge:{container_settings.otlp_grpc_port}"
    assert exporter["tls"]["insecure"] is True
    assert exporter["retry_on_failure"]["enabled"] is True
    assert exporter["sending_queue"]["enabled"] is True
    assert "tracejudge" in svc["depends_on"]
    # A full batch must fit tracejudge's gRPC message limit at up to 64 KiB per span.
    batch = config["processors"]["batch"]
    assert batch["send_batch_max_size"] * 64 * 1024 <= container_settings.ingest.grpc_max_message_bytes
    tag = tuple(int(x) for x in image_tag(svc["image"]).split("."))
    assert tag >= (0, 144), "otlp_grpc is the exporter's name from v0.144 on"


def test_loadbalancing_config_routes_by_trace_id(container_settings: Settings) -> None:
    config = load_yaml(DOCKER / "otelcol-loadbalancing.yaml")
    (exporter,) = config["exporters"].values()
    assert exporter["routing_key"] == "traceID"
    assert "endpoint" not in exporter["protocol"]["otlp"], "the resolver sets each backend's endpoint"
    hostnames = exporter["resolver"]["static"]["hostnames"]
    assert len(hostnames) >= 2 and len(set(hostnames)) == len(hostnames)
    for host in hostnames:
        assert host.rsplit(":", 1)[1] == str(container_settings.otlp_grpc_port), host


def test_prometheus_scrapes_what_compose_runs(compose: dict[str, Any], container_settings: Settings) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    assert Path(mounts(prometheus)["/etc/prometheus"]) == PROM_DIR
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = load_yaml(PROM_DIR / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for job in jobs.values() for sc in job["static_configs"] for t in sc["targets"]}
    for target in targets:
        host = target.split(":")[0]
        assert host == "localhost" or host in services, f"scrape target {target} is not a compose service"
    tracejudge = jobs["tracejudge"]
    assert tracejudge.get("metrics_path", "/metrics") == "/metrics"
    assert tracejudge["static_configs"][0]["targets"] == [f"tracejudge:{container_settings.api_port}"]
    _svc, collector = collector_service(compose)
    reader = collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert f"otel-collector:{reader['port']}" in targets


# --- the image ----------------------------------------------------------------------------------------------
def dockerignore_excludes(path: str) -> bool:
    """Whether BuildKit leaves `path` (relative to the context) out, per docker/Dockerfile.dockerignore."""
    patterns = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_small() -> None:
    for path in [".venv/bin/python", "data/wal/x", ".git/HEAD", "tests/unit/x.py", "bench/ingest.py"]:
        assert dockerignore_excludes(path), path
    for path in ["connectors/__pycache__/x.pyc", "tracejudge.egg-info/PKG-INFO", ".mypy_cache/x"]:
        assert dockerignore_excludes(path), path
    for path in ["pyproject.toml", "connectors/clickhouse/migrate.py", "sql/migrations/0001_otel_traces.sql"]:
        assert not dockerignore_excludes(path), path


def test_dockerfile(dockerfile: list[tuple[str, str]], container_settings: Settings) -> None:
    ins = dict(dockerfile)  # last of each instruction
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", ins["FROM"]), "pin python:3.11.x-slim"
    user = ins["USER"].split(":")[0]
    assert user not in ("root", "0"), "run as a non-root user"
    assert set(ins["EXPOSE"].split()) == {"4317", "4318", "8080"}
    assert f"127.0.0.1:{container_settings.api_port}/readyz" in ins["HEALTHCHECK"]
    assert json.loads(ins["ENTRYPOINT"]) == [
        "tracejudge",
        "run",
        "--host",
        "0.0.0.0",
        "--data-dir",
        "/data",
        "--config",
        "/etc/tracejudge/tracejudge.yaml",
    ]
    # Every COPY source exists in the build context and is not dockerignored.
    workdir = Path("/")
    copied: dict[Path, str] = {}
    for instruction, args in dockerfile:
        if instruction == "WORKDIR":
            workdir = workdir / args
        if instruction == "COPY":
            *sources, dest = [a for a in args.split() if not a.startswith("--")]
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                assert not dockerignore_excludes(src.rstrip("/")), f"COPY {src}: excluded by the dockerignore"
                target = workdir / dest
                copied[target / Path(src).name if dest.endswith("/") and len(sources) > 1 else target] = src
    # The migrations: SQL_DIR is <dir of the installed packages>/../sql; installed editable from /app,
    # so /app/sql must be in the image, and the packages must be imported from /app.
    assert workdir == Path("/app")
    assert migrate.SQL_DIR == ROOT / "sql" and Path(migrate.__file__).resolve().parents[2] == ROOT
    assert copied.get(Path("/app/sql")) == "sql/"
    for package in ("tracejudge", "dataflow", "connectors", "config"):
        assert copied.get(Path("/app") / package) == f"{package}/", package
    assert any(i == "RUN" and "pip install -e /app" in a for i, a in dockerfile), "editable install"
    assert copied.get(Path("/etc/tracejudge/tracejudge.yaml")) == "docker/tracejudge.yaml"
