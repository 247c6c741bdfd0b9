"""The service configuration, declared once.

Precedence, highest first: command-line flags, `TRACEJUDGE_*` environment variables (nested keys with `__`,
e.g. `TRACEJUDGE_WAL__MAX_BYTES`), the YAML config file, the defaults below. `tracejudge config check` runs
exactly this validation.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dataflow.errors import ConfigError
from dataflow.limits_config import LimitsConfig

DEFAULT_INPUT_KEYS = [
    "tracejudge.input",
    "dokimos.input",
    "langfuse.observation.input",
    "langfuse.trace.input",
    "input.value",
    "gen_ai.input.messages",
    "gen_ai.prompt",
    "traceloop.entity.input",
    "llm.input",
    "input",
    "prompt",
]
DEFAULT_OUTPUT_KEYS = [
    "tracejudge.output",
    "dokimos.output",
    "langfuse.observation.output",
    "langfuse.trace.output",
    "output.value",
    "gen_ai.output.messages",
    "gen_ai.completion",
    "traceloop.entity.output",
    "llm.output",
    "output",
    "completion",
]
DEFAULT_PROJECT_KEYS = [
    "tracejudge.project",
    "dokimos.project",
    "dokimos.project.name",
    "openinference.project.name",
    "service.name",
]
DEFAULT_SESSION_KEYS = [
    "session.id",
    "gen_ai.conversation.id",
    "traceloop.association.properties.session_id",
    "langfuse.session.id",
]

MIB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    """How OTLP requests are received, validated and normalised (YAML key `ingest`)."""

    max_body_bytes: int = Field(
        20 * MIB,
        gt=0,
        description="Largest HTTP request body in bytes, counted after decompression (413 above).",
    )
    grpc_max_message_bytes: int = Field(
        64 * MIB, gt=0, description="Largest gRPC message in bytes (RESOURCE_EXHAUSTED above)."
    )
    input_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INPUT_KEYS),
        description="Span attributes searched in order for the span's Input text; the first present wins.",
    )
    output_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OUTPUT_KEYS),
        description="Span attributes searched in order for the span's Output text; the first present wins.",
    )
    project_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROJECT_KEYS),
        description="Resource attributes searched in order for the project; 'default' when none is present.",
    )
    default_project: str = Field("default", min_length=1, description="Project of a trace that names none.")
    session_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SESSION_KEYS),
        description="Span, then resource, attributes searched in order for the session id.",
    )
    keep_io_in_attributes: bool = Field(
        False,
        description=(
            "Keep the attribute that supplied Input/Output in SpanAttributes too. False halves storage: "
            "the text lives once, in the Input and Output columns."
        ),
    )
    max_errors_in_message: int = Field(
        5, ge=1, description="How many rejected spans a partial-success message names."
    )
    duplicate_window_s: float = Field(
        600.0,
        ge=0,
        description=(
            "A request byte-identical to one acknowledged this many seconds ago or less is answered again "
            "without storing its spans twice (a client's retry); 0: off."
        ),
    )
    duplicate_max_requests: int = Field(
        100_000, gt=0, description="Most acknowledged requests remembered for that (16-byte digests, LRU)."
    )
    decode_workers: int = Field(
        2,
        ge=0,
        le=64,
        description=(
            "Processes that decode request bodies, off the receiving process's GIL; 0 decodes in the "
            "receiving process. Used only with `workers: 0` (the workers decode what they receive)."
        ),
    )
    workers: int | None = Field(
        None,
        ge=0,
        le=64,
        description=(
            "Processes that receive OTLP (gRPC and HTTP), decode and append to their own log partition; "
            "unset: one per core; 0: receive in the main process (with `decode_workers`)."
        ),
    )

    @property
    def worker_count(self) -> int:
        """`workers`, with unset resolved to the number of cores."""
        return self.workers if self.workers is not None else (os.cpu_count() or 1)


class WalConfig(_Section):
    """The write-ahead log that makes an acknowledgement durable (YAML key `wal`)."""

    fsync: Literal["always", "never"] = Field(
        "always",
        description=(
            "'always': group-committed fsync before any acknowledgement (survives power loss). "
            "'never': written to the OS before acknowledgement (survives a process crash only)."
        ),
    )
    max_bytes: int = Field(
        2048 * MIB,
        gt=0,
        description="Bound on unreclaimed log bytes; above it receivers answer 429 / UNAVAILABLE with Retry-After.",
    )
    segment_max_rows: int = Field(50_000, gt=0, description="A segment is sealed at this many spans.")
    segment_max_bytes: int = Field(256 * MIB, gt=0, description="A segment is sealed at this many bytes.")
    segment_max_age_s: float = Field(
        2.0,
        gt=0,
        description=(
            "A segment is sealed this many seconds after its first batch; spans reach ClickHouse about this "
            "long after they arrive (bigger parts: 2 s cut ClickHouse's merge work ~45% against 1 s)."
        ),
    )
    partitions: int = Field(
        1, ge=1, le=64, description="Log partitions, read in parallel by the flow's workers."
    )
    retry_after_s: float = Field(
        2.0, gt=0, description="Retry-After (seconds) answered when the log is full."
    )
    reclaim_interval_s: float = Field(
        2.0, gt=0, description="How often sealed, committed segments are deleted."
    )
    disk_min_free_bytes: int = Field(
        64 * MIB,
        ge=0,
        description=(
            "Free space of the data directory's file system under which receivers answer 503 / UNAVAILABLE "
            "(and the disk reserve is released), until the reserve and this much are free again; 0: never."
        ),
    )
    disk_reserve_bytes: int = Field(
        64 * MIB,
        ge=0,
        description=(
            "A file of this size kept in the data directory and deleted when the disk fills, so the recovery "
            "store and embedded ClickHouse can go on writing meanwhile; 0: none."
        ),
    )


class FlowConfig(_Section):
    """The Bytewax dataflow (YAML key `flow`)."""

    workers: int = Field(1, ge=1, le=16, description="Bytewax workers in this process.")
    epoch_interval_s: float = Field(
        1.0,
        gt=0,
        description="Bytewax epoch (snapshot) interval in seconds; replays after a crash span about this.",
    )
    recovery: bool = Field(
        True, description="Snapshot the flow's state under <data_dir>/recovery (at-least-once)."
    )
    recovery_partitions: int = Field(1, ge=1, description="SQLite partitions of the recovery store.")


class WindowConfig(_Section):
    """How spans are gathered into traces before rules run (YAML key `windows`)."""

    settle_s: float = Field(
        2.0, gt=0, description="Once the root span arrived, close after this many seconds with no new span."
    )
    idle_gap_s: float = Field(
        30.0, gt=0, description="Without a root span, close after this many seconds with no new span."
    )
    max_wait_s: float = Field(
        600.0, gt=0, description="Close this many seconds after the trace's first span."
    )
    max_spans: int = Field(10_000, gt=0, description="Close a trace as soon as it holds this many spans.")
    max_open_traces: int = Field(
        100_000,
        gt=0,
        description="Bound on open traces per process; past it the oldest close early (counted).",
    )
    shards: int = Field(
        256,
        ge=1,
        le=65536,
        description="Window state is kept in this many keyed shards (recovery granularity).",
    )
    late_spans: Literal["rescore", "ignore"] = Field(
        "rescore",
        description=(
            "A span arriving after its trace closed is always stored; 'rescore' re-runs the trace's trace-scope "
            "rules over the whole trace, 'ignore' only counts it."
        ),
    )
    remember_closed: int = Field(
        1_000_000,
        ge=0,
        description="How many closed trace ids are remembered to recognise late spans (per process; 0: none).",
    )

    @model_validator(mode="after")
    def _check_order(self) -> WindowConfig:
        if self.settle_s > self.idle_gap_s:
            msg = "windows.settle_s must not exceed windows.idle_gap_s"
            raise ValueError(msg)
        if self.idle_gap_s > self.max_wait_s:
            msg = "windows.idle_gap_s must not exceed windows.max_wait_s"
            raise ValueError(msg)
        return self


class RulesConfig(_Section):
    """Scoring rules (YAML key `rules`)."""

    file: Path | None = Field(
        None, description="A rules YAML file applied at start (create or update by name); empty: none."
    )
    reload_interval_s: float = Field(2.0, gt=0, description="How often each process checks for rule changes.")
    status_interval_s: float = Field(5.0, gt=0, description="How often per-rule status rows are written.")
    batch_filters: bool = Field(
        False,
        description=(
            "Evaluate the rules' filters over each span batch at once (vectorised Arrow), building in full only "
            "the spans of traces some rule matched; off: each sampled rule's filter per span of a closed trace "
            "(faster when most traces match some rule; bench/RESULTS.md, 'Rule filters per batch')."
        ),
    )


class JudgingConfig(_Section):
    """LLM judges (YAML key `judging`)."""

    connections_file: Path | None = Field(
        None, description="A connections YAML file applied at start (create or replace by name); empty: none."
    )
    max_pending: int = Field(
        10_000, gt=0, description="Judge calls pending per process; more are shed (overload)."
    )
    shards: int = Field(
        4, ge=1, le=256, description="Keyed shards of the judge step (pending calls spread over them)."
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failures that open a connection's breaker."
    )
    breaker_cooldown_s: float = Field(
        30.0, gt=0, description="How long an open breaker sheds calls (seconds)."
    )
    heartbeat_interval_s: float = Field(
        2.0,
        gt=0,
        description="How often each process records a heartbeat in ClickHouse and counts the live processes "
        "(a heartbeat younger than 3 intervals); per-rule judge budgets are split evenly among them.",
    )
    eof_wait_s: float = Field(
        60.0,
        ge=0,
        description="With flow.recovery off, how long a stop waits for judge calls still running; calls cut "
        "then get a JudgeCancelled error row (nothing would redo them). With recovery on, a stop does not wait: "
        "their jobs run again after a restart.",
    )


class SinkConfig(_Section):
    """Writing spans to ClickHouse (YAML key `sink`)."""

    retry_initial_s: float = Field(0.5, gt=0, description="First back-off after a failed insert (seconds).")
    retry_max_s: float = Field(30.0, gt=0, description="Longest back-off between insert attempts (seconds).")


class ClickHouseConfig(_Section):
    """The ClickHouse schema's layout on a server or cluster (YAML key `clickhouse`); see
    connectors/clickhouse/cluster_ddl.py for the DDL each option produces."""

    cluster: str = Field(
        "",
        pattern=r"^([A-Za-z_][A-Za-z0-9_-]*)?$",
        description=(
            "Cluster name (remote_servers) for ON CLUSTER DDL: each table becomes <table>_local on every node "
            "plus a Distributed table <table> in front, which the service reads and writes. Empty: one server."
        ),
    )
    replicated: bool = Field(
        False,
        description=(
            "Create Replicated*MergeTree tables (ZooKeeper path /clickhouse/tables/{shard}/{database}/<table>, "
            "replica {replica}: the server's macros). False: plain *MergeTree."
        ),
    )


class ApiConfig(_Section):
    """The HTTP API (YAML key `api`)."""

    sql_max_rows: int = Field(10_000, gt=0, description="Most rows `POST /api/v1/sql` returns.")
    sql_max_execution_s: int = Field(
        30, gt=0, description="Time limit of one read-only query (whole seconds)."
    )
    sql_max_memory_bytes: int = Field(
        1024 * MIB, gt=0, description="Memory one read-only query may use (ClickHouse's max_memory_usage)."
    )
    sql_max_bytes_before_external_group_by: int = Field(
        512 * MIB,
        ge=0,
        description="A query's GROUP BY spills to disk above this many bytes (0: never, it fails instead).",
    )
    sql_max_bytes_before_external_sort: int = Field(
        512 * MIB,
        ge=0,
        description="A query's ORDER BY spills to disk above this many bytes (0: never, it fails instead).",
    )
    sql_max_concurrent: int = Field(
        2, ge=1, le=64, description="Read-only queries (API and UI) that run at once; more wait in line."
    )
    sql_queue_wait_s: float = Field(
        2.0,
        ge=0,
        description="How long a query waits for a free slot (seconds); then 429 with Retry-After (0: no wait).",
    )
    traces_default_limit: int = Field(50, gt=0, description="Default `limit` of `GET /api/v1/traces`.")
    traces_max_limit: int = Field(1000, gt=0, description="Largest `limit` of `GET /api/v1/traces`.")


class AuthConfig(_Section):
    """API keys (YAML key `auth`; keys themselves are made with `tracejudge keys create`)."""

    enabled: bool | None = Field(
        None,
        description="Require an API key on every listener; unset: on as soon as any key exists (revoked too).",
    )
    insecure: bool = Field(
        False,
        description="Allow listening on a non-loopback address with no API key (`run --insecure`).",
    )
    reload_interval_s: float = Field(
        2.0, gt=0, description="How often each process re-reads the keys (seconds): a revoke's delay."
    )
    session_max_age_s: int = Field(43_200, gt=0, description="How long a web UI login lasts (seconds).")


class TlsConfig(_Section):
    """TLS on the OTLP/gRPC, OTLP/HTTP and API listeners, all three from the same files (YAML key `tls`). The
    files are read again on SIGHUP: new connections get the new certificate; a set that fails to load is
    logged and the old one kept."""

    cert_file: Path | None = Field(
        None, description="PEM certificate (chain) the listeners serve; empty: plain TCP, no TLS."
    )
    key_file: Path | None = Field(None, description="PEM private key of cert_file (unencrypted).")
    client_ca_file: Path | None = Field(
        None,
        description="PEM CA certificates; when set every client must present a certificate they signed "
        "(mutual TLS). Empty: no client certificate is asked for.",
    )

    @model_validator(mode="after")
    def _check_pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            msg = "tls.cert_file and tls.key_file go together: set both or neither"
            raise ValueError(msg)
        if self.client_ca_file is not None and self.cert_file is None:
            msg = "tls.client_ca_file needs tls.cert_file and tls.key_file"
            raise ValueError(msg)
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class ScoresLogConfig(_Section):
    """The scores API's write-ahead log, `<data_dir>/scores_wal/` (YAML key `scores_log`): a posted score is
    acknowledged once durable there and reaches ClickHouse when its segment is sealed and stored."""

    fsync: Literal["always", "never"] = Field(
        "always",
        description=(
            "'always': group-committed fsync before a post is answered (survives power loss). "
            "'never': written to the OS before the answer (survives a process crash only)."
        ),
    )
    max_bytes: int = Field(
        256 * MIB,
        gt=0,
        description="Bound on log bytes not yet stored in ClickHouse; above it posts answer 503 with Retry-After.",
    )
    segment_max_rows: int = Field(
        20_000, gt=0, description="A segment is sealed at this many scores (one ClickHouse insert each)."
    )
    segment_max_age_s: float = Field(
        0.2,
        gt=0,
        description="A segment is sealed this many seconds after its first post; scores reach ClickHouse "
        "about this long after they are acknowledged.",
    )
    retry_after_s: float = Field(
        1.0, gt=0, description="Retry-After (seconds) answered when the log is full or a read could not wait."
    )
    read_wait_s: float = Field(
        5.0,
        gt=0,
        description=(
            "Longest wait (seconds) of a read or delete of scores for the scores acknowledged before it to be "
            "stored; past it a read serves what is stored and a delete answers 503 with Retry-After."
        ),
    )

    def wal_config(self) -> WalConfig:
        """The log's settings as the write-ahead log takes them (one partition)."""
        return WalConfig(
            fsync=self.fsync,
            max_bytes=self.max_bytes,
            segment_max_rows=self.segment_max_rows,
            segment_max_age_s=self.segment_max_age_s,
            partitions=1,
            retry_after_s=self.retry_after_s,
        )


