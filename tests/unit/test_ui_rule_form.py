"""The rule form of the web UI: a rule shown as form fields and posted back is the same rule (every scorer type,
fields without an input of their own included); form problems name their field; a filter error's position."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.api.errors import ApiError
from connectors.api.rules import validated
from connectors.ui import rule_form as rf
from connectors.ui.rules_pages import checked
from dataflow.rules.model import RuleSpec

RULE: dict[str, Any] = {
    "id": "r1", "name": "mixed", "project": "p", "description": "all kinds", "enabled": False, "scope": "span",
    "root_spans": True, "span_names": ["llm", "tool"], "filter": "duration_ms > 10", "sampling_rate": 0.25,
    "max_calls_per_minute": 30.0, "max_usd_per_hour": 1.5, "version": 3,
    "scorers": [
        {"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}},
        {"type": "llm_judge", "name": "helpful", "connection": "c", "criteria": "Helpful?", "min_score": 1.0,
         "max_score": 5.0, "threshold": 3.0, "prompt": "{criteria} {input} {output}"},
        {"type": "llm_judge", "name": "tone", "connection": "c", "criteria": "Tone?",
         "choices": {"good": 1.0, "bad": 0.0}},
        {"type": "autoevals", "name": "Factuality", "connection": "c", "attributes": {"expected": "gold"},
         "threshold": 0.5},
    ],
}  # fmt: skip


def as_posted(values: dict[str, Any]) -> dict[str, str]:
    """What a browser posts for the form: flat names, checked boxes only."""
    form = {k: v for k, v in values.items() if k != "scorers" and not isinstance(v, bool)}
    form.update({k: "1" for k in ("enabled", "root_spans") if values[k]})
    for i, scorer in enumerate(values["scorers"]):
        form.update({f"scorer-{i}-{k}": v for k, v in scorer.items()})
    return form


def test_a_rule_shown_and_posted_back_is_the_same_rule() -> None:
    spec = RuleSpec.model_validate(RULE)
    values = rf.spec_values(spec)
    values["scorers"].append(rf.blank_scorer())  # the form's spare scorer row, left empty
    again = validated(rf.rule_body(rf.form_values(as_posted(values))), keep=spec)
    assert again == spec


def test_a_new_rule_from_the_blank_form() -> None:
    values = rf.blank_values("proj")
    values.update(name="n")
    values["scorers"][0].update(name="len", function="length_between", args='{"max": 10}')
    body = rf.rule_body(rf.form_values(as_posted(values)))
    assert body["scorers"] == [
        {"type": "code", "name": "len", "function": "length_between", "args": {"max": 10}}
    ]
    assert validated(body).enabled and "root_spans" not in body  # trace scope: no span fields sent


def test_problems_name_their_field() -> None:
    values = rf.blank_values("p")
    values.update(name="n", sampling_rate="lots")
    values["scorers"][0].update(name="x", function="contains", args="{not json")
    with pytest.raises(rf.FormProblem) as problem:
        rf.rule_body(values)
    assert problem.value.field == "scorers[0].args"
    values["scorers"][0]["args"] = '{"value": "a"}'
    with pytest.raises(ApiError) as refused:
        validated(rf.rule_body(values))
    assert refused.value.message.startswith("sampling_rate:")


def test_a_filter_error_is_marked_at_its_position() -> None:
    text = "name = 'a' AND nosuch > 1"
    values = rf.blank_values("p")
    values.update(name="n", filter=text)
    values["scorers"][0].update(name="x", function="contains", args='{"value": "a"}')
    check = checked(values)
    assert check["field"] == "filter" and check["position"] == text.index("nosuch")
    assert (
        str(check["mark"])
        == 'name = &#39;a&#39; AND <mark class="filter-error" id="filter-error-at">nosuch</mark> &gt; 1'
    )
    end = rf.filter_mark("filter: filter error at position 9 near '': unexpected end", "name = 'a")
    assert end is not None and (end.before, end.at, end.after) == ("name = 'a", " ", "")
    assert rf.filter_mark("scorers[0]: unknown function", "x") is None
    assert "<mark" in str(rf.marked(end))
