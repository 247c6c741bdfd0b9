"""`tracejudge run`: wire the receivers, the write-ahead log, the Bytewax flow and ClickHouse together.

Start-up fails fast (bad config, ports taken, ClickHouse unreachable, a damaged log). After start-up
nothing crashes the process: errors are answered, counted or retried. SIGINT/SIGTERM stop it gracefully:
receivers stop accepting, the log is sealed, the flow drains every acknowledged span into ClickHouse and
ends, and the process exits 0.

The service is a `lifecycle.Lifecycle` of components (`tracejudge.components` and thin `Step`s), started in
the order below and stopped in the reverse one: a start-up that fails half-way stops what it had started.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from bytewax.recovery import init_db_dir

from connectors.api.app import ApiState, build_api_app
from connectors.api.jobs import JobsDeps
from connectors.api.keys import AuthDeps
from connectors.auth.exposure import check_exposure
from connectors.auth.key_file import ExportingSource
from connectors.auth.ring import KeyRing
from connectors.auth.session import SessionSigner, load_secret
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.cluster_ddl import Layout
from connectors.clickhouse.connections_store import ConnectionStore, apply_connections_file
from connectors.clickhouse.fragments_store import FragmentStore
from connectors.clickhouse.heartbeats_store import HeartbeatStore
from connectors.clickhouse.job_traces import JobTraces
from connectors.clickhouse.jobs_store import JobStore
from connectors.clickhouse.keys_store import KeyStore
from connectors.clickhouse.migrate import apply_retention, migrate
from connectors.clickhouse.replay import SpanFetcher
from connectors.clickhouse.rules_store import RuleStore
from connectors.clickhouse.score_configs_store import ScoreConfigStore
from connectors.clickhouse.score_sink import ScoreSink, ScoreWriter
from connectors.clickhouse.scores_store import SCORES_TABLE, ScoreStore
from connectors.clickhouse.sink import SPANS_TABLE, SpanStore, SpanWriter
from connectors.llm.factory import load_sdks, make_client
from connectors.otlp.decode_pool import DecodePool
from connectors.otlp.http import build_otlp_http_app
from connectors.otlp.ingest import Ingestor, normalizer_from
from connectors.otlp.judge_spans import JudgeSpanSink
from connectors.scores_log.batch import SCORES_LOG_SCHEMA
from connectors.scores_log.logged import LoggedScores
from connectors.scores_log.writer import ScoreLogWriter
from connectors.tls import ServerTls
from connectors.wal.disk_guard import DiskGuard
from connectors.wal.log import Wal
from connectors.wal.reclaim import Reclaimer
from connectors.wal.source import WalRecordSource
from dataflow import metrics
from dataflow.config import Settings
from dataflow.errors import ConfigError
from dataflow.flow import SOURCE_STEPS, ScoringPlan, build_flow
from dataflow.health import HEALTH
from dataflow.judging.connections import ConnectionRegistry
from dataflow.judging.executor import ExecutorConfig, JudgeExecutor
from dataflow.rules.checks import scorer_connection_problems
from dataflow.rules.files import apply_rules, read_rules_file, validate_rules
from dataflow.rules.registry import RuleRegistry
from dataflow.rules.status import RuleStats
from dataflow.scoring.foreign import ForeignCheck
from dataflow.scoring.judge_step import JudgeContext, Pending, RuleBudgets
from dataflow.scoring.step import ScoringStep
from tracejudge.components import FlowThread, GrpcReceiver, HttpServers, Listeners, StatusWriter
from tracejudge.dedupe_link import Broker
from tracejudge.heartbeat import Heartbeat
from tracejudge.ingest_workers import IngestWorkers
from tracejudge.jobs import JobParts, job_runner
from tracejudge.lifecycle import Lifecycle, Step

logger = logging.getLogger("tracejudge")


def _process_id(data_dir: Path) -> str:
    """A stable id for this data directory's process (rule status rows are per process)."""
    path = data_dir / "process_id"
    if not path.exists():
        path.write_text(f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    return path.read_text().strip()


class Service:
    """The whole tracejudge process: its components, started in order and stopped in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_requested = threading.Event()
        self.flow_stop = threading.Event()
        self._lifecycle = Lifecycle()
        self._flow: FlowThread | None = None
        self._ready = False
        self.ports: dict[str, int] = {}
        self.tls: ServerTls | None = None
        self.http: HttpServers | None = None
        self.ingest_workers: IngestWorkers | None = None

    # --- start-up ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every component; on an error stop those started, in reverse, and re-raise it."""
        s = self.settings
        os.environ["TZ"] = "UTC"
        time.tzset()
        lc = self._lifecycle
        with lc.starting():
            # Claim the HTTP ports first: a taken port fails start-up before anything else is touched.
            listeners = lc.start(Listeners(s.host, {"otlp_http": s.otlp_http_port, "api": s.api_port}))
            self.tls = ServerTls(s.tls) if s.tls.enabled else None  # bad TLS files fail start-up here
            data_dir = s.data_dir.resolve()
            data_dir.mkdir(parents=True, exist_ok=True)
            logger.info("data directory %s", data_dir)
            metrics.zero_alerted_series((SPANS_TABLE, SCORES_TABLE))
            self.disk_guard = lc.start(
                DiskGuard(data_dir, s.wal.disk_reserve_bytes, s.wal.disk_min_free_bytes)
            )
            self._open_clickhouse()
            self._start_auth(data_dir)
            self._apply_files()
            self._start_registries(data_dir)
            self._start_pipeline(data_dir)
            self._start_scores_log(data_dir)
            self._start_receivers(listeners)
        self._ready = True
        logger.info("ready")

    def _open_clickhouse(self) -> None:
        s, lc = self.settings, self._lifecycle
        self.writer_ch = ClickHouse(s.resolved_dsn)
        lc.start(Step("clickhouse-writer", on_stop=self.writer_ch.close))
        self.layout = Layout.of(s.clickhouse)
        migrate(self.writer_ch, layout=self.layout)
        apply_retention(self.writer_ch, s.retention_days, self.layout)
        self.reader_ch = ClickHouse(s.resolved_dsn)
        lc.start(Step("clickhouse-reader", on_stop=self.reader_ch.close))
        self.readonly = self.reader_ch.readonly(s.api)
        lc.start(Step("clickhouse-readonly", on_stop=self.readonly.close))
        self.scores_ch = ClickHouse(s.resolved_dsn)
        lc.start(Step("clickhouse-scores", on_stop=self.scores_ch.close))
        # The scores API's own connection: a client is serialised, and a large score write must not hold up the
        # scoring step's span look-ups on the reader.
        self.scores_api_ch = ClickHouse(s.resolved_dsn)
        lc.start(Step("clickhouse-scores-api", on_stop=self.scores_api_ch.close))
        # Re-scoring jobs' plans, span reads and score writes: their own connection, off the live path's.
        self.jobs_ch = ClickHouse(s.resolved_dsn)
        lc.start(Step("clickhouse-jobs", on_stop=self.jobs_ch.close))
        logger.info("ClickHouse ready at %s", self.writer_ch.safe_dsn)

    def _start_auth(self, data_dir: Path) -> None:
        """The key ring (polled like the rules); refuse a network address with authentication off."""
        s = self.settings
        store = KeyStore(self.reader_ch)
        self.keys_file = (
            data_dir / "ingest-keys.json"
        )  # the ingest workers' copy (connectors/auth/key_file.py)
        self.key_ring = KeyRing(
            ExportingSource(store, self.keys_file), s.auth.enabled, s.auth.reload_interval_s
        )
        self.key_ring.refresh(force=True)
        check_exposure(s.host, self.key_ring.enabled, s.auth.insecure)
        logger.info("authentication %s", "on" if self.key_ring.enabled else "off (no API key yet)")
        sessions = SessionSigner(load_secret(data_dir), s.auth.session_max_age_s)
        self.auth = AuthDeps(store, self.key_ring, sessions)
        self._lifecycle.start(Step("key-reloader", self.key_ring.start, self.key_ring.stop))

    def _apply_files(self) -> None:
        s = self.settings
        self.rule_store = RuleStore(self.reader_ch)
        self.connection_store = ConnectionStore(self.reader_ch)
        # connections first: the rules file's judge scorers are checked against them, as the rules API does
        if s.judging.connections_file is not None:
            for action, conn in apply_connections_file(s.judging.connections_file, self.connection_store):
                logger.info("connections file: %s %s (version %d)", action, conn.name, conn.version)
        if s.rules.file is not None:
            specs = validate_rules(read_rules_file(s.rules.file), s.rules.file)
            problems = [
                f"rule {spec.project}/{spec.name}: {problem}"
                for spec in specs
                for _, problem in scorer_connection_problems(spec, self.connection_store.by_name)
            ]
            if problems:
                raise ConfigError(f"rules file {s.rules.file}: " + "; ".join(problems))
            for action, spec in apply_rules(specs, self.rule_store):
                logger.info(
                    "rules file: %s %s/%s (version %d)", action, spec.project, spec.name, spec.version
                )

    def _start_registries(self, data_dir: Path) -> None:
        """The status writer, then the reloaders: stopped after the flow, so the last counts are written."""
        s, lc = self.settings, self._lifecycle
        self.process_id = _process_id(data_dir)
        self.stats = RuleStats()
        for rule_id, counts in self.rule_store.process_counts(self.process_id).items():
            self.stats.seed(rule_id, counts)
        lc.start(StatusWriter(self.stats, self.rule_store, self.process_id, s.rules.status_interval_s))
        self.heartbeat = lc.start(
            Heartbeat(HeartbeatStore(self.reader_ch), self.process_id, s.judging.heartbeat_interval_s)
        )
        self.connections = ConnectionRegistry(self.connection_store, s.rules.reload_interval_s)
        self.connections.refresh(force=True)
        lc.start(Step("connection-reloader", self.connections.start, self.connections.stop))
        self.registry = RuleRegistry(self.rule_store, s.rules.reload_interval_s)
        self.registry.refresh(force=True)
        lc.start(Step("rule-reloader", self.registry.start, self.registry.stop))

    def _start_pipeline(self, data_dir: Path) -> None:
        """The log's consumers (reclaimer, span store, judge loop, flow), then the log: it closes first."""
        s, lc = self.settings, self._lifecycle
        self.wal = Wal(data_dir / "wal", s.wal, workers=s.ingest.worker_count)
        self.wal.guard = self.disk_guard
        if s.ingest.worker_count:  # /readyz sees a log or a disk the workers filled at once, not at a poll
            hooks = [self.wal.refresh_state, self.disk_guard.refresh]

            def unhook() -> None:
                for hook in hooks:
                    HEALTH.before_read.remove(hook)

            lc.start(Step("health-refresh", lambda: HEALTH.before_read.extend(hooks), unhook))
        recovery_dir: Path | None = None
        if s.flow.recovery:
            recovery_dir = data_dir / "recovery"
            if not any(recovery_dir.glob("*.sqlite3")):
                recovery_dir.mkdir(parents=True, exist_ok=True)
                init_db_dir(recovery_dir, s.flow.recovery_partitions)  # type: ignore[no-untyped-call]
        self.reclaimer = Reclaimer(self.wal, s.wal.reclaim_interval_s, recovery_dir, list(SOURCE_STEPS))
        lc.start(Step("wal-reclaimer", self.reclaimer.start, self._stop_reclaimer))
        writer = SpanWriter(self.writer_ch, s.sink, self.flow_stop, on_written=self.reclaimer.on_written)
        self.span_store = SpanStore(self.wal, writer, self.flow_stop)
        lc.start(Step("span-store", self.span_store.start, self._drain_span_store))
        flow = build_flow(self._scoring_plan())
        load_sdks()  # here, not on the judge loop at its first call
        lc.start(Step("judge-loop", self.executor.start, self._cancel_judge_calls))
        self._flow = lc.start(
            FlowThread(flow, s.flow, recovery_dir, self.flow_stop, self.wal.close, self.stop_requested.set)
        )
        lc.start(Step("write-ahead-log", self.wal.start, self._seal_wal))
        self._start_jobs()

    def _start_jobs(self) -> None:
        """The job runner: stopped before the log closes, so a page's judge spans still reach it."""
        s = self.settings
        self.job_store = JobStore(self.jobs_ch)
        parts = JobParts(
            self.jobs_ch, self.wal, self.rule_store, self.judges, self.span_store, self.process_id
        )
        self.job_runner = self._lifecycle.start(job_runner(s, self.job_store, parts))

    def _start_scores_log(self, data_dir: Path) -> None:
        """The scores API's log and its writer (stopped after the API: the log closes, the writer drains it)."""
        s, lc = self.settings, self._lifecycle
        log = Wal(
            data_dir / "scores_wal",
            s.scores_log.wal_config(),
            SCORES_LOG_SCHEMA,
            metrics.SCORES_LOG,
            "scores-log",
        )
        log.guard = self.disk_guard
        self.scores_stop = threading.Event()
        store = ScoreStore(self.scores_api_ch, self.layout.delete_target(SCORES_TABLE))
        self.scores_writer = ScoreLogWriter(log, store, s.sink, self.scores_stop)
        lc.start(Step(ScoreLogWriter.name, self.scores_writer.start, lambda: self._drain_scores_log(log)))
        lc.start(Step("scores-log", log.start, log.close))
        self.scores = LoggedScores(
            log, self.scores_writer, store, s.scores_log.read_wait_s, s.scores_log.retry_after_s
        )

    def _start_receivers(self, listeners: Listeners) -> None:
        s, lc = self.settings, self._lifecycle
        self.decode_pool: DecodePool | None = None
        in_process = s.ingest.worker_count == 0
        if in_process and s.ingest.decode_workers:
            self.decode_pool = DecodePool(s.ingest.decode_workers, normalizer_from(s.ingest))
            lc.start(Step("decode-pool", self.decode_pool.warm_up, self.decode_pool.close))
        broker: Broker | None = None  # one memory of acknowledged requests for this process and its workers
        if not in_process and s.ingest.duplicate_window_s > 0:
            broker = Broker(s.ingest.duplicate_window_s, s.ingest.duplicate_max_requests)
            lc.start(Step("dedupe-broker", on_stop=broker.close))
        recent = None if broker is None else broker.recent
        self.ingestor = Ingestor(self.wal, s.ingest, pool=self.decode_pool, recent=recent)
        api_state = ApiState(
            self.ingestor, self.reader_ch, self.readonly, s.api, self.is_ready, self.rule_store,
            lambda: self.registry.refresh(), self.connection_store, lambda: self.connections.refresh(),
            self.scores, ScoreConfigStore(self.reader_ch), s.compat,
            JobsDeps(self.job_store, JobTraces(self.reader_ch, s.jobs.trace_lookback_s), self.rule_store,
                     self.connection_store.by_name, self.job_runner.wake),
            self.auth,
        )  # fmt: skip
        self.ports["otlp_http"] = listeners.port("otlp_http")
        self.ports["api"] = listeners.port("api")
        apps: list[tuple[Any, socket.socket]] = [(build_api_app(api_state), listeners.sockets["api"])]
        if in_process:
            apps.append((build_otlp_http_app(self.ingestor, self.key_ring), listeners.sockets["otlp_http"]))
        tls = self.tls
        self.http = lc.start(
            HttpServers(apps, self.stop_requested.set, s.limits, tls.context if tls else None)
        )
        # the receivers last: a stop closes them first, then the HTTP servers
        if in_process:
            receiver = GrpcReceiver(
                self.ingestor, s.host, s.otlp_grpc_port, s.ingest.grpc_max_message_bytes, s.limits,
                self.key_ring, tls.grpc_credentials() if tls else None,
            )  # fmt: skip
            self.ports["otlp_grpc"] = lc.start(receiver).port
        else:
            workers = IngestWorkers(
                s, s.ingest.worker_count, listeners.sockets["otlp_http"], self.keys_file, broker,
                lambda: self.disk_guard.refresh(now=True),
            )  # fmt: skip
            self.ports["otlp_grpc"] = lc.start(workers).port
            self.ingest_workers = workers
        if tls is not None:
            logger.info(
                "TLS on every listener (%s)%s", s.tls.cert_file, ", client certificates required" * tls.mutual
            )
        logger.info("listening: OTLP/gRPC on %s:%d", s.host, self.ports["otlp_grpc"])
        logger.info("listening: OTLP/HTTP on %s:%d (POST /v1/traces)", s.host, self.ports["otlp_http"])
        logger.info(
            "listening: API on %s:%d (POST /api/v1/traces, /docs, /metrics)", s.host, self.ports["api"]
        )

    def _scoring_plan(self) -> ScoringPlan:
        s = self.settings
        step = ScoringStep(
            self.registry, self.stats, SpanFetcher(self.reader_ch), s.windows.late_spans,
            shared=lambda: self.heartbeat.live() > 1,
            foreign=ForeignCheck(FragmentStore(self.reader_ch, self.process_id), s.windows.idle_gap_s),
        )  # fmt: skip
        self.executor = JudgeExecutor(
            make_client, ExecutorConfig(s.judging.breaker_failures, s.judging.breaker_cooldown_s)
        )
        self.judges = JudgeContext(
            self.executor,
            self.connections.get,
            RuleBudgets(self.heartbeat.live),
            Pending(s.judging.max_pending),
            s.flow.recovery,
            s.judging.eof_wait_s,
        )
        return ScoringPlan(
            records=WalRecordSource(self.wal, self.flow_stop),
            rules=lambda: self.registry.current,
            windows=s.windows,
            keep_open_at_eof=s.flow.recovery,
            score=step,
            scores_sink=ScoreSink(
                ScoreWriter(self.scores_ch, s.sink, self.flow_stop, on_written=self.stats.record_rows)
            ),
            judges=self.judges,
            judge_spans_sink=JudgeSpanSink(self.wal, normalizer_from(s.ingest)),
            judge_shards=s.judging.shards,
            batch_filters=s.rules.batch_filters,
        )

    # --- stopping, component by component (in this order: the reverse of the start) ---------------------------
    def _seal_wal(self) -> None:
        self.wal.close()
        logger.info("stopping: write-ahead log sealed; draining it into ClickHouse")

    def _cancel_judge_calls(self) -> None:
        # The flow has ended, so no answer would be collected any more: cancel the calls still running now. With
        # recovery their jobs are in the judge step's last snapshot and run again after a restart; without it
        # the step waited for the calls at the end of its input (up to judging.eof_wait_s, then cut them, each
        # with a JudgeCancelled row), and none is left.
        self.executor.stop(grace_s=0.0)

    def _drain_span_store(self) -> None:
        """Wait until every sealed segment is stored (it ends once the log is closed and the flow stopped)."""
        self.wal.close()
        self.flow_stop.set()
        self.span_store.join()

    def _drain_scores_log(self, log: Wal) -> None:
        """Wait until every acknowledged score is stored (the log is closed: the API has stopped)."""
        log.close()
        self.scores_stop.set()
        self.scores_writer.join()

    def _stop_reclaimer(self) -> None:
        self.reclaimer.stop()
        try:
            self.reclaimer.reclaim_once()
        except Exception:  # best effort: the next start reclaims too
            logger.exception("final reclaim failed")
        self.reclaimer.close()

    # --- running and stopping --------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return self._ready and not self.stop_requested.is_set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s: stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGHUP, self._reload)

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGHUP: read the TLS files again (rules and connections reload by themselves)."""
        tls, http = self.tls, self.http
        if tls is None or http is None:
            logger.info("received SIGHUP: no TLS configured (or not started yet), nothing to reload")
            return
        http.call_soon(tls.reload)
        if self.ingest_workers is not None:
            self.ingest_workers.reload()

    def wait(self) -> None:
        while not self.stop_requested.wait(0.5):
            if self.span_store.error is not None:
                logger.error("storing spans failed; stopping")
                self.stop_requested.set()
            if self.scores_writer.error is not None:
                logger.error("storing the scores API's scores failed; stopping")
                self.stop_requested.set()

    def stop(self) -> int:
        """Stop gracefully: every component, in the reverse of the start order; return the exit code."""
        self._ready = False
        self.stop_requested.set()
        logger.info("stopping: no longer accepting spans")
        self._lifecycle.stop()
        flow_error = self._flow.error if self._flow is not None else None
        if (
            flow_error is not None
            or self.span_store.error is not None
            or self.scores_writer.error is not None
        ):
            logger.error(
                "stopped after an error; acknowledged spans and scores remain in their logs for the next start"
            )
            return 1
        logger.info("stopped cleanly")
        return 0
