"""The live rule set: loaded from the rule store, compiled aside, swapped in whole.

Every process polls the store's fingerprint every `reload_interval_s`; on a change it compiles the new set
and swaps it in at once, so a flow never runs half of one set and half of another. A rule that fails to
compile (it should not: rules are compiled when saved) keeps its previous version and is counted.
"""

from __future__ import annotations

import logging
from typing import Protocol

from dataflow import metrics
from dataflow.errors import RuleCompileError, TracejudgeError
from dataflow.polling import Poller
from dataflow.rules.model import CompiledRule, RuleSet, RuleSpec, compile_rule

logger = logging.getLogger(__name__)


class RuleSource(Protocol):
    def fingerprint(self) -> str: ...

    def load(self, project: str | None = None) -> list[RuleSpec]: ...


class RuleRegistry:
    def __init__(self, source: RuleSource, reload_interval_s: float = 2.0) -> None:
        self._source = source
        self._fingerprint: str | None = None
        self._compiled: dict[str, CompiledRule] = {}
        self._current = RuleSet({})
        self._poller = Poller("rule-reloader", reload_interval_s, self.refresh, self._reload_failed)

    @property
    def current(self) -> RuleSet:
        return self._current

    def refresh(self, force: bool = False) -> bool:
        """Reload when the store changed; return True when a new set was swapped in."""
        fingerprint = self._source.fingerprint()
        if fingerprint == self._fingerprint and not force:
            return False
        compiled: dict[str, CompiledRule] = {}
        for spec in self._source.load():
            previous = self._compiled.get(spec.id)
            if previous is not None and previous.spec == spec:
                compiled[spec.id] = previous
                continue
            try:
                compiled[spec.id] = compile_rule(spec)
            except RuleCompileError as exc:
                metrics.RULE_LOAD_ERRORS.inc()
                logger.error(
                    "rule %s (%s) does not compile; keeping its previous version: %s", spec.id, spec.name, exc
                )
                if previous is not None:
                    compiled[spec.id] = previous
        self._compiled = compiled
        self._current = RuleSet.of(compiled.values(), fingerprint)
        self._fingerprint = fingerprint
        metrics.RULES_LOADED.set(sum(len(r) for r in self._current.by_project.values()))
        logger.info(
            "rule set loaded: %d enabled rule(s)", sum(len(r) for r in self._current.by_project.values())
        )
        return True

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def _reload_failed(self, exc: TracejudgeError) -> None:
        metrics.RULE_LOAD_ERRORS.inc()
        logger.warning("reloading rules failed: %s", exc)