class CompatConfig(_Section):
    """The routes that take the Langfuse and InteractiveAI SDKs' spans and scores (YAML key `compat`)."""

    public_keys: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "SDK public key (the HTTP Basic user) -> the project of the spans and scores sent with it; "
            "a key not listed (or none): 'default'. The secret key is not checked."
        ),
    )


class JobsConfig(_Section):
    """Re-scoring jobs: rewind, backfill, score selected traces (YAML key `jobs`)."""

    max_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Part of each connection's concurrency and rates a job's judge calls may use.",
    )
    page_traces: int = Field(5000, ge=1, le=100_000, description="Traces a job scores between checkpoints.")
    lease_s: float = Field(
        30.0,
        gt=0,
        description="A running job whose process has not renewed its lease this long is taken over.",
    )
    settle_s: float = Field(
        1.0, ge=0, description="How long a claim waits before it reads who won (longer than an insert takes)."
    )
    poll_s: float = Field(1.0, gt=0, description="How often each process looks for jobs to run.")
    trace_lookback_s: float = Field(
        3600.0, gt=0, description="A trace's start is its earliest span at most this long before the window."
    )
    live_rest: float = Field(
        3.0,
        ge=0,
        description="While live spans arrive, a job rests after each page this many times as long as the page "
        "took (3: busy at most a quarter of the time), leaving the cores to live traffic; 0: never rests.",
    )
    pause_pending_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A job waits while live judge calls pending exceed this part of max_pending.",
    )
    pause_unstored_segments: int = Field(
        4,
        ge=1,
        description="A job waits while this many sealed log segments wait to be stored (ingest lags).",
    )


