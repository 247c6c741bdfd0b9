"""Rules YAML files (`config/rules.yaml`, `tracejudge rules apply -f FILE`): a list of rules under `rules:`.

Applying is like `kubectl apply`: each rule is created, or replaced by project and name; a rule that is
already stored exactly so is left alone (its version does not change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import yaml

from dataflow.errors import ConfigError, RuleCompileError
from dataflow.rules.model import RuleSpec, compile_rule, parse_rule


class RuleWriter(Protocol):
    def by_name(self, project: str, name: str) -> RuleSpec | None: ...

    def save(self, spec: RuleSpec) -> RuleSpec: ...


def read_rules_file(path: Path) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"cannot read rules file {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"rules file {path} is not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    rules = (doc or {}).get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list):
        msg = f"rules file {path}: expected a mapping with a list under `rules:`"
        raise ConfigError(msg)
    return rules


def validate_rules(entries: list[dict[str, Any]], path: Path) -> list[RuleSpec]:
    """Every entry parsed and compiled; all problems reported together, naming the entry."""
    specs, problems = [], []
    for i, entry in enumerate(entries):
        name = entry.get("name", "?") if isinstance(entry, dict) else "?"
        try:
            spec = parse_rule({k: v for k, v in (entry or {}).items() if k not in ("id", "version")})
            compile_rule(spec)
            specs.append(spec)
        except (RuleCompileError, AttributeError) as exc:
            problems.append(f"  rules[{i}] ({name}): {exc}")
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        key = (spec.project, spec.name)
        if key in seen:
            problems.append(f"  rule {spec.name!r} appears twice in project {spec.project!r}")
        seen.add(key)
    if problems:
        msg = f"rules file {path} has invalid rules:\n" + "\n".join(problems)
        raise ConfigError(msg)
    return specs


def apply_rules(specs: list[RuleSpec], store: RuleWriter) -> list[tuple[str, RuleSpec]]:
    """Create or replace each rule by name; return (action, rule) with action created|updated|unchanged."""
    done = []
    for spec in specs:
        existing = store.by_name(spec.project, spec.name)
        if existing is None:
            done.append(("created", store.save(spec)))
            continue
        candidate = spec.model_copy(update={"id": existing.id, "version": existing.version})
        if candidate == existing:
            done.append(("unchanged", existing))
        else:
            done.append(("updated", store.save(candidate)))
    return done
