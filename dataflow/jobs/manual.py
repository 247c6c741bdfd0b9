"""The rule a `score_traces` job scores with (issue 11): a saved rule's scorers, or scorers given with the job.

Given scorers become a rule of their own, `manual:<job id>`, in each trace's project, so the scores name the run
that made them (their RuleId) and never replace a live rule's. A named rule is used as saved (its current
version), in the scope the job asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dataflow.jobs.model import MANUAL_PREFIX, Job
from dataflow.rules.model import CompiledRule, RuleSpec, compile_rule, parse_rule


def manual_spec(rule_id: str, project: str, scorers: list[dict[str, Any]], scope: str) -> RuleSpec:
    """The spec of a manual run's scorers; RuleCompileError naming the field when they are not valid."""
    return parse_rule(
        {"id": rule_id, "name": f"manual run {rule_id[len(MANUAL_PREFIX):][:12]}", "project": project,
         "scope": scope, "scorers": scorers}
    )  # fmt: skip


def as_scope(spec: RuleSpec, scope: str) -> RuleSpec:
    """A saved rule used on chosen spans or traces: its scorers in `scope`, without its targeting."""
    return spec.model_copy(update={"scope": scope, "root_spans": False, "span_names": []})


class ManualRules:
    """`JobServices.manual_rule`: the compiled rule of a score_traces job in a project, cached per job."""

    def __init__(self, saved: Callable[[str], RuleSpec | None]) -> None:
        self._saved = saved
        self._cache: dict[tuple[str, str], CompiledRule] = {}

    def __call__(self, job: Job, project: str) -> CompiledRule:
        key = (job.job_id, project)
        rule = self._cache.get(key)
        if rule is None:
            if len(self._cache) > 256:
                self._cache.clear()
            rule = self._cache[key] = compile_rule(self.spec(job, project))
        return rule

    def spec(self, job: Job, project: str) -> RuleSpec:
        scope = str(job.params.get("scope", "trace"))
        if job.rule_id.startswith(MANUAL_PREFIX):
            return manual_spec(job.rule_id, project, job.params["scorers"], scope)
        saved = self._saved(job.rule_id)
        if saved is None:
            msg = f"rule {job.rule_id} no longer exists"
            raise LookupError(msg)
        return as_scope(saved, scope)
