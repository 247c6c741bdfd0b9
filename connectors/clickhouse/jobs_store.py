"""Jobs in ClickHouse (`jobs`, `job_claims`, `job_cancels`, migration 0010), and the lease that lets one
process run a job.

Every change of a job is a new row; the latest (FINAL, by Version, the writer's clock in ns) is the job. Only the
lease holder writes a running job's progress; a cancel is a row of its own in `job_cancels` (any process's API
writes it, the runner reads it), so a cancel never races a progress write.

The lease: a process that finds a job queued, or running with a heartbeat older than the lease, claims the
job's next epoch (a row in `job_claims`, stamped with the server's clock), waits `settle_s`, and runs the job
only if its claim is the earliest of that epoch (then by process id, so every process agrees). A claim made
before ours commits within the settle time, so the two processes see the same winner; a claim made after it
is later. While running, the holder renews the heartbeat at every checkpoint and stops when a later epoch
appears (it lost the lease, e.g. after a pause longer than the lease). Documented bound: the settle time must
exceed the time an insert takes to commit (default 1 s).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from connectors.clickhouse.client import ClickHouse
from dataflow.jobs.model import Cursor, Job, JobKind, JobState, Progress

_COLUMN_TYPES = {
    "JobId": "String", "Kind": "LowCardinality(String)", "RuleId": "String", "RuleVersion": "UInt32",
    "Project": "LowCardinality(String)", "Params": "String", "State": "LowCardinality(String)",
    "Total": "UInt64", "Processed": "UInt64", "Matched": "UInt64", "FilteredOut": "UInt64",
    "SampledOut": "UInt64", "Scored": "UInt64", "Errors": "UInt64", "Shed": "Map(LowCardinality(String), UInt64)",
    "JudgeCalls": "UInt64", "CostUsd": "Float64", "Cursor": "String", "LastError": "String", "Paused": "String",
    "Process": "String", "LeaseEpoch": "UInt32", "HeartbeatAt": "DateTime64(6)", "CreatedAt": "DateTime64(6)",
    "StartedAt": "DateTime64(6)", "FinishedAt": "DateTime64(6)", "Version": "UInt64",
}  # fmt: skip
_COLUMNS = list(_COLUMN_TYPES)
_TIMES = ("HeartbeatAt", "CreatedAt", "StartedAt", "FinishedAt")
_SELECT = ", ".join(f"toUnixTimestamp64Micro({c})" if c in _TIMES else c for c in _COLUMNS if c != "Version")


def _row(job: Job, version: int) -> list[Any]:
    p = job.progress
    return [
        job.job_id, job.kind.value, job.rule_id, job.rule_version, job.project,
        orjson.dumps(job.params).decode(), job.state.value, p.total, p.processed, p.matched, p.filtered_out,
        p.sampled_out, p.scored, p.errors, dict(p.shed), p.judge_calls, p.cost_usd, job.cursor.encode(),
        job.last_error[:2000], job.paused, job.process, job.lease_epoch, job.heartbeat_ns // 1000,
        job.created_ns // 1000, job.started_ns // 1000, job.finished_ns // 1000, version,
    ]  # fmt: skip


def _job(r: tuple[Any, ...]) -> Job:
    (job_id, kind, rule_id, rule_version, project, params, state, total, processed, matched, filtered_out,
     sampled_out, scored, errors, shed, judge_calls, cost, cursor, last_error, paused, process, epoch,
     heartbeat_us, created_us, started_us, finished_us) = r  # fmt: skip
    progress = Progress(
        int(total), int(processed), int(matched), int(filtered_out), int(sampled_out), int(scored),
        int(errors), {str(k): int(v) for k, v in dict(shed).items()}, int(judge_calls), float(cost),
    )  # fmt: skip
    return Job(
        job_id, JobKind(kind), rule_id, int(rule_version), project, orjson.loads(params), JobState(state),
        progress, Cursor.decode(cursor), last_error, paused, process, int(epoch), int(heartbeat_us) * 1000,
        int(created_us) * 1000, int(started_us) * 1000, int(finished_us) * 1000,
    )  # fmt: skip


class JobStore:
    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch
        self._last_version = 0

    def _version(self) -> int:
        self._last_version = max(self._last_version + 1, time.time_ns())
        return self._last_version

    def save(self, job: Job) -> None:
        """Write the job's current state as its newest row."""
        self._ch.insert_rows("jobs", [_row(job, self._version())], _COLUMNS, list(_COLUMN_TYPES.values()))

    def get(self, job_id: str) -> Job | None:
        found = self._select("WHERE JobId = {id:String}", {"id": job_id}, 1)
        return found[0] if found else None

    def jobs(self, rule_id: str = "", state: str = "", limit: int = 100) -> list[Job]:
        """Jobs newest first; '' means any rule / any state."""
        where = "WHERE ({rule:String} = '' OR RuleId = {rule:String}) AND ({state:String} = '' OR State = {state:String})"
        return self._select(where, {"rule": rule_id, "state": state}, limit)

    def _select(self, where: str, params: dict[str, Any], limit: int) -> list[Job]:
        sql = f"SELECT {_SELECT} FROM jobs FINAL {where} ORDER BY CreatedAt DESC, JobId LIMIT {int(limit)}"
        return [_job(r) for r in self._ch.query_rows(sql, params)]

    def running_on(self, process: str) -> list[Job]:
        return self._select("WHERE State = 'running' AND Process = {p:String}", {"p": process}, 100)

    def claimable(self, lease_s: float) -> list[Job]:
        """Queued jobs, and running ones whose holder has not renewed the lease for `lease_s`, oldest first."""
        sql = (
            f"SELECT {_SELECT} FROM jobs FINAL WHERE State = 'queued' OR (State = 'running' AND "
            "HeartbeatAt < now64(6) - toIntervalMillisecond({lease_ms:UInt64})) ORDER BY CreatedAt, JobId LIMIT 10"
        )
        return [_job(r) for r in self._ch.query_rows(sql, {"lease_ms": int(lease_s * 1000)})]

    def claim(self, job_id: str, epoch: int, process: str) -> None:
        self._ch.command(
            "INSERT INTO job_claims (JobId, Epoch, Process) VALUES ({id:String}, {e:UInt32}, {p:String})",
            {"id": job_id, "e": epoch, "p": process},
        )

    def claim_winner(self, job_id: str, epoch: int) -> str:
        """The process whose claim of `epoch` came first ('' when there is none)."""
        rows = self._ch.query_rows(
            "SELECT Process FROM job_claims WHERE JobId = {id:String} AND Epoch = {e:UInt32} "
            "ORDER BY ClaimedAt, Process LIMIT 1",
            {"id": job_id, "e": epoch},
        )
        return str(rows[0][0]) if rows else ""

    def latest_epoch(self, job_id: str) -> int:
        rows = self._ch.query_rows(
            "SELECT max(Epoch) FROM job_claims WHERE JobId = {id:String}", {"id": job_id}
        )
        return int(rows[0][0]) if rows else 0

    def request_cancel(self, job_id: str) -> None:
        self._ch.command("INSERT INTO job_cancels (JobId) VALUES ({id:String})", {"id": job_id})

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._ch.query_rows(
            "SELECT count() FROM job_cancels WHERE JobId = {id:String}", {"id": job_id}
        )
        return bool(rows and int(rows[0][0]))
