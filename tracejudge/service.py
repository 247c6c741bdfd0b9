"""`tracejudge run`: wire the receivers, the write-ahead log, the Bytewax flow and ClickHouse together.

Start-up fails fast (bad config, ports taken, ClickHouse unreachable, a damaged log). After start-up
nothing crashes the process: errors are answered, counted or retried. SIGINT/SIGTERM stop it gracefully:
receivers stop accepting, the log is sealed, the flow drains every acknowledged span into ClickHouse and
ends, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from bytewax._bytewax import cli_main
from bytewax.recovery import RecoveryConfig, init_db_dir

from connectors.api.app import ApiState, build_api_app
from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.connections_store import ConnectionStore, apply_connections_file
from connectors.clickhouse.migrate import apply_retention, migrate
from connectors.clickhouse.replay import SpanFetcher
from connectors.clickhouse.rules_store import RuleStore, StatusRow
from connectors.clickhouse.score_sink import ScoreSink, ScoreWriter
from connectors.clickhouse.sink import SpanStore, SpanWriter
from connectors.llm.factory import load_sdks, make_client
from connectors.otlp.decode_pool import DecodePool
from connectors.otlp.grpc_server import start_grpc_server
from connectors.otlp.http import build_otlp_http_app
from connectors.otlp.ingest import Ingestor, normalizer_from
from connectors.otlp.judge_spans import JudgeSpanSink
from connectors.wal.log import Wal
from connectors.wal.reclaim import Reclaimer
from connectors.wal.source import WalRecordSource
from dataflow import metrics
from dataflow.config import Settings
from dataflow.errors import ConfigError, TracejudgeError
from dataflow.flow import SOURCE_STEPS, ScoringPlan, build_flow
from dataflow.judging.checks import scorer_connection_problems
from dataflow.judging.connections import ConnectionRegistry
from dataflow.judging.executor import ExecutorConfig, JudgeExecutor
from dataflow.judging.step import JudgeContext, Pending, RuleBudgets
from dataflow.rules.files import apply_rules, read_rules_file, validate_rules
from dataflow.rules.registry import RuleRegistry
from dataflow.rules.status import RuleStats
from dataflow.scoring.step import ScoringStep

logger = logging.getLogger("tracejudge")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        msg = f"cannot listen on {host}:{port}: {exc.strerror}"
        raise OSError(msg) from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _process_id(data_dir: Path) -> str:
    """A stable id for this data directory's process (rule status rows are per process)."""
    path = data_dir / "process_id"
    if not path.exists():
        path.write_text(f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    return path.read_text().strip()


class Service:
    """The whole tracejudge process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_requested = threading.Event()
        self.flow_stop = threading.Event()
        self.flow_error: BaseException | None = None
        self._ready = False
        self._threads: list[threading.Thread] = []
        self._uvicorn: list[uvicorn.Server] = []
        self._grpc: Any = None
        self.ports: dict[str, int] = {}

    # --- start-up ------------------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        os.environ["TZ"] = "UTC"
        time.tzset()
        # Claim the HTTP ports first: a taken port fails start-up before anything else is touched.
        http_sock = _bind(s.host, s.otlp_http_port)
        api_sock = _bind(s.host, s.api_port)
        data_dir = s.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        logger.info("data directory %s", data_dir)

        self.writer_ch = ClickHouse(s.resolved_dsn)
        migrate(self.writer_ch)
        apply_retention(self.writer_ch, s.retention_days)
        self.reader_ch = ClickHouse(s.resolved_dsn)
        self.readonly = self.reader_ch.readonly(s.api.sql_max_rows, s.api.sql_max_execution_s)
        logger.info("ClickHouse ready at %s", self.writer_ch.safe_dsn)

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
        self.connections = ConnectionRegistry(self.connection_store, s.rules.reload_interval_s)
        self.connections.refresh(force=True)
        self.registry = RuleRegistry(self.rule_store, s.rules.reload_interval_s)
        self.registry.refresh(force=True)
        self.wal = Wal(data_dir / "wal", s.wal)
        recovery_dir: Path | None = None
        if s.flow.recovery:
            recovery_dir = data_dir / "recovery"
            if not any(recovery_dir.glob("*.sqlite3")):
                recovery_dir.mkdir(parents=True, exist_ok=True)
                init_db_dir(recovery_dir, s.flow.recovery_partitions)  # type: ignore[no-untyped-call]
        self.reclaimer = Reclaimer(self.wal, s.wal.reclaim_interval_s, recovery_dir, list(SOURCE_STEPS))
        writer = SpanWriter(self.writer_ch, s.sink, self.flow_stop, on_written=self.reclaimer.on_written)
        self.span_store = SpanStore(self.wal, writer, self.flow_stop)
        flow = build_flow(self._scoring_plan(data_dir))
        load_sdks()  # here, not on the judge loop at its first call
        self.executor.start()
        self.wal.start()
        self.span_store.start()
        self._start_thread("bytewax-flow", self._run_flow, flow, recovery_dir)
        self.reclaimer.start()
        self.registry.start()
        self.connections.start()
        self._start_thread("rule-status", self._run_status_writer)

        self.decode_pool: DecodePool | None = None
        if s.ingest.decode_workers:
            self.decode_pool = DecodePool(s.ingest.decode_workers, normalizer_from(s.ingest))
            self.decode_pool.warm_up()
        self.ingestor = Ingestor(self.wal, s.ingest, pool=self.decode_pool)
        grpc_server, grpc_port = start_grpc_server(
            self.ingestor, s.host, s.otlp_grpc_port, s.ingest.grpc_max_message_bytes
        )
        self._grpc = grpc_server
        self.ports["otlp_grpc"] = grpc_port
        logger.info("listening: OTLP/gRPC on %s:%d", s.host, grpc_port)

        api_state = ApiState(
            self.ingestor, self.reader_ch, self.readonly, s.api, self.is_ready, self.rule_store,
            lambda: self.registry.refresh(), self.connection_store, lambda: self.connections.refresh(),
        )  # fmt: skip
        self.ports["otlp_http"] = http_sock.getsockname()[1]
        self.ports["api"] = api_sock.getsockname()[1]
        apps = [(build_otlp_http_app(self.ingestor), http_sock), (build_api_app(api_state), api_sock)]
        started = threading.Event()
        self._start_thread("http", self._run_http, apps, started)
        if not started.wait(30):
            msg = "HTTP listeners did not start within 30 s"
            raise RuntimeError(msg)
        logger.info("listening: OTLP/HTTP on %s:%d (POST /v1/traces)", s.host, self.ports["otlp_http"])
        logger.info(
            "listening: API on %s:%d (POST /api/v1/traces, /docs, /metrics)", s.host, self.ports["api"]
        )
        self._ready = True
        logger.info("ready")

    def _scoring_plan(self, data_dir: Path) -> ScoringPlan:
        s = self.settings
        self.process_id = _process_id(data_dir)
        self.stats = RuleStats()
        for rule_id, counts in self.rule_store.process_counts(self.process_id).items():
            self.stats.seed(rule_id, counts)
        self.scores_ch = ClickHouse(s.resolved_dsn)
        step = ScoringStep(self.registry, self.stats, SpanFetcher(self.reader_ch), s.windows.late_spans)
        self.executor = JudgeExecutor(
            make_client, ExecutorConfig(s.judging.breaker_failures, s.judging.breaker_cooldown_s)
        )
        judges = JudgeContext(
            self.executor,
            self.connections.get,
            RuleBudgets(),
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
            judges=judges,
            judge_spans_sink=JudgeSpanSink(self.wal, normalizer_from(s.ingest)),
            judge_shards=s.judging.shards,
        )

    def _write_status(self) -> None:
        changed = self.stats.take_dirty()
        if changed:
            self.rule_store.write_status(StatusRow.of(rid, self.process_id, c) for rid, c in changed.items())

    def _run_status_writer(self) -> None:
        while not self.stop_requested.wait(self.settings.rules.status_interval_s):
            try:
                self._write_status()
            except TracejudgeError as exc:  # ClickHouse unreachable: the counts stay dirty? no: retried later
                logger.warning("writing rule status failed: %s", exc)

    def _start_thread(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def is_ready(self) -> bool:
        return self._ready and not self.stop_requested.is_set()

    def _run_flow(self, flow: Any, recovery_dir: Path | None) -> None:
        s = self.settings.flow
        recovery = None
        if recovery_dir is not None:
            recovery = RecoveryConfig(str(recovery_dir))  # type: ignore[no-untyped-call]
        metrics.FLOW_RUNNING.set(1)
        try:
            cli_main(  # type: ignore[no-untyped-call]
                flow,
                workers_per_process=s.workers,
                epoch_interval=timedelta(seconds=s.epoch_interval_s),
                recovery_config=recovery,
            )
        except BaseException as exc:  # the flow ending on an error stops the service, loudly
            self.flow_error = exc
            logger.error("the dataflow stopped with an error: %s", exc)
            self.stop_requested.set()
        finally:
            metrics.FLOW_RUNNING.set(0)
            if not self.flow_stop.is_set():
                self.stop_requested.set()

    def _run_http(self, apps: list[tuple[Any, socket.socket]], started: threading.Event) -> None:
        async def serve_all() -> None:
            servers = []
            for app, _sock in apps:
                config = uvicorn.Config(
                    app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=10
                )
                servers.append(uvicorn.Server(config))
            self._uvicorn = servers
            tasks = [
                asyncio.create_task(srv.serve(sockets=[sock]))
                for srv, (_, sock) in zip(servers, apps, strict=True)
            ]
            while not all(srv.started for srv in servers):
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.01)
            started.set()
            await asyncio.gather(*tasks)

        try:
            asyncio.run(serve_all())
        except BaseException:
            logger.exception("HTTP listeners failed")
            self.stop_requested.set()

    # --- running and stopping --------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s: stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def wait(self) -> None:
        while not self.stop_requested.wait(0.5):
            if self.span_store.error is not None:
                logger.error("storing spans failed; stopping")
                self.stop_requested.set()

    def stop(self) -> int:
        """Stop gracefully; return the process exit code."""
        self._ready = False
        self.stop_requested.set()
        logger.info("stopping: no longer accepting spans")
        if self._grpc is not None:
            self._grpc.stop(grace=10).wait()
        for srv in self._uvicorn:
            srv.should_exit = True
        for t in self._threads:
            if t.name == "http":
                t.join(timeout=15)
        if self.decode_pool is not None:
            self.decode_pool.close()
        self.wal.close()
        logger.info("stopping: write-ahead log sealed; draining it into ClickHouse")
        self.flow_stop.set()
        for t in self._threads:
            if t.name == "bytewax-flow":
                t.join()
        # The flow has ended, so no answer would be collected any more: cancel the calls still running now. With
        # recovery their jobs are in the judge step's last snapshot and run again after a restart; without it
        # the step waited for the calls at the end of its input (up to judging.eof_wait_s, then cut them, each
        # with a JudgeCancelled row), and none is left.
        self.executor.stop(grace_s=0.0)
        self.span_store.join()
        self.reclaimer.stop()
        try:
            self.reclaimer.reclaim_once()
        except Exception:  # best effort: the next start reclaims too
            logger.exception("final reclaim failed")
        self.reclaimer.close()
        self.registry.stop()
        self.connections.stop()
        try:
            self._write_status()
        except TracejudgeError as exc:
            logger.warning("writing the final rule status failed: %s", exc)
        self.scores_ch.close()
        self.readonly.close()
        self.reader_ch.close()
        self.writer_ch.close()
        if self.flow_error is not None or self.span_store.error is not None:
            logger.error("stopped after an error; acknowledged spans remain in the log for the next start")
            return 1
        logger.info("stopped cleanly")
        return 0
