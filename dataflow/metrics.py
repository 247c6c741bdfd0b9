"""Every Prometheus metric tracejudge exports, declared in one place.

Names follow `tracejudge_<component>_<what>_<unit>`; counters end in `_total`; units are base units
(seconds, bytes; `_ratio` for a 0..1 score, `_usd` for money). Labels are fixed and low-cardinality:
transport, outcome, reason, table, connection, rule name, scorer (score) name. Never a trace id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
# Called before `/metrics` is rendered: the ingest workers' counts are fetched into this process's metrics.
BEFORE_SCRAPE: list[Callable[[], None]] = []


def before_scrape() -> None:
    for hook in list(BEFORE_SCRAPE):
        hook()


@dataclass(frozen=True)
class LogMetrics:
    """The metrics of one write-ahead log (`connectors/wal/log.py`): the spans' (`WAL`) or the scores API's."""

    appended_bytes: Counter
    appended_rows: Counter
    backlog_bytes: Gauge
    limit_bytes: Gauge
    segments: Gauge
    sync_duration: Histogram
    reclaimed_segments: Counter
    throttled: Counter
    write_errors: Counter
    torn_bytes: Counter


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- receivers -------------------------------------------------------------------------------------------
RECEIVER_REQUESTS = Counter(
    "tracejudge_receiver_requests_total",
    "Export requests answered, by transport (grpc, http, api) and outcome "
    "(ok, partial, bad_request, too_large, unsupported, throttled, error).",
    ["transport", "outcome"],
    registry=REGISTRY,
)
RECEIVER_SPANS = Counter(
    "tracejudge_receiver_spans_total",
    "Spans received, by transport and outcome (accepted: durable in the log; rejected: malformed, skipped; "
    "refused: the whole request was refused, e.g. throttled).",
    ["transport", "outcome"],
    registry=REGISTRY,
)
RECEIVER_REJECTED_SPANS = Counter(
    "tracejudge_receiver_rejected_spans_total",
    "Spans skipped at ingest, by reason (trace_id, span_id, parent_span_id, name, timestamp; project: outside "
    "the API key's projects).",
    ["reason"],
    registry=REGISTRY,
)
RECEIVER_REQUEST_DURATION = Histogram(
    "tracejudge_receiver_request_duration_seconds",
    "Time to answer an export request, decode and durable log append included, by transport.",
    ["transport"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RECEIVER_DUPLICATE_REQUESTS = Counter(
    "tracejudge_receiver_duplicate_requests_total",
    "Export requests byte-identical to one acknowledged lately (a client's retry), answered again without "
    "storing their spans twice, by transport.",
    ["transport"],
    registry=REGISTRY,
)
INGEST_WORKER_RESTARTS = Counter(
    "tracejudge_ingest_worker_restarts_total",
    "Ingest worker processes that exited while the service ran and were started again.",
    registry=REGISTRY,
)
RECEIVER_REQUEST_BYTES = Counter(
    "tracejudge_receiver_request_bytes_total",
    "Export request bytes received after decompression, by transport.",
    ["transport"],
    registry=REGISTRY,
)

HTTP_READ_TIMEOUTS = Counter(
    "tracejudge_http_read_timeouts_total",
    "HTTP connections closed because a request's headers or body did not arrive in time (limits.*), by phase "
    "(headers, body).",
    ["phase"],
    registry=REGISTRY,
)

# --- write-ahead log ---------------------------------------------------------------------------------------
WAL_APPENDED_BYTES = Counter(
    "tracejudge_wal_appended_bytes_total", "Bytes appended to the write-ahead log.", registry=REGISTRY
)
WAL_APPENDED_SPANS = Counter(
    "tracejudge_wal_appended_spans_total", "Spans appended to the write-ahead log.", registry=REGISTRY
)
WAL_BACKLOG_BYTES = Gauge(
    "tracejudge_wal_backlog_bytes",
    "Bytes in the write-ahead log not yet reclaimed (stored in ClickHouse and in a committed snapshot).",
    registry=REGISTRY,
)
WAL_LIMIT_BYTES = Gauge(
    "tracejudge_wal_limit_bytes", "The write-ahead log bound; receivers throttle above it.", registry=REGISTRY
)
WAL_SEGMENTS = Gauge("tracejudge_wal_segments", "Segment files in the write-ahead log.", registry=REGISTRY)
WAL_SYNC_DURATION = Histogram(
    "tracejudge_wal_sync_duration_seconds",
    "Time of one group commit (write and fsync) of the write-ahead log.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
WAL_RECLAIMED_SEGMENTS = Counter(
    "tracejudge_wal_reclaimed_segments_total",
    "Segments deleted once committed downstream.",
    registry=REGISTRY,
)
WAL_THROTTLED = Counter(
    "tracejudge_wal_throttled_total",
    "Appends refused because the write-ahead log was over its bound.",
    registry=REGISTRY,
)
WAL_WRITE_ERRORS = Counter(
    "tracejudge_wal_write_errors_total",
    "Group commits that failed to write or fsync (their requests were answered 503, nothing acknowledged).",
    registry=REGISTRY,
)
WAL_TORN_BYTES = Counter(
    "tracejudge_wal_torn_bytes_total",
    "Bytes of unacknowledged, partly written records cut from a segment tail at start-up.",
    registry=REGISTRY,
)

WAL = LogMetrics(
    WAL_APPENDED_BYTES, WAL_APPENDED_SPANS, WAL_BACKLOG_BYTES, WAL_LIMIT_BYTES, WAL_SEGMENTS, WAL_SYNC_DURATION,
    WAL_RECLAIMED_SEGMENTS, WAL_THROTTLED, WAL_WRITE_ERRORS, WAL_TORN_BYTES,
)  # fmt: skip

# --- the scores API's log (connectors/scores_log) -----------------------------------------------------------
SCORES_LOG_APPENDED_BYTES = Counter(
    "tracejudge_scores_log_appended_bytes_total",
    "Bytes appended to the scores API's log.",
    registry=REGISTRY,
)
SCORES_LOG_APPENDED_SCORES = Counter(
    "tracejudge_scores_log_appended_scores_total",
    "Scores appended to the scores API's log (each acknowledged once durable).",
    registry=REGISTRY,
)
SCORES_LOG_BACKLOG_BYTES = Gauge(
    "tracejudge_scores_log_backlog_bytes",
    "Bytes in the scores API's log not yet stored in ClickHouse and deleted.",
    registry=REGISTRY,
)
SCORES_LOG_LIMIT_BYTES = Gauge(
    "tracejudge_scores_log_limit_bytes",
    "The scores API's log bound; the API answers 503 with Retry-After above it.",
    registry=REGISTRY,
)
SCORES_LOG_SEGMENTS = Gauge(
    "tracejudge_scores_log_segments", "Segment files in the scores API's log.", registry=REGISTRY
)
SCORES_LOG_SYNC_DURATION = Histogram(
    "tracejudge_scores_log_sync_duration_seconds",
    "Time of one group commit (write and fsync) of the scores API's log.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SCORES_LOG_RECLAIMED_SEGMENTS = Counter(
    "tracejudge_scores_log_reclaimed_segments_total",
    "Scores log segments deleted once stored in ClickHouse.",
    registry=REGISTRY,
)
SCORES_LOG_THROTTLED = Counter(
    "tracejudge_scores_log_throttled_total",
    "Score posts refused (503) because the scores API's log was over its bound.",
    registry=REGISTRY,
)
SCORES_LOG_WRITE_ERRORS = Counter(
    "tracejudge_scores_log_write_errors_total",
    "Group commits of the scores API's log that failed to write or fsync (answered 503).",
    registry=REGISTRY,
)
SCORES_LOG_TORN_BYTES = Counter(
    "tracejudge_scores_log_torn_bytes_total",
    "Bytes of unacknowledged, partly written scores log records cut from a segment tail at start-up.",
    registry=REGISTRY,
)
SCORES_LOG = LogMetrics(
    SCORES_LOG_APPENDED_BYTES, SCORES_LOG_APPENDED_SCORES, SCORES_LOG_BACKLOG_BYTES, SCORES_LOG_LIMIT_BYTES,
    SCORES_LOG_SEGMENTS, SCORES_LOG_SYNC_DURATION, SCORES_LOG_RECLAIMED_SEGMENTS, SCORES_LOG_THROTTLED,
    SCORES_LOG_WRITE_ERRORS, SCORES_LOG_TORN_BYTES,
)  # fmt: skip
SCORES_LOG_INSERT_ERRORS = Counter(
    "tracejudge_scores_log_insert_errors_total",
    "Inserts of a scores log segment into ClickHouse that failed (each retried with back-off until it lands).",
    registry=REGISTRY,
)
SCORES_LOG_STORED_SEGMENTS = Counter(
    "tracejudge_scores_log_stored_segments_total",
    "Scores log segments stored in ClickHouse (one look-up and one insert each).",
    registry=REGISTRY,
)

# --- ClickHouse sink -----------------------------------------------------------------------------------------
SINK_ROWS = Counter(
    "tracejudge_sink_rows_total", "Rows inserted into ClickHouse, by table.", ["table"], registry=REGISTRY
)
SINK_INSERTS = Counter(
    "tracejudge_sink_inserts_total",
    "Insert attempts into ClickHouse, by table and outcome (ok, error).",
    ["table", "outcome"],
    registry=REGISTRY,
)
SINK_INSERT_DURATION = Histogram(
    "tracejudge_sink_insert_duration_seconds",
    "Time of one successful insert into ClickHouse, by table.",
    ["table"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SINK_LAG = Gauge(
    "tracejudge_sink_lag_seconds",
    "Time from the acknowledgement of the oldest span in the last inserted block to its insert.",
    ["table"],
    registry=REGISTRY,
)

# --- flow ------------------------------------------------------------------------------------------------------
SINK_SEGMENTS = Counter(
    "tracejudge_sink_segments_stored_total",
    "Sealed log segments inserted into ClickHouse (one deduplicated block each).",
    registry=REGISTRY,
)
FLOW_RUNNING = Gauge("tracejudge_flow_running", "1 while the Bytewax flow runs.", registry=REGISTRY)
FLOW_STAGE_SECONDS = Counter(
    "tracejudge_flow_stage_seconds_total",
    "CPU seconds (thread time) the flow's own steps spent, by stage: spans (sharding the log's batches into "
    "spans), windows, scoring (rules and code scorers), judges (handing jobs to the executor and collecting "
    "their answers). Bytewax's own work between steps is not in it.",
    ["stage"],
    registry=REGISTRY,
)

# --- trace windows ----------------------------------------------------------------------------------------------
WINDOW_OPEN_TRACES = Gauge(
    "tracejudge_window_open_traces", "Traces whose window is open in this process.", registry=REGISTRY
)
WINDOW_CLOSED_TRACES = Counter(
    "tracejudge_window_closed_traces_total",
    "Trace windows closed, by reason (root_settled, idle_gap, max_wait, max_spans, evicted, shutdown).",
    ["reason"],
    registry=REGISTRY,
)
WINDOW_CLOSE_DELAY = Histogram(
    "tracejudge_window_close_delay_seconds",
    "Time from a trace's last span arriving to its window closing (settle or idle gap included).",
    buckets=(0.1, 0.5, 1.0, 2.0, 2.1, 2.25, 2.5, 3.0, 5.0, 10.0, 30.0, 31.0, 60.0, 300.0, 600.0),
    registry=REGISTRY,
)
WINDOW_LATE_SPANS = Counter(
    "tracejudge_window_late_spans_total",
    "Spans that arrived after their trace's window had closed (stored; rescored or ignored per config).",
    registry=REGISTRY,
)
WINDOW_SPAN_LATENESS = Histogram(
    "tracejudge_window_span_lateness_seconds",
    "How long after its trace closed a late span arrived.",
    buckets=(0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
    registry=REGISTRY,
)

# --- rules ---------------------------------------------------------------------------------------------------
AUTH_KEYS = Gauge(
    "tracejudge_auth_valid_keys", "API keys known to this process and not revoked.", registry=REGISTRY
)
AUTH_REQUESTS = Counter(
    "tracejudge_auth_requests_total",
    "Requests checked for an API key, by listener (api, http, grpc) and outcome (ok, unauthenticated: no valid "
    "key, forbidden: outside its scope or projects).",
    ["listener", "outcome"],
    registry=REGISTRY,
)
RULES_LOADED = Gauge(
    "tracejudge_rules_loaded_rules", "Enabled rules in the live rule set.", registry=REGISTRY
)
RULE_LOAD_ERRORS = Counter(
    "tracejudge_rules_load_errors_total",
    "Rule reloads that failed, or rules that did not compile at load (their previous version kept).",
    registry=REGISTRY,
)
RULE_STATUS_WRITE_ERRORS = Counter(
    "tracejudge_rule_status_write_errors_total",
    "Writes of the rules' status counts to ClickHouse that failed (the counts are written at the next tick).",
    registry=REGISTRY,
)
RULE_DECISIONS = Counter(
    "tracejudge_rule_decisions_total",
    "Traces each rule saw, by outcome (sampled_out, filtered_out, not_targeted, scored).",
    ["rule", "outcome"],
    registry=REGISTRY,
)

# --- score quality, per rule and scorer --------------------------------------------------------------------
# Recorded from the score rows once the score sink has written them (`RuleStats.record_rows`), code scorers
# and judges alike. `rule` is the rule's name (unique per project: same-named rules of two projects share a
# series), `scorer` the score's name in the rule (the row's Name). Both are few: cardinality stays bounded.
# Score values: judges are normalised to 0..1 and the built-in code scorers give 0..1 (a bool is 0 or 1), so
# the buckets are tenths; a user function's larger numbers land in 10, 100 or +Inf.
_SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 10.0, 100.0)
# A judge task: one provider round trip is ~0.3-10 s; retries with backoff and Retry-After reach minutes.
_JUDGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

RULE_SCORES = Counter(
    "tracejudge_rule_scores_total",
    "Score rows written, by rule, scorer and outcome (ok: a value or a label; error: the code scorer or "
    "judge failed; shed: a judge call not made). Code scorers and judges alike.",
    ["rule", "scorer", "outcome"],
    registry=REGISTRY,
)
RULE_VERDICTS = Counter(
    "tracejudge_rule_verdicts_total",
    "Score rows with a verdict (Passed set), by rule, scorer and verdict (pass, fail); a scorer without a "
    "threshold gives none. Pass rate: pass / (pass + fail).",
    ["rule", "scorer", "verdict"],
    registry=REGISTRY,
)
RULE_SCORE_VALUES = Histogram(
    "tracejudge_rule_score_ratio",
    "Score values of rows without an error, by rule and scorer: judges normalised to 0..1, built-in code "
    "scorers 0..1 (a bool is 0 or 1), a user function's number as returned. Mean: _sum / _count.",
    ["rule", "scorer"],
    buckets=_SCORE_BUCKETS,
    registry=REGISTRY,
)
RULE_SCORE_ERRORS = Counter(
    "tracejudge_rule_score_errors_total",
    "Score rows carrying an error, by rule, scorer and error_type: the error's class (JudgeTimeout, "
    "JudgeRateLimited, JudgeServerError, JudgeBadResponse, JudgeAuthError, JudgeConfigError, a code "
    "scorer's exception class; other when the Error text names no class).",
    ["rule", "scorer", "error_type"],
    registry=REGISTRY,
)
RULE_SHED = Counter(
    "tracejudge_rule_shed_total",
    "Judge tasks shed (no call made; the score row's Error is Shed(reason)), by rule, scorer and reason "
    "(budget, overload, circuit_open). tracejudge_judge_shed_total counts them by connection.",
    ["rule", "scorer", "reason"],
    registry=REGISTRY,
)

SCORING_FOREIGN_FRAGMENTS = Counter(
    "tracejudge_scoring_foreign_fragments_total",
    "Closed traces of which another process holds a part (several processes share ClickHouse and the trace's "
    "spans reached two of them: the root, or a root-less part it scored and recorded before this process "
    "closed the root's part): completed from ClickHouse and scored again here whole, as a late trace.",
    registry=REGISTRY,
)
SCORING_FRAGMENT_QUERY_DURATION = Histogram(
    "tracejudge_scoring_fragment_query_duration_seconds",
    "Time of one query of the scoring step on `trace_fragments` while several processes share ClickHouse, by "
    "operation: record (root-less trace parts scored here) or look-up (one per batch of closed traces that hold "
    "their root and are old enough to have been split by a ring change).",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SCORING_INCOMPLETE_TRACES = Counter(
    "tracejudge_scoring_incomplete_traces_total",
    "Late or resumed traces scored although some of their spans were not found in ClickHouse.",
    registry=REGISTRY,
)

# --- judges ----------------------------------------------------------------------------------------------------
JUDGE_CALLS = Counter(
    "tracejudge_judge_calls_total",
    "Judge call attempts by connection and outcome (ok, or the error class: JudgeTimeout, JudgeRateLimited...).",
    ["connection", "outcome"],
    registry=REGISTRY,
)
JUDGE_IN_FLIGHT = Gauge(
    "tracejudge_judge_in_flight_calls",
    "Judge calls in flight (sent, awaiting the provider), by connection; calls waiting for a concurrency "
    "slot, rate-limit tokens or a retry's backoff are not counted.",
    ["connection"],
    registry=REGISTRY,
)
JUDGE_PENDING = Gauge(
    "tracejudge_judge_pending_jobs",
    "Judge jobs handed to the executor and not yet collected by the judge step, in this process (waiting for "
    "a slot, tokens or a retry, or in flight); at judging.max_pending new jobs are shed (overload).",
    registry=REGISTRY,
)
LIVE_PROCESSES = Gauge(
    "tracejudge_live_processes",
    "Processes with a recent heartbeat in the shared ClickHouse store (this one included); per-rule judge "
    "budgets are split among them.",
    registry=REGISTRY,
)
JUDGE_PENDING_LIMIT = Gauge(
    "tracejudge_judge_pending_limit_jobs",
    "judging.max_pending: the bound on tracejudge_judge_pending_jobs above which judge jobs are shed.",
    registry=REGISTRY,
)
JUDGE_SHED = Counter(
    "tracejudge_judge_shed_total",
    "Judge calls not made, by connection and reason (budget, overload, circuit_open).",
    ["connection", "reason"],
    registry=REGISTRY,
)
JUDGE_CIRCUIT_OPEN = Gauge(
    "tracejudge_judge_circuit_open",
    "1 from the moment a connection's circuit breaker opens until a call succeeds again (open, shedding "
    "calls as circuit_open, and half-open after the cooldown), 0 while it is closed; by connection.",
    ["connection"],
    registry=REGISTRY,
)
JUDGE_DURATION = Histogram(
    "tracejudge_judge_duration_seconds",
    "Time of a judge task from its first attempt to the answer or the final error (retries, backoff and "
    "rate-limit waits included: the score row's LatencyMs), by rule and scorer. Shed tasks and tasks "
    "refused before a call (no connection, no key) are not observed.",
    ["rule", "scorer"],
    buckets=_JUDGE_BUCKETS,
    registry=REGISTRY,
)
JUDGE_TOKENS = Counter(
    "tracejudge_judge_tokens_total",
    "Tokens the providers reported for judge calls, by rule, scorer and type (input, output).",
    ["rule", "scorer", "type"],
    registry=REGISTRY,
)
JUDGE_COST = Counter(
    "tracejudge_judge_cost_usd_total",
    "Judge spend in US dollars from the connections' prices (the score rows' CostUsd), by rule and scorer.",
    ["rule", "scorer"],
    registry=REGISTRY,
)

JUDGE_SPANS_DROPPED = Counter(
    "tracejudge_judge_spans_dropped_total",
    "Judge spans not known to be written when their epoch committed: the write-ahead log refused or failed "
    "their append, or did not confirm it in time (their score rows were written).",
    registry=REGISTRY,
)

# --- API -------------------------------------------------------------------------------------------------------
API_SQL_QUERIES = Counter(
    "tracejudge_api_sql_queries_total",
    "Read-only queries run through the API, by outcome (ok, refused, error, busy: no free query slot).",
    ["outcome"],
    registry=REGISTRY,
)
API_SCORES = Counter(
    "tracejudge_api_scores_total",
    "Scores posted to POST /api/v1/scores, by source (API, ANNOTATION; unknown when invalid), data_type "
    "(NUMERIC, BOOLEAN, CATEGORICAL; unknown when not known) and outcome (accepted: stored; invalid: refused "
    "with a 400 or in a 207's errors; failed: valid but the write failed, answered 503).",
    ["source", "data_type", "outcome"],
    registry=REGISTRY,
)
JOB_TRACES = Counter(
    "tracejudge_job_traces_total",
    "Stored traces looked at by this process's re-scoring jobs (rewind, backfill, score_traces), by kind.",
    ["kind"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "tracejudge_jobs_finished_total",
    "Re-scoring jobs that ended on this process, by kind and state (succeeded, failed, cancelled).",
    ["kind", "state"],
    registry=REGISTRY,
)
JOB_RUNNING = Gauge(
    "tracejudge_job_running",
    "1 while this process runs a re-scoring job (0 when idle); paused: 1 while it waits for live traffic.",
    ["paused"],
    registry=REGISTRY,
)


def zero_alerted_series(tables: tuple[str, ...]) -> None:
    """Create at 0 the series that alerts and dashboards select by a label value only a fault sets (a throttled
    request, a failed insert), so `rate()` over them has a series to read before the first such event (Prometheus
    practice: initialise the label values you know)."""
    for transport in ("grpc", "http", "api"):
        for outcome in ("ok", "throttled", "error"):
            RECEIVER_REQUESTS.labels(transport, outcome)
        for outcome in ("accepted", "rejected", "refused"):
            RECEIVER_SPANS.labels(transport, outcome)
    for table in tables:
        for outcome in ("ok", "error"):
            SINK_INSERTS.labels(table, outcome)
