"""Rules in ClickHouse: versioned rows in `rules` (latest per Id wins), and per-process `rule_status` rows.

Reads use FINAL. A change writes a whole new row with Version + 1, so every process that reloads sees a
rule either before or after a change, never half of one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace

import orjson

from connectors.clickhouse.client import ClickHouse
from dataflow.rules.model import RuleSpec
from dataflow.rules.status import COUNTERS, RuleCounts

_SELECT = "SELECT Spec, Version FROM rules FINAL WHERE Deleted = 0"


@dataclass(frozen=True)
class StatusRow:
    """One process's counts of one rule: a `rule_status` row."""

    rule_id: str
    process: str
    counts: RuleCounts

    @classmethod
    def of(cls, rule_id: str, process: str, c: RuleCounts) -> StatusRow:
        return cls(rule_id, process, replace(c))


# The `rule_status` columns (0005, 0007) of the status counters, as `RuleCounts` declares them.
_COUNT_COLUMNS = tuple(COUNTERS.values())
# A row read back: the counters under their field names, the times in nanoseconds.
_SELECT_STATUS = (
    "SELECT RuleId, Process, RuleVersion, "
    + ", ".join(f"{column} AS {name}" for name, column in COUNTERS.items())
    + ", toUnixTimestamp64Micro(LastEvaluatedAt) * 1000 AS last_evaluated_ns, "
    "toUnixTimestamp64Nano(LastTraceAt) AS last_trace_ns FROM rule_status FINAL"
)


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
                r.counts.rule_version,
                *(getattr(r.counts, name) for name in COUNTERS),
                r.counts.last_evaluated_ns // 1000,
                r.counts.last_trace_ns,
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

    def _status_rows(self, where: str, params: dict[str, object]) -> list[StatusRow]:
        table = self._ch.query_arrow(f"{_SELECT_STATUS} WHERE {where} ORDER BY RuleId, Process", params)
        return [
            StatusRow(
                str(r.pop("RuleId")),
                str(r.pop("Process")),
                RuleCounts(rule_version=_int(r.pop("RuleVersion")), **{k: _int(v) for k, v in r.items()}),
            )
            for r in table.to_pylist()
        ]

    def status(self, rule_id: str) -> list[StatusRow]:
        """The rule's row of every process, by process."""
        return self._status_rows("RuleId = {id:String}", {"id": rule_id})

    def all_status(self) -> list[StatusRow]:
        """Every rule's row of every process (one query, for the rules list)."""
        return self._status_rows("1 = 1", {})

    def process_status(self, process: str) -> list[StatusRow]:
        """This process's last stored rows, to continue from after a restart."""
        return self._status_rows("Process = {p:String}", {"p": process})

    def process_counts(self, process: str) -> dict[str, RuleCounts]:
        """This process's last stored counters per rule id, as `RuleStats.seed` takes them."""
        return {
            r.rule_id: RuleCounts(**{name: getattr(r.counts, name) for name in COUNTERS})
            for r in self.process_status(process)
        }


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float | str) else 0
