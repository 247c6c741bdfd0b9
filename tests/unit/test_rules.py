"""Rules: validation and compilation, targeting, deterministic sampling, and the evaluation decisions."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from dataflow.errors import RuleCompileError
from dataflow.model import Span
from dataflow.rules.engine import Outcome, evaluate
from dataflow.rules.model import RuleSet, compile_rule, parse_rule, sampled, score_id
from tests import builders
from tests.builders import trace

SCORER = builders.CONTAINS_PARIS


def rule(**kw: Any) -> dict[str, Any]:
    return builders.rule(**{"id": "r1", **kw})


def span(sid: str, parent: str = "root", name: str = "llm", output: str = "Paris", **kw: Any) -> Span:
    return builders.span(
        span_id=sid, parent_span_id=parent, name=name, output=output, duration_ns=5_000_000, **kw
    )


ROOT = span("root", parent="", name="agent", output="The capital is Paris")
CHILD = span("c1", name="llm.call", output="Lyon")
CHILD2 = span("c2", name="tool", output="Paris again")


def test_trace_scope_scores_once_if_any_span_matches() -> None:
    r = compile_rule(parse_rule(rule(filter="output LIKE '%Lyon%'")))
    tasks, decisions = evaluate(trace(ROOT, CHILD), (r,))
    assert [(t.span, t.trace.trace_id) for t in tasks] == [(None, "a" * 32)]
    assert decisions[0].outcome == Outcome.SCORED
    _, decisions = evaluate(trace(ROOT), (r,))
    assert decisions[0].outcome == Outcome.FILTERED_OUT


@pytest.mark.parametrize(
    ("targeting", "expected"),
    [
        ({}, ["root", "c1", "c2"]),
        ({"root_spans": True}, ["root"]),
        ({"span_names": ["tool"]}, ["c2"]),
        ({"root_spans": True, "span_names": ["llm.call"]}, ["root", "c1"]),
    ],
)
def test_span_scope_targeting(targeting: dict[str, Any], expected: list[str]) -> None:
    r = compile_rule(parse_rule(rule(scope="span", **targeting)))
    tasks, decisions = evaluate(trace(ROOT, CHILD, CHILD2), (r,))
    assert [t.span.span_id for t in tasks if t.span] == expected
    assert decisions[0] == decisions[0].__class__(r, Outcome.SCORED, len(expected))


def test_span_scope_filter_then_targeting_outcomes() -> None:
    r = compile_rule(parse_rule(rule(scope="span", span_names=["tool"], filter="output = 'Lyon'")))
    _, decisions = evaluate(trace(ROOT, CHILD, CHILD2), (r,))
    assert decisions[0].outcome == Outcome.NOT_TARGETED
    r = compile_rule(parse_rule(rule(scope="span", filter="output = 'Berlin'")))
    _, decisions = evaluate(trace(ROOT, CHILD), (r,))
    assert decisions[0].outcome == Outcome.FILTERED_OUT


def test_judge_spans_never_trigger_rules() -> None:
    r = compile_rule(parse_rule(rule(scope="span")))
    judge = span("j1", name="judge", attributes={"tracejudge.judge": "r1"})
    tasks, decisions = evaluate(trace(judge), (r,))
    assert tasks == [] and decisions == []
    tasks, _ = evaluate(trace(ROOT, judge), (r,))
    assert [t.span.span_id for t in tasks if t.span] == ["root"]


def test_sampled_out_is_decided_first() -> None:
    r = compile_rule(parse_rule(rule(sampling_rate=0.0)))
    tasks, decisions = evaluate(trace(ROOT), (r,))
    assert tasks == [] and decisions[0].outcome == Outcome.SAMPLED_OUT


def test_sampling_rate_within_one_point_over_100k_traces() -> None:
    for rate in (0.01, 0.1, 0.5, 0.9):
        hits = sum(sampled("rule-x", os.urandom(16).hex(), rate) for _ in range(100_000))
        assert abs(hits / 100_000 - rate) < 0.01, (rate, hits)


def test_sampling_is_deterministic_across_processes() -> None:
    ids = [f"{i:032x}" for i in range(200)]
    here = "".join("1" if sampled("rule-y", t, 0.3) else "0" for t in ids)
    code = (
        "from dataflow.rules.model import sampled\n"
        f"print(''.join('1' if sampled('rule-y', t, 0.3) else '0' for t in {ids!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert there.stdout.strip() == here
    assert sampled("rule-y", ids[0], 1.0) and not sampled("rule-y", ids[0], 0.0)


def test_every_span_of_a_trace_shares_one_sampling_decision() -> None:
    r = compile_rule(parse_rule(rule(scope="span", sampling_rate=0.5)))
    for i in range(50):
        t = trace(ROOT, CHILD, CHILD2, trace_id=f"{i:032x}")
        tasks, _ = evaluate(t, (r,))
        assert len(tasks) in (0, 3)


def test_score_id_is_deterministic_and_distinct() -> None:
    a = score_id("r1", "t", "", "s")
    assert a == score_id("r1", "t", "", "s") and len(a) == 32
    assert (
        len({a, score_id("r2", "t", "", "s"), score_id("r1", "t", "x", "s"), score_id("r1", "t", "", "z")})
        == 4
    )


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "r", "project": "p", "scorers": []}, "scorers: List should have at least 1 item"),
        (rule(scope="trace", root_spans=True), "apply to span scope only"),
        (rule(sampling_rate=1.5), "sampling_rate: Input should be less than or equal to 1"),
        (rule(scope="both"), "scope: Input should be 'trace' or 'span'"),
        (rule(scorers=[SCORER, SCORER]), "unique within a rule: has_paris"),
        (rule(bogus=1), "bogus: Extra inputs are not permitted"),
        (rule(span_names=[" "], scope="span"), "span names must not be empty"),
        (rule(scorers=[{"type": "mystery", "name": "x"}]), "scorers.0"),
    ],
)
def test_invalid_rules_name_the_field(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(RuleCompileError, match=needle):
        parse_rule(data)


def test_compile_errors_name_the_part() -> None:
    with pytest.raises(RuleCompileError, match=r"^filter: .*position"):
        compile_rule(parse_rule(rule(filter="output = = 'x'")))
    with pytest.raises(RuleCompileError, match=r"scorers\[0\]\.args"):
        compile_rule(parse_rule(rule(scorers=[{"type": "code", "name": "x", "function": "contains"}])))


def test_ruleset_groups_enabled_rules_by_project() -> None:
    a = compile_rule(parse_rule(rule(id="a", name="a")))
    b = compile_rule(parse_rule(rule(id="b", name="b", project="q")))
    off = compile_rule(parse_rule(rule(id="c", name="c", enabled=False)))
    rs = RuleSet.of([a, b, off])
    assert rs.projects == frozenset({"p", "q"})
    assert [r.id for r in rs.for_project("p")] == ["a"] and rs.for_project("zzz") == ()


def test_span_needs_lists_the_attribute_keys_filters_read() -> None:
    from dataflow.rules.model import span_needs

    a = compile_rule(
        parse_rule(rule(id="a", filter="attributes['gen_ai.system'] = 'x' AND resource['it''s'] IS NULL"))
    )
    b = compile_rule(parse_rule(rule(id="b", filter="output LIKE '%y%'")))
    needs = span_needs([a, b])
    assert needs.attributes == frozenset({"gen_ai.system"}) and needs.resource == frozenset({"it's"})
    user = compile_rule(parse_rule(rule(id="c", scorers=[
        {"type": "code", "name": "u", "function": "tests.testdata.scorers.user_scorers:word_count"}])))  # fmt: skip
    assert span_needs([a, user]).attributes is None  # a user scorer may read any attribute


def test_spans_from_batch_builds_only_the_needed_attributes() -> None:
    import time as _time
    from pathlib import Path

    from connectors.otlp.decode import decode_json
    from connectors.otlp.ingest import normalizer_from
    from dataflow.config import IngestConfig
    from dataflow.windowing.step import spans_from_batch

    body = (
        Path(__file__).resolve().parents[1] / "testdata" / "otlp" / "json_all_value_types.json"
    ).read_bytes()
    batch = decode_json(body, normalizer_from(IngestConfig()), _time.time_ns()).batch
    assert batch is not None
    (full,) = spans_from_batch(batch)
    (some,) = spans_from_batch(batch, None, frozenset({"s", "missing"}), frozenset())
    assert full.attributes["i"] == "-7" and some.attributes == {"s": "text"} and some.resource == {}