_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "tracejudge_config_file", default=None
)


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """Everything `tracejudge run` needs; every field also from the config file and TRACEJUDGE_* env vars."""

    model_config = SettingsConfigDict(env_prefix="TRACEJUDGE_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(
        Path("./data"), description="Where the log, recovery store and embedded ClickHouse live."
    )
    host: str = Field("127.0.0.1", description="Address every listener binds.")
    otlp_grpc_port: int = Field(4317, ge=0, le=65535, description="OTLP/gRPC port (0 picks a free one).")
    otlp_http_port: int = Field(4318, ge=0, le=65535, description="OTLP/HTTP port (0 picks a free one).")
    api_port: int = Field(8080, ge=0, le=65535, description="HTTP API port (0 picks a free one).")
    clickhouse_dsn: str | None = Field(
        None,
        description="chdb:///abs/dir (embedded) or http(s)://user:pass@host:8123/db; empty: chdb under data_dir.",
    )
    retention_days: int = Field(30, ge=1, le=36500, description="Days spans are kept in otel_traces (TTL).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    wal: WalConfig = Field(default_factory=WalConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    judging: JudgingConfig = Field(default_factory=JudgingConfig)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    compat: CompatConfig = Field(default_factory=CompatConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    scores_log: ScoresLogConfig = Field(default_factory=ScoresLogConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    @field_validator("clickhouse_dsn")
    @classmethod
    def _check_dsn(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("chdb://", "http://", "https://")):
            msg = "clickhouse_dsn: must start with chdb://, http:// or https://"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_cluster(self) -> Settings:
        ch = self.clickhouse
        if (ch.cluster or ch.replicated) and self.resolved_dsn.startswith("chdb://"):
            msg = "clickhouse.cluster and clickhouse.replicated need a ClickHouse server (clickhouse_dsn http(s)://)"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _check_ports(self) -> Settings:
        ports = [p for p in (self.otlp_grpc_port, self.otlp_http_port, self.api_port) if p]
        if len(ports) != len(set(ports)):
            msg = "otlp_grpc_port, otlp_http_port and api_port must differ"
            raise ValueError(msg)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE.get()
        data = _read_yaml(path) if path is not None else {}
        return init_settings, env_settings, _YamlSource(settings_cls, data)

    @property
    def resolved_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read config file {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"config file {path} is not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        msg = f"config file {path}: the top level must be a mapping"
        raise ConfigError(msg)
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from flags (`overrides`, None values ignored), env, the config file and defaults."""
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, config_file)) from exc
    finally:
        _CONFIG_FILE.reset(token)


def format_validation_error(exc: ValidationError, config_file: Path | None) -> str:
    where = f" in {config_file}" if config_file else ""
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)
