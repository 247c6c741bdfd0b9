"""What `tracejudge config check` says about LLM connections (each one's key must be in the environment) and
the listeners' TLS files (they must load, as `tracejudge run` loads them).

A connection names the environment variable holding its key (`api_key_env`); when that variable is not set, every
judge call through it ends in a `JudgeAuthError` score row. The check names such connections before the service
starts. Connections come from `judging.connections_file`, validated exactly as `tracejudge run` applies it, and,
with `--online`, from the `connections` table of the configured ClickHouse (the ones the file does not replace).
The key is looked up in the environment of the check, so run it where `tracejudge run` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from connectors.clickhouse.client import ClickHouse, redact_dsn
from connectors.clickhouse.connections_store import ConnectionStore, apply_connections_file
from connectors.tls import ServerTls
from dataflow.config import Settings, TlsConfig
from dataflow.errors import TracejudgeError
from dataflow.judging.connections import ConnectionSpec


@dataclass(frozen=True)
class CheckedConnection:
    spec: ConnectionSpec
    source: str  # "connections file PATH" or "connections table"

    @property
    def problem(self) -> str:
        """'' when the key is set, else a sentence naming the connection and the variable."""
        return self.spec.key_problem()


@dataclass
class ConnectionsReport:
    connections: list[CheckedConnection] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # a check that was asked for and could not run

    @property
    def missing_keys(self) -> list[CheckedConnection]:
        return [c for c in self.connections if c.problem]

    def summary(self, online: bool) -> str:
        listed = ", ".join(
            f"{c.spec.name} ({c.spec.provider}, key {c.spec.api_key_env} {'missing' if c.problem else 'set'})"
            for c in self.connections
        )
        if self.errors:
            return f"{listed or 'none in the file'}; the connections table was not read"
        if not listed:
            return "none" if online else "none configured (--online also reads the connections table)"
        return listed


class _DryRun(ConnectionStore):
    """A store that holds nothing: `apply_connections_file` validates the file against it and writes nowhere."""

    def __init__(self) -> None:  # no ClickHouse behind it
        pass

    def by_name(self, name: str) -> ConnectionSpec | None:
        return None

    def save(self, spec: ConnectionSpec) -> ConnectionSpec:
        return spec


def file_connections(path: Path) -> list[ConnectionSpec]:
    """The connections of a connections file; raises ConfigError naming the file and entry at fault."""
    return [spec for _action, spec in apply_connections_file(path, _DryRun())]


def stored_connections(settings: Settings) -> list[ConnectionSpec]:
    """The connections in ClickHouse's `connections` table; [] when an embedded data directory is not there yet.

    Raises TracejudgeError when ClickHouse cannot be reached or read (for the embedded engine: a running service
    holds its data directory; ask its API, `GET /api/v1/connections`, instead).
    """
    dsn = settings.resolved_dsn
    if dsn.startswith("chdb://") and not Path(dsn[len("chdb://") :]).is_dir():
        return []
    ch = ClickHouse(dsn)
    try:
        tables = ch.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase()")
        if ("connections",) not in tables:
            return []
        return ConnectionStore(ch).load()
    finally:
        ch.close()


def check_connections(settings: Settings, online: bool) -> ConnectionsReport:
    """Every connection the service would use, with its key status. A bad connections file raises ConfigError."""
    report = ConnectionsReport()
    path = settings.judging.connections_file
    if path is not None:
        report.connections += [
            CheckedConnection(s, f"connections file {path}") for s in file_connections(path)
        ]
    if online:
        from_file = {c.spec.name for c in report.connections}
        try:
            stored = stored_connections(settings)
        except (TracejudgeError, OSError, RuntimeError) as exc:
            where = redact_dsn(settings.resolved_dsn)
            hint = (
                " (a running tracejudge holds its embedded data directory: ask its API, GET /api/v1/connections)"
                if where.startswith("chdb://")
                else ""
            )
            report.errors.append(f"cannot read the connections table at {where}: {exc}{hint}")
        else:
            report.connections += [
                CheckedConnection(s, "connections table") for s in stored if s.name not in from_file
            ]
    return report


def check_tls(config: TlsConfig) -> list[str]:
    """The problem loading the TLS files, as `tracejudge run` would meet it; none when TLS is off."""
    if not config.enabled:
        return []
    try:
        ServerTls(config)
    except TracejudgeError as exc:
        return [str(exc)]
    return []
