"""Scoring rules: what the API and config/rules.yaml accept, and their compiled form.

A rule picks traces or spans of one project (filter, targeting, sampling) and names the scorers to run on
them. Everything is validated and compiled when the rule is saved, so a rule that is stored always runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dataflow.errors import RuleCompileError
from dataflow.judging.autoevals_scorer import AutoevalsSpec
from dataflow.judging.judge import LlmJudgeSpec
from dataflow.model import Span
from dataflow.rules.filter import CompiledFilter, FilterError, compile_filter
from dataflow.scorers.code import CodeScorerSpec, CompiledScorer, compile_code_scorer

ScorerSpec = Annotated[CodeScorerSpec | LlmJudgeSpec | AutoevalsSpec, Field(discriminator="type")]


class RuleSpec(BaseModel):
    """A scoring rule as stored and as the API takes it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field("", description="Assigned when the rule is created; stable across changes.")
    name: str = Field(..., min_length=1, max_length=200, description="Unique within the project.")
    project: str = Field(..., min_length=1, max_length=200, description="Project whose traces it scores.")
    description: str = Field("", max_length=10_000)
    enabled: bool = True
    scope: Literal["trace", "span"] = Field("trace", description="Score whole traces or single spans.")
    root_spans: bool = Field(False, description="Span scope: score root spans.")
    span_names: list[str] = Field(
        default_factory=list, description="Span scope: score spans with these names."
    )
    filter: str = Field("", max_length=100_000, description="SQL WHERE subset; empty matches everything.")
    sampling_rate: float = Field(1.0, ge=0.0, le=1.0, description="Share of traces scored, 0..1.")
    scorers: list[ScorerSpec] = Field(..., min_length=1, max_length=50)
    max_calls_per_minute: float = Field(0, description="LLM-judge calls per minute for this rule; 0: no cap.")
    max_usd_per_hour: float = Field(0, description="LLM-judge spend per hour for this rule (USD); 0: no cap.")
    version: int = Field(0, ge=0, description="Bumped on every change; set by the server.")

    @field_validator("span_names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        cleaned = [n.strip() for n in names]
        if any(not n for n in cleaned):
            msg = "span names must not be empty"
            raise ValueError(msg)
        return cleaned

    @model_validator(mode="after")
    def _checks(self) -> RuleSpec:
        names = [s.name for s in self.scorers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"scorer names must be unique within a rule: {', '.join(dupes)}"
            raise ValueError(msg)
        if self.max_calls_per_minute < 0 or self.max_usd_per_hour < 0:
            msg = "budgets must not be negative"
            raise ValueError(msg)
        if self.scope == "trace" and (self.root_spans or self.span_names):
            msg = "root_spans and span_names apply to span scope only"
            raise ValueError(msg)
        return self

    def judge_scorers(self) -> list[tuple[int, LlmJudgeSpec | AutoevalsSpec]]:
        """The scorers that call a connection (LLM judges), with their positions in `scorers`."""
        return [(i, s) for i, s in enumerate(self.scorers) if isinstance(s, LlmJudgeSpec | AutoevalsSpec)]


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    filter: CompiledFilter
    scorers: tuple[CompiledScorer, ...]
    span_names: frozenset[str]
    judges: tuple[LlmJudgeSpec | AutoevalsSpec, ...] = ()
    salt: int = 0

    @property
    def id(self) -> str:
        return self.spec.id

    def targets(self, span: Span) -> bool:
        """Span scope: root spans or listed names (either); neither set means every span."""
        spec = self.spec
        if not spec.root_spans and not self.span_names:
            return True
        return (spec.root_spans and span.is_root) or span.name in self.span_names

    def sampled(self, trace_id: str, trace_hash: int | None = None) -> bool:
        rate = self.spec.sampling_rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        th = hash64(trace_id) if trace_hash is None else trace_hash
        return sample_point(self.salt, th) < rate


def compile_rule(spec: RuleSpec) -> CompiledRule:
    """Compile a validated rule; raise RuleCompileError naming the field (and position for filters)."""
    try:
        flt = compile_filter(spec.filter)
    except FilterError as exc:
        msg = f"filter: {exc}"
        raise RuleCompileError(msg) from exc
    scorers = tuple(
        compile_code_scorer(s, where=f"scorers[{i}]")
        for i, s in enumerate(spec.scorers)
        if isinstance(s, CodeScorerSpec)
    )
    judges = tuple(s.compiled(where=f"scorers[{i}]") for i, s in spec.judge_scorers())
    return CompiledRule(spec, flt, scorers, frozenset(spec.span_names), judges, hash64(spec.id))


def parse_rule(data: object) -> RuleSpec:
    """Validate raw data (API body, YAML entry) into a RuleSpec; errors name the field."""
    try:
        return RuleSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(rule)'}: {e['msg']}" for e in exc.errors()
        )
        raise RuleCompileError(problems) from exc


_SCALE = float(2**64)
_MASK = 2**64 - 1


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def sample_point(rule_salt: int, trace_hash: int) -> float:
    """A uniform point in [0, 1) for (rule, trace): splitmix64 of the two 64-bit hashes combined.

    One blake2b per trace and one per rule (not per pair) keeps 50 rules x thousands of traces cheap.
    """
    z = (rule_salt ^ trace_hash) + 0x9E3779B97F4A7C15 & _MASK
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK
    return (z ^ (z >> 31)) / _SCALE


def sampled(rule_id: str, trace_id: str, rate: float) -> bool:
    """Deterministic sampling: a hash of (rule, trace) against the rate, the same in every process and run."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return sample_point(hash64(rule_id), hash64(trace_id)) < rate


def score_id(rule_id: str, trace_id: str, span_id: str, scorer: str) -> str:
    """Deterministic: a replay or rescore of the same (rule, trace, span, scorer) replaces its row."""
    key = "\x00".join((rule_id, trace_id, span_id, scorer)).encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


@dataclass(frozen=True)
class SpanNeeds:
    """Attribute keys the live rules read; None means every key (a user scorer may read anything)."""

    attributes: frozenset[str] | None
    resource: frozenset[str] | None


def _key(label: str, prefix: str) -> str | None:
    if label.startswith(prefix) and label.endswith("']"):
        return label[len(prefix) : -2].replace("''", "'")
    return None


def span_needs(rules: Iterable[CompiledRule]) -> SpanNeeds:
    attrs: set[str] = set()
    res: set[str] = set()
    for rule in rules:
        if any(":" in s.kind for s in rule.scorers):
            return SpanNeeds(None, None)
        for judge in rule.judges:  # an autoevals scorer reads its variables (e.g. expected) from attributes
            attrs.update(judge.attribute_keys())
        for label in rule.filter.fields:
            a = _key(label, "attributes['")
            r = _key(label, "resource['")
            if a is not None:
                attrs.add(a)
            if r is not None:
                res.add(r)
    return SpanNeeds(frozenset(attrs), frozenset(res))


@dataclass(frozen=True)
class RuleSet:
    """All enabled compiled rules, by project. Immutable: a reload builds a new one and swaps it in."""

    by_project: dict[str, tuple[CompiledRule, ...]]
    version: str = ""

    @classmethod
    def of(cls, rules: Iterable[CompiledRule], version: str = "") -> RuleSet:
        grouped: dict[str, list[CompiledRule]] = {}
        for rule in rules:
            if rule.spec.enabled:
                grouped.setdefault(rule.spec.project, []).append(rule)
        return cls({p: tuple(sorted(rs, key=lambda r: r.spec.name)) for p, rs in grouped.items()}, version)

    @property
    def projects(self) -> frozenset[str]:
        return frozenset(self.by_project)

    @property
    def needs(self) -> SpanNeeds:
        """Which span and resource attribute keys the rules read (None: all, for user code scorers)."""
        cached = self.__dict__.get("_needs")
        if cached is None:
            cached = span_needs(r for rules in self.by_project.values() for r in rules)
            object.__setattr__(self, "_needs", cached)
        return cached

    def for_project(self, project: str) -> tuple[CompiledRule, ...]:
        return self.by_project.get(project, ())
