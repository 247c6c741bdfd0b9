"""Rules in ClickHouse: versioned rows in `rules` (latest per Id wins), and per-process `rule_status` rows.

Reads use FINAL. A change writes a whole new row with Version + 1, so every process that reloads sees a
rule either before or after a change, never half of one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from connectors.clickhouse.client import ClickHouse
from dataflow.rules.model import RuleSpec
from dataflow.rules.status import RuleCounts

_SELECT = "SELECT Spec, Version FROM rules FINAL WHERE Deleted = 0"


@dataclass(frozen=True)
class StatusRow:
    rule_id: str
    process: str
    rule_version: int
    traces_seen: int
    filtered_out: int
    not_targeted: int
    sampled_out: int
    scored: int
    scorer_errors: int
    last_evaluated_ns: int
    last_trace_ns: int
    judge_errors: int = 0
    shed_budget: int = 0
    shed_overload: int = 0
    shed_circuit_open: int = 0

    @classmethod
    def of(cls, rule_id: str, process: str, c: RuleCounts) -> StatusRow:
        return cls(
            rule_id, process, c.rule_version, c.traces_seen, c.filtered_out, c.not_targeted, c.sampled_out,
            c.scored, c.scorer_errors, c.last_evaluated_ns, c.last_trace_ns, c.judge_errors, c.shed_budget,
            c.shed_overload, c.shed_circuit_open,
        )  # fmt: skip


# Status columns in `rule_status` (0005, 0007), in StatusRow's order after Process.
_COUNT_COLUMNS = (
    "TracesSeen", "FilteredOut", "NotTargeted", "SampledOut", "Scored", "ScorerErrors", "JudgeErrors",
    "ShedBudget", "ShedOverload", "ShedCircuitOpen",
)  # fmt: skip


class RuleStore:
    """CRUD over the `rules` table, and the status rows."""

    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    def _load(self, where: str = "", params: dict[str, object] | None = None) -> list[RuleSpec]:
        rows = self._ch.query_rows(f"{_SELECT} {where} ORDER BY Project, Name", params)
        out = []
        for spec, version in rows:
            data = orjson.loads(spec)
            data["version"] = int(version)
            out.append(RuleSpec.model_validate(data))
        return out

    def load(self, project: str | None = None) -> list[RuleSpec]:
        if project:
            return self._load("AND Project = {p:String}", {"p": project})
        return self._load()

    def get(self, rule_id: str) -> RuleSpec | None:
        found = self._load("AND Id = {id:String}", {"id": rule_id})
        return found[0] if found else None

    def by_name(self, project: str, name: str) -> RuleSpec | None:
        found = self._load("AND Project = {p:String} AND Name = {n:String}", {"p": project, "n": name})
        return found[0] if found else None

    def fingerprint(self) -> str:
        """Changes whenever any rule changes: count and newest version time, cheap to poll."""
        rows = self._ch.query_rows("SELECT count(), max(UpdatedAt), sum(Version) FROM rules")
        return "/".join(str(v) for v in rows[0])

    def save(self, spec: RuleSpec) -> RuleSpec:
        """Store `spec` as a new version (a new id when it has none); return it as stored."""
        current = self.get(spec.id) if spec.id else None
        version = (current.version if current else 0) + 1
        stored = spec.model_copy(update={"id": spec.id or uuid.uuid4().hex, "version": version})
        self._write(stored, deleted=False)
        return stored

    def delete(self, spec: RuleSpec) -> None:
        self._write(spec.model_copy(update={"version": spec.version + 1}), deleted=True)

    def _write(self, spec: RuleSpec, deleted: bool) -> None:
        body = spec.model_dump(mode="json", exclude={"version"})
        self._ch.command(
            "INSERT INTO rules (Id, Project, Name, Version, Enabled, Deleted, Spec, UpdatedAt) VALUES "
            "({id:String}, {p:String}, {n:String}, {v:UInt32}, {e:Bool}, {d:Bool}, {s:String}, now64(6))",
            {
                "id": spec.id,
                "p": spec.project,
                "n": spec.name,
                "v": spec.version,
                "e": spec.enabled,
                "d": deleted,
                "s": orjson.dumps(body).decode(),
            },
        )

    # --- status --------------------------------------------------------------------------------------------
    def write_status(self, rows: Iterable[StatusRow]) -> None:
        rows = list(rows)
        if not rows:
            return
        now_us = time.time_ns() // 1000
        data = [
            [
                r.rule_id,
                r.process,
                r.rule_version,
                r.traces_seen,
                r.filtered_out,
                r.not_targeted,
                r.sampled_out,
                r.scored,
                r.scorer_errors,
                r.judge_errors,
                r.shed_budget,
                r.shed_overload,
                r.shed_circuit_open,
                r.last_evaluated_ns // 1000,
                r.last_trace_ns,
                now_us,
            ]
            for r in rows
        ]
        columns = [
            "RuleId",
            "Process",
            "RuleVersion",
            *_COUNT_COLUMNS,
            "LastEvaluatedAt",
            "LastTraceAt",
            "UpdatedAt",
        ]
        self._ch.insert_rows("rule_status", data, columns)

    def status(self, rule_id: str) -> list[dict[str, object]]:
        table = self._ch.query_arrow(
            f"SELECT Process, RuleVersion, {', '.join(_COUNT_COLUMNS)}, "
            "toUnixTimestamp64Micro(LastEvaluatedAt) AS LastEvaluatedUs, toUnixTimestamp64Nano(LastTraceAt) AS "
            "LastTraceNs FROM rule_status FINAL WHERE RuleId = {id:String} ORDER BY Process",
            {"id": rule_id},
        )
        return list(table.to_pylist())

    def process_status(self, process: str) -> list[dict[str, object]]:
        """This process's last stored counts, to continue from after a restart."""
        table = self._ch.query_arrow(
            f"SELECT RuleId, {', '.join(_COUNT_COLUMNS)} FROM rule_status FINAL WHERE Process = {{p:String}}",
            {"p": process},
        )
        return list(table.to_pylist())

    def process_counts(self, process: str) -> dict[str, RuleCounts]:
        """This process's last stored counts per rule id, as `RuleStats.seed` takes them."""
        return {
            str(r["RuleId"]): RuleCounts(
                traces_seen=_int(r["TracesSeen"]),
                filtered_out=_int(r["FilteredOut"]),
                not_targeted=_int(r["NotTargeted"]),
                sampled_out=_int(r["SampledOut"]),
                scored=_int(r["Scored"]),
                scorer_errors=_int(r["ScorerErrors"]),
                judge_errors=_int(r["JudgeErrors"]),
                shed_budget=_int(r["ShedBudget"]),
                shed_overload=_int(r["ShedOverload"]),
                shed_circuit_open=_int(r["ShedCircuitOpen"]),
            )
            for r in self.process_status(process)
        }


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float | str) else 0
