"""Seed 003 trace eval rules: the request's checks, the mapping to a rule and back, and what the rule scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.api.trace_eval_rules import (
    MARKER,
    OUTPUT_FILTER,
    TraceEvalRuleError,
    attribute_filter,
    match_of,
    parse_request,
    seed_field,
    to_rule_spec,
    to_view,
)
from dataflow.judging.judge import LlmJudgeSpec
from dataflow.model import Span
from dataflow.rules.engine import Outcome, evaluate
from dataflow.rules.filter import compile_filter
from dataflow.rules.model import RuleSpec, compile_rule, span_needs
from tests import builders

SEED_EXAMPLE: dict[str, Any] = {
    "name": "helpfulness",
    "enabled": True,
    "matchType": "SPAN_NAME",
    "matchValue": "llm.generate",
    "connectionId": "conn-id-1",
    "evaluatorName": "helpfulness",
    "criteria": "The response correctly and helpfully answers the question.",
    "minScore": 0,
    "maxScore": 1,
    "threshold": 0.5,
}
# Keys and values whose characters mean something somewhere: quotes, backslashes, LIKE wildcards, comments.
TRICKY = [
    ("gen_ai.system", "openai"),
    ("it's", "o'clock"),
    ("a\\b", "ends with a backslash\\"),
    ("back\\'slash", "\\'"),
    ("100%", "a_b%"),
    ("--x", "/* not a comment */"),
    ("''", "'"),
    ("line\nbreak", "tab\there"),
    ("é😀", "ß"),
    ("a']b", "x') OR (1 = 1"),
]


def body(**changes: Any) -> dict[str, Any]:
    return {**SEED_EXAMPLE, **changes}


def span(sid: str, name: str = "llm.generate", output: str = "Paris", **attrs: str) -> Span:
    parent = "" if sid == "root" else "root"
    return builders.span(span_id=sid, parent_span_id=parent, name=name, output=output, attributes=attrs)


def scored_span_ids(spec: RuleSpec, *spans: Span) -> list[str]:
    tasks, _ = evaluate(builders.trace(*spans), (compile_rule(spec),))
    return [t.span.span_id for t in tasks if t.span is not None]


def spec_of(data: dict[str, Any], project: str = "p", connection: str = "fake") -> RuleSpec:
    return to_rule_spec(project, parse_request(data), connection).model_copy(update={"id": "r1"})


def test_the_seed_example_becomes_a_span_rule_with_one_judge() -> None:
    spec = spec_of(body())
    assert (spec.name, spec.project, spec.enabled, spec.scope) == ("helpfulness", "p", True, "span")
    assert spec.span_names == ["llm.generate"] and spec.filter == OUTPUT_FILTER and not spec.root_spans
    assert spec.description.startswith(MARKER)
    assert spec.scorers == [
        LlmJudgeSpec(
            name="helpfulness", connection="fake", criteria=SEED_EXAMPLE["criteria"],
            min_score=0, max_score=1, threshold=0.5,
        )
    ]  # fmt: skip


def test_span_name_rule_scores_only_named_spans_with_output() -> None:
    spec = spec_of(body())
    spans = (
        span("root", name="agent"),
        span("s1"),
        span("s2", output=""),
        span("s3", name="llm.generate.v2"),
        span("s4", name="LLM.GENERATE"),
    )
    assert scored_span_ids(spec, *spans) == ["s1"]


def test_a_named_span_without_output_is_filtered_out() -> None:
    tasks, decisions = evaluate(
        builders.trace(span("root", output="")),
        (compile_rule(spec_of(body())),),
    )
    assert tasks == [] and [d.outcome for d in decisions] == [Outcome.FILTERED_OUT]


@pytest.mark.parametrize(("key", "value"), TRICKY)
def test_attribute_rule_matches_the_exact_key_and_value(key: str, value: str) -> None:
    spec = spec_of(body(matchType="ATTRIBUTE", matchKey=key, matchValue=value))
    assert spec.span_names == [] and spec.filter == attribute_filter(key, value)
    spans = (
        span("root", name="agent"),
        span("hit", name="any", **{key: value}),
        span("no_output", output="", **{key: value}),
        span("other_value", **{key: value + "x"}),
        span("other_key", **{key + "x": value}),
        span("no_attribute"),
    )
    assert scored_span_ids(spec, *spans) == ["hit"]


def test_like_wildcards_and_escapes_are_plain_characters() -> None:
    spec = spec_of(body(matchType="ATTRIBUTE", matchKey="pct_%", matchValue="a_b%\\%"))
    spans = (
        span("hit", **{"pct_%": "a_b%\\%"}),
        span("underscore", **{"pct_%": "axb%\\%"}),
        span("percent", **{"pct_%": "a_b%\\xyz"}),
        span("unescaped", **{"pct_%": "a_b%\\"}),
        span("key_wildcard", **{"pctx%": "a_b%\\%"}),
    )
    assert scored_span_ids(spec, *spans) == ["hit"]


@pytest.mark.parametrize(("key", "value"), TRICKY)
def test_attribute_key_and_value_reach_sql_as_parameters_and_are_read(key: str, value: str) -> None:
    compiled = compile_filter(attribute_filter(key, value))
    assert sorted(compiled.params.values(), key=str) == sorted([key, value, ""], key=str)
    needs = span_needs([compile_rule(spec_of(body(matchType="ATTRIBUTE", matchKey=key, matchValue=value)))])
    assert needs.attributes == frozenset({key})


def test_rule_and_view_round_trip() -> None:
    for data in (body(), body(matchType="ATTRIBUTE", matchKey="it's", matchValue="50%\\", enabled=False)):
        view = to_view(spec_of(data), {"fake": "conn-id-1"})
        assert view is not None
        expected = {**data, "matchKey": data.get("matchKey"), "minScore": 0.0, "maxScore": 1.0}
        assert view.model_dump() == {**expected, "id": "r1", "projectId": "p", "connectionName": "fake"}


def test_defaults_and_what_span_name_ignores() -> None:
    data = body(matchKey="ignored", matchValue="  llm.generate ")
    for field in ("enabled", "evaluatorName", "minScore", "maxScore", "threshold"):
        del data[field]
    spec = spec_of(data)
    found = to_view(spec, {})
    assert found is not None
    view = found.model_dump()
    assert (view["enabled"], view["evaluatorName"], view["matchKey"], view["matchValue"]) == (
        True, "helpfulness", None, "llm.generate",
    )  # fmt: skip
    assert (view["minScore"], view["maxScore"], view["threshold"]) == (0.0, 1.0, None)
    assert view["connectionId"] == "fake"  # an unknown connection is answered by name


def test_server_fields_of_a_view_are_ignored_in_a_body() -> None:
    view = to_view(spec_of(body()), {"fake": "conn-id-1"})
    assert view is not None
    assert parse_request(view.model_dump()) == parse_request(body())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"matchType": "REGEX"}, "matchType"),
        ({"matchType": None}, "matchType"),
        ({"matchType": "ATTRIBUTE"}, "matchKey"),
        ({"matchType": "ATTRIBUTE", "matchKey": " "}, "matchKey"),
        ({"matchValue": ""}, "matchValue"),
        ({"matchValue": " "}, "matchValue"),
        ({"connectionId": ""}, "connectionId"),
        ({"connectionId": 7}, "connectionId"),
        ({"evaluatorName": " "}, "evaluatorName"),
        ({"criteria": ""}, "criteria"),
        ({"minScore": "low"}, "minScore"),
        ({"minScore": 1, "maxScore": 1}, "maxScore"),
        ({"minScore": 5, "maxScore": 1, "threshold": 3}, "maxScore"),
        ({"maxScore": float("inf")}, "maxScore"),
        ({"threshold": 2}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"enabled": "maybe"}, "enabled"),
        ({"matchtype": "SPAN_NAME"}, "matchtype"),
    ],
)
def test_a_bad_request_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TraceEvalRuleError) as info:
        parse_request(body(**changes))
    assert info.value.field == field
    assert str(info.value).startswith(field)


@pytest.mark.parametrize("missing", ["name", "matchType", "matchValue", "connectionId", "criteria"])
def test_required_fields(missing: str) -> None:
    data = body()
    del data[missing]
    with pytest.raises(TraceEvalRuleError) as info:
        parse_request(data)
    assert info.value.field == missing


def test_a_body_that_is_not_an_object() -> None:
    with pytest.raises(TraceEvalRuleError) as info:
        parse_request([SEED_EXAMPLE])
    assert info.value.field == ""


def test_rule_errors_are_named_as_the_seed_names_them() -> None:
    with pytest.raises(TraceEvalRuleError) as info:
        spec_of(body(), project="p" * 201)
    assert info.value.field == "project"
    assert seed_field("scorers.0.llm_judge.criteria") == "criteria"
    assert seed_field("scorers.0.llm_judge") == ""
    assert seed_field("filter") == "matchValue"
    assert seed_field("names") == ""


def test_only_marked_rules_of_the_seed_shape_are_trace_eval_rules() -> None:
    spec = spec_of(body(matchType="ATTRIBUTE", matchKey="k", matchValue="v"))
    assert to_view(spec, {}) is not None
    judge = spec.scorers[0]
    code = {"type": "code", "name": "short", "function": "length_between", "args": {"max": 9}}
    reshaped: list[dict[str, Any]] = [
        {"description": "made by hand"},
        {"filter": "attributes['k'] = 'v'"},
        {"filter": "attributes['k'] = 'v' OR output != ''"},
        {"filter": "resource['k'] = 'v' AND output != ''"},
        {"filter": "output != '' AND attributes['k'] = 'v'"},
        {"filter": OUTPUT_FILTER, "span_names": ["a", "b"]},
        {"filter": OUTPUT_FILTER, "span_names": ["a"], "root_spans": True},
        {"filter": "name = 'x'", "span_names": ["a"]},
        {"scorers": [judge, judge.model_copy(update={"name": "second"})]},
        {"scorers": [code]},
    ]
    for changes in reshaped:
        changed = RuleSpec.model_validate({**spec.model_dump(), **changes})
        assert to_view(changed, {}) is None, changes
    assert match_of(spec.model_copy(update={"scope": "trace"})) is None


def test_the_readme_example_is_accepted() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme.split("/trace-eval-rules \\\n", 1)[1].split("-d '", 1)[1].split("'\n", 1)[0]
    spec = spec_of(json.loads(example), connection="openai")
    assert (spec.span_names, spec.scorers[0].name, spec.filter) == (
        ["llm.generate"],
        "helpfulness",
        OUTPUT_FILTER,
    )
