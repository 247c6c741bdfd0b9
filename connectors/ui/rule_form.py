"""The rule form of the web UI: a rule as form fields and back, and a filter error's position in the filter text.

The form posts flat fields (`name`, `filter`, `scorer-0-type`, `scorer-0-criteria`, ...); `rule_body` turns them
into the JSON body the rules API takes, so the page validates with the API's own `validated`. Numbers are
passed on as typed (the rule model says which field is not a number); JSON fields that do not parse become a
problem naming the field. Scorer fields the form has no input for (a judge's prompt or choices, an autoevals
scorer's attributes) travel in the scorer's "More (JSON)" field, so editing a rule never drops them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from dataflow.rules.model import RuleSpec
from dataflow.scorers.code import BUILTINS

SCORER_TYPES = ("code", "llm_judge", "autoevals")
CODE_FUNCTIONS = tuple(sorted(BUILTINS))
# Scorer fields with an input of their own; every other field of a scorer goes in its "More (JSON)".
_SCORER_TEXT = ("type", "name", "function", "connection", "criteria", "evaluator")
_SCORER_NUMBERS = ("min_score", "max_score", "threshold")
_SCORER_JSON = ("args",)
_RULE_TEXT = ("name", "project", "description", "scope", "filter")
_RULE_NUMBERS = ("sampling_rate", "max_calls_per_minute", "max_usd_per_hour")
_FILTER_AT = re.compile(r"at position (\d+) near ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


class FormProblem(ValueError):
    """A form field that is not what the rule model takes (e.g. JSON that does not parse); names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class FilterMark:
    """Where a filter error is: the text before it, at it (underlined) and after it."""

    before: str
    at: str
    after: str
    position: int


def blank_values(project: str = "") -> dict[str, Any]:
    """The form of a new rule: one empty code scorer."""
    return {"name": "", "project": project, "description": "", "enabled": True, "scope": "trace",
            "root_spans": False, "span_names": "", "filter": "", "sampling_rate": "1",
            "max_calls_per_minute": "0", "max_usd_per_hour": "0", "scorers": [blank_scorer()]}  # fmt: skip


def blank_scorer() -> dict[str, str]:
    return {"type": "code", "name": "", "function": "", "args": "", "connection": "", "criteria": "",
            "evaluator": "", "min_score": "", "max_score": "", "threshold": "", "more": ""}  # fmt: skip


def _shown(value: Any) -> str:
    return "" if value is None else str(value)


def spec_values(spec: RuleSpec) -> dict[str, Any]:
    """A stored rule as the form shows it."""
    data = spec.model_dump(mode="json")
    values: dict[str, Any] = {k: _shown(data[k]) for k in (*_RULE_TEXT, *_RULE_NUMBERS)}
    values.update(enabled=spec.enabled, root_spans=spec.root_spans, span_names=", ".join(spec.span_names))
    values["scorers"] = [_scorer_values(s) for s in data["scorers"]]
    return values


def _scorer_values(doc: dict[str, Any]) -> dict[str, str]:
    values = blank_scorer()
    for key in (*_SCORER_TEXT, *_SCORER_NUMBERS):
        values[key] = _shown(doc.get(key))
    values["args"] = json.dumps(doc["args"]) if doc.get("args") else ""
    known = {*_SCORER_TEXT, *_SCORER_NUMBERS, *_SCORER_JSON}
    more = {k: v for k, v in doc.items() if k not in known and v is not None}
    values["more"] = json.dumps(more) if more else ""
    return values


def form_values(form: Mapping[str, str]) -> dict[str, Any]:
    """The posted form as the template shows it again (strings; checkboxes as booleans)."""
    values: dict[str, Any] = {k: form.get(k, "") for k in (*_RULE_TEXT, *_RULE_NUMBERS, "span_names")}
    values["enabled"] = bool(form.get("enabled"))
    values["root_spans"] = bool(form.get("root_spans"))
    count = len({k.split("-")[1] for k in form if k.startswith("scorer-") and k.count("-") == 2})
    values["scorers"] = [
        {key: form.get(f"scorer-{i}-{key}", "") for key in blank_scorer()} for i in range(count)
    ] or [blank_scorer()]
    return values


def _json_field(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FormProblem(field, f"not JSON: {exc}") from exc


def _number(text: str) -> str | float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # the rule model names the field that is not a number


def _scorer_body(s: Mapping[str, str], i: int) -> dict[str, Any] | None:
    if not any(s.get(k, "").strip() for k in ("name", "function", "criteria", "connection", "evaluator")):
        return None  # an empty row: the form's spare scorer
    kind = s.get("type", "code")
    body: dict[str, Any] = {"type": kind, "name": s.get("name", "").strip()}
    wanted = {"code": ("function",), "llm_judge": ("connection", "criteria"),
              "autoevals": ("connection", "evaluator")}.get(kind, ())  # fmt: skip
    body.update({k: s.get(k, "").strip() for k in wanted if s.get(k, "").strip() or k != "evaluator"})
    if kind != "llm_judge" and s.get("args", "").strip():
        body["args"] = _json_field(s["args"], f"scorers[{i}].args")
    numbers = {"llm_judge": _SCORER_NUMBERS, "autoevals": ("threshold",)}.get(kind, ())
    body.update({k: n for k in numbers if (n := _number(s.get(k, ""))) is not None})
    if s.get("more", "").strip():
        field = f"scorers[{i}] (more)"
        more = _json_field(s["more"], field)
        if not isinstance(more, dict):
            raise FormProblem(field, "must be a JSON object")
        body.update(more)
    return body


def rule_body(values: Mapping[str, Any]) -> dict[str, Any]:
    """The rules API's body of a form (`form_values`); raises FormProblem for JSON fields that do not parse."""
    body: dict[str, Any] = {k: values.get(k, "") for k in _RULE_TEXT}
    body.update({k: n for k in _RULE_NUMBERS if (n := _number(values.get(k, ""))) is not None})
    body["enabled"] = bool(values.get("enabled"))
    if body.get("scope") == "span":
        body["root_spans"] = bool(values.get("root_spans"))
        body["span_names"] = [
            n.strip() for n in re.split(r"[,\n]", values.get("span_names", "")) if n.strip()
        ]
    scorers = [_scorer_body(s, i) for i, s in enumerate(values.get("scorers", []))]
    body["scorers"] = [s for s in scorers if s is not None]
    return body


def filter_mark(message: str, text: str) -> FilterMark | None:
    """Where a filter error (`filter error at position N near 'tok': ...`) is in the filter text."""
    found = _FILTER_AT.search(message)
    if found is None:
        return None
    position = min(int(found.group(1)), len(text))
    try:
        token = str(ast.literal_eval(found.group(2)))
    except (ValueError, SyntaxError):
        token = ""
    end = position + max(1, len(token)) if text[position:].startswith(token) else position + 1
    return FilterMark(text[:position], text[position:end] or " ", text[end:], position)


def marked(mark: FilterMark) -> Markup:
    """The filter text with the error's token underlined (HTML)."""
    return (
        escape(mark.before)
        + Markup('<mark class="filter-error" id="filter-error-at">')
        + escape(mark.at)
        + Markup("</mark>")
        + escape(mark.after)
    )
