"""Rules stored in ClickHouse (chDB): versioned CRUD, and the registry compiling and swapping whole sets."""

from __future__ import annotations

import uuid
from typing import Any

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.rules_store import RuleStore, StatusRow
from dataflow.rules.model import parse_rule
from dataflow.rules.registry import RuleRegistry
from dataflow.rules.status import RuleCounts

SCORER = {"type": "code", "name": "s", "function": "contains", "args": {"value": "x"}}


def spec(project: str, name: str, **kw: Any) -> Any:
    return parse_rule({"name": name, "project": project, "scorers": [SCORER], **kw})


def test_save_get_update_delete(chdb_client: ClickHouse) -> None:
    store = RuleStore(chdb_client)
    project = f"p-{uuid.uuid4().hex[:8]}"
    created = store.save(spec(project, "a", filter="output LIKE '%x%'", description="it's \\ quoted"))
    assert created.id and created.version == 1
    assert store.get(created.id) == created
    assert store.by_name(project, "a") == created
    updated = store.save(created.model_copy(update={"sampling_rate": 0.5}))
    assert (updated.id, updated.version, updated.sampling_rate) == (created.id, 2, 0.5)
    assert [r.version for r in store.load(project)] == [2]
    store.delete(updated)
    assert store.get(created.id) is None and store.load(project) == []


def test_registry_swaps_in_changes(chdb_client: ClickHouse) -> None:
    store = RuleStore(chdb_client)
    project = f"p-{uuid.uuid4().hex[:8]}"
    registry = RuleRegistry(store)
    assert registry.refresh() is True
    assert registry.refresh() is False  # nothing changed
    rule = store.save(spec(project, "live"))
    assert registry.refresh() is True
    (compiled,) = registry.current.for_project(project)
    assert compiled.spec == rule
    store.save(rule.model_copy(update={"enabled": False}))
    registry.refresh()
    assert registry.current.for_project(project) == ()


def test_status_rows_are_per_process_and_latest_wins(chdb_client: ClickHouse) -> None:
    store = RuleStore(chdb_client)
    rid = uuid.uuid4().hex
    # Process names unique to this test: the chDB fixture is shared, and other tests write "proc-b" rows too.
    proc_a, proc_b = f"proc-a-{rid[:8]}", f"proc-b-{rid[:8]}"
    at = 1_800_000_000 * 10**9
    for scored in (1, 5):
        counts = RuleCounts(1, 10, filtered_out=2, sampled_out=3, scored=scored, last_evaluated_ns=at)
        store.write_status([StatusRow(rid, proc_a, counts)])
    store.write_status(
        [StatusRow(rid, proc_b, RuleCounts(1, 4, scored=4, scorer_errors=1, last_evaluated_ns=at))]
    )
    rows = store.status(rid)
    assert [(r.process, r.counts.scored) for r in rows] == [(proc_a, 5), (proc_b, 4)]
    (own,) = store.process_status(proc_b)
    assert (own.rule_id, own.counts.scorer_errors, own.counts.last_evaluated_ns) == (rid, 1, at)
