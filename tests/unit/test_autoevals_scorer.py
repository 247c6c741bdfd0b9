"""autoevals scorers in rules: validation when the rule is saved, mapping spans and traces to the evaluator's
arguments, the judge job and the score row they become. (The real autoevals against the fake LLM server is in
tests/integration/test_autoevals.py.)"""

from __future__ import annotations

import pickle
import re
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import autoevals
import autoevals.llm
import pytest
import yaml

from dataflow import metrics
from dataflow.errors import RuleCompileError
from dataflow.judging.autoevals_scorer import (
    EVALUATORS,
    AutoevalsRequest,
    AutoevalsSpec,
    connection_problem,
)
from dataflow.judging.client import JudgeAnswer
from dataflow.judging.connections import ConnectionSpec
from dataflow.judging.executor import CallResult
from dataflow.judging.scorer import MAX_FIELD_CHARS
from dataflow.model import Span
from dataflow.rules.engine import EvalTask
from dataflow.rules.model import compile_rule, parse_rule, span_needs
from dataflow.scoring.judge_step import (
    JudgeContext,
    JudgeLogic,
    Pending,
    RuleBudgets,
    jobs_for,
    result_outputs,
)
from tests import builders
from tests.builders import trace

FACT: dict[str, Any] = {"type": "autoevals", "name": "Factuality", "connection": "oai"}


def rule(*scorers: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return builders.rule(**{"id": "r1", "scorers": list(scorers) or [FACT], **kw})


def span(
    sid: str, parent: str = "root", inp: str = "Capital of France?", out: str = "Paris", **attrs: str
) -> Span:
    return builders.span(
        span_id=sid, parent_span_id=parent, session_id="s1", start_ns=10, duration_ns=5, input=inp, output=out,
        attributes=attrs,
    )  # fmt: skip


def compile_error(*scorers: dict[str, Any]) -> str:
    with pytest.raises(RuleCompileError) as info:
        compile_rule(parse_rule(rule(*scorers)))
    return str(info.value)


# ---- the evaluator table against the installed autoevals ------------------------------------------------------


def test_the_evaluator_table_matches_autoevals_templates() -> None:
    """Every classifier template autoevals ships is in EVALUATORS, with exactly its variables."""
    templates = Path(autoevals.__file__).parent / "templates"
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(templates.glob("*.yaml")):
        prompt = yaml.safe_load(path.read_text())["prompt"]
        names = sorted(set(re.findall(r"{{{?\s*([a-z_]+)\s*}?}}", prompt)) - {"input", "output"})
        cls = "".join(part.capitalize() for part in path.stem.split("_"))  # closed_q_a -> ClosedQA
        found[cls] = tuple(names)
    assert {k: tuple(sorted(v)) for k, v in EVALUATORS.items()} == found
    for name in EVALUATORS:
        assert issubclass(getattr(autoevals.llm, name), autoevals.llm.SpecFileClassifier)


# ---- validation when the rule is saved --------------------------------------------------------------------


def test_name_alone_selects_the_evaluator() -> None:
    compiled = compile_rule(parse_rule(rule(FACT)))
    (judge,) = compiled.judges
    assert isinstance(judge, AutoevalsSpec) and judge.evaluator_name == "Factuality"
    assert compiled.scorers == ()  # not a code scorer


def test_evaluator_names_the_class_and_name_the_score() -> None:
    spec = {"type": "autoevals", "name": "qa", "evaluator": "ClosedQA", "connection": "oai",
            "args": {"criteria": "Names a city"}}  # fmt: skip
    (judge,) = compile_rule(parse_rule(rule(spec))).judges
    assert isinstance(judge, AutoevalsSpec) and (judge.name, judge.evaluator_name) == ("qa", "ClosedQA")


def test_an_unknown_evaluator_names_the_field_and_lists_the_known_ones() -> None:
    err = compile_error({**FACT, "name": "Factualty"})
    assert err.startswith(
        "scorers[0].name: unknown autoevals evaluator 'Factualty'; supported: Battle, ClosedQA"
    )
    assert all(name in err for name in EVALUATORS)
    err = compile_error(
        FACT, {"type": "autoevals", "name": "x", "evaluator": "factuality", "connection": "c"}
    )
    assert err.startswith(
        "scorers[1].evaluator: unknown autoevals evaluator 'factuality' (did you mean 'Factuality'?)"
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Levenshtein", "not an LLM classifier: use a code scorer"),
        ("ExactMatch", "not an LLM classifier"),
        ("EmbeddingSimilarity", "embeddings API"),
        ("Moderation", "moderations API"),
        ("Faithfulness", "several LLM calls per score"),
    ],
)
def test_non_classifier_evaluators_are_refused_with_the_reason(name: str, why: str) -> None:
    err = compile_error({**FACT, "name": name})
    assert err.startswith(f"scorers[0].name: autoevals {name!r} cannot run as a scorer (")
    assert why in err and "supported: Battle" in err


def test_arguments_must_be_the_evaluators_variables() -> None:
    err = compile_error({**FACT, "args": {"criteria": "x"}})
    assert err == "scorers[0].args.criteria: Factuality takes expected (input and output come from the span)"
    assert compile_error({**FACT, "args": {"output": "x"}}).startswith("scorers[0].args.output: ")
    humor = {"type": "autoevals", "name": "Humor", "connection": "c", "attributes": {"expected": "e"}}
    assert "Humor takes nothing besides input and output" in compile_error(humor)
    assert "must not be empty" in compile_error({**FACT, "attributes": {"expected": " "}})


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"threshold": 1.5}, r"scorers\.0\.autoevals\.threshold: Input should be less than or equal to 1"),
        ({"model": "gpt"}, r"scorers\.0\.autoevals\.model: Extra inputs are not permitted"),
        ({"connection": ""}, r"scorers\.0\.autoevals\.connection"),
        ({"args": {"expected": 3}}, r"scorers\.0\.autoevals\.args\.expected: Input should be a valid string"),
    ],
)
def test_field_errors_name_the_field(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(RuleCompileError, match=needle):
        parse_rule(rule({**FACT, **change}))


def test_connection_problem_refuses_non_openai_connections() -> None:
    def conn(provider: str, protocol: str) -> ConnectionSpec:
        return ConnectionSpec(name="c", provider=provider, protocol=protocol, api_key_env="K", model="m")  # type: ignore[arg-type]

    assert connection_problem(conn("openai", "chat_completions")) == ""
    assert connection_problem(conn("openai", "responses")) == ""
    assert connection_problem(conn("anthropic", "messages")) == (
        "connection 'c' is anthropic messages: autoevals scorers need an OpenAI connection "
        "(protocol chat_completions or responses)"
    )


# ---- the evaluator's arguments ----------------------------------------------------------------------------


def test_span_scope_reads_the_span_and_its_expected_attribute() -> None:
    s = span("c1", out="It is Paris", **{"tracejudge.expected": "Paris"})
    req = AutoevalsSpec.model_validate(FACT).build_request(trace(span("root", ""), s), s)
    assert isinstance(req, AutoevalsRequest) and req.evaluator == "Factuality" and req.problem == ""
    assert dict(req.arguments) == {
        "input": "Capital of France?",
        "output": "It is Paris",
        "expected": "Paris",
    }
    assert req.prompt.startswith("autoevals Factuality\n<input>Capital of France?</input>")
    assert "<expected>Paris</expected>" in req.prompt and req.system == ""


def test_trace_scope_reads_the_root_span() -> None:
    root = span("root", "", inp="Q", out="root answer", **{"tracejudge.expected": "root expected"})
    child = span("c1", out="child answer", **{"tracejudge.expected": "child expected"})
    req = AutoevalsSpec.model_validate(FACT).build_request(trace(child, root), None)
    assert dict(req.arguments) == {"input": "Q", "output": "root answer", "expected": "root expected"}


def test_expected_sources_attribute_first_then_args() -> None:
    named = AutoevalsSpec.model_validate(
        {**FACT, "attributes": {"expected": "gold"}, "args": {"expected": "lit"}}
    )
    with_attr = span("c1", gold="from attribute", **{"tracejudge.expected": "ignored"})
    assert named.build_request(trace(with_attr), with_attr).arguments["expected"] == "from attribute"
    empty = span("c1", gold="")
    assert named.build_request(trace(empty), empty).arguments["expected"] == "lit"
    assert named.attribute_keys() == frozenset({"gold"})


def test_battle_instructions_default_to_the_input_and_closed_qa_takes_criteria() -> None:
    battle = AutoevalsSpec.model_validate({"type": "autoevals", "name": "Battle", "connection": "c",
                                           "args": {"expected": "reference"}})  # fmt: skip
    s = span("c1", inp="Sort a list")
    assert battle.build_request(trace(s), s).arguments == {
        "input": "Sort a list", "output": "Paris", "instructions": "Sort a list", "expected": "reference"
    }  # fmt: skip
    qa = AutoevalsSpec.model_validate({"type": "autoevals", "name": "ClosedQA", "connection": "c",
                                       "args": {"criteria": "Names a city"}})  # fmt: skip
    assert qa.build_request(trace(s), s).arguments["criteria"] == "Names a city"


def test_long_fields_are_cut_to_the_prompt_budget() -> None:
    s = span("c1", inp="i" * (MAX_FIELD_CHARS + 10), out="o" * 9000, **{"tracejudge.expected": "e" * 9000})
    args = AutoevalsSpec.model_validate(FACT).build_request(trace(s), s).arguments
    assert args["input"] == "i" * MAX_FIELD_CHARS + "[... 10 more characters]"
    assert all(len(v) < MAX_FIELD_CHARS + 40 for v in args.values())


def test_a_missing_expected_is_a_problem_that_names_its_sources() -> None:
    s = span("c1")
    req = AutoevalsSpec.model_validate(FACT).build_request(trace(s), s)
    assert req.problem == (
        "autoevals Factuality needs `expected`: the span has no attribute 'tracejudge.expected' (or it is empty) "
        "and args.expected is not set"
    )
    req = AutoevalsSpec.model_validate(FACT).build_request(trace(s), None)
    assert "the trace's root span has no attribute" in req.problem


def test_the_rules_keep_the_attributes_autoevals_reads() -> None:
    plain = compile_rule(parse_rule(rule(FACT)))
    custom = compile_rule(parse_rule(rule({**FACT, "attributes": {"expected": "eval.gold"}}, id="r2")))
    translation = {"type": "autoevals", "name": "Translation", "connection": "c", "args": {"language": "fr"}}
    both = compile_rule(parse_rule(rule(translation, id="r3")))
    needs = span_needs([plain, custom, both])
    assert needs.attributes == frozenset({"tracejudge.expected", "eval.gold", "tracejudge.language"})


# ---- the job and its score row ----------------------------------------------------------------------------


def conn() -> ConnectionSpec:
    return ConnectionSpec(
        name="oai", provider="openai", protocol="chat_completions", api_key_env="K", model="judge-1",
        input_price_per_mtok=2.0, output_price_per_mtok=10.0,
    )  # fmt: skip


def job_for(spec: dict[str, Any], s: Span) -> Any:
    compiled = compile_rule(parse_rule(rule(spec, scope="span")))
    (job,) = jobs_for(EvalTask(compiled, trace(span("root", ""), s), s))
    return job


def test_a_job_carries_the_autoevals_request_and_survives_a_snapshot() -> None:
    job = job_for({**FACT, "threshold": 0.5}, span("c1", **{"tracejudge.expected": "Paris"}))
    assert isinstance(job.spec, AutoevalsSpec) and isinstance(job.request, AutoevalsRequest)
    assert pickle.loads(pickle.dumps(job)) == job


def test_an_answer_becomes_a_categorical_row_and_a_judge_span() -> None:
    job = job_for({**FACT, "threshold": 0.5}, span("c1", **{"tracejudge.expected": "Paris"}))
    answer = JudgeAnswer(0.6, "B", "a superset", 300, 20, "judge-1-0501", '{"choice": "B"}')
    (_, row), (_, jspan) = result_outputs(job, conn(), CallResult(answer, "", "", 1, 12.0), 1_000)
    assert (row.name, row.scorer, row.value) == ("Factuality", "autoevals", 0.6)
    assert (row.string_value, row.data_type) == ("B", "CATEGORICAL")
    assert row.passed is True and row.comment == "a superset" and row.error == ""
    assert (row.input_tokens, row.output_tokens, row.model) == (300, 20, "judge-1-0501")
    assert row.cost_usd == pytest.approx((300 * 2.0 + 20 * 10.0) / 1e6)
    assert jspan["event"]["gen_ai.evaluation.score.label"] == "B"
    assert jspan["input"].startswith("autoevals Factuality") and jspan["parent_span_id"] == "c1"


def test_interpret_without_a_threshold_leaves_passed_unset() -> None:
    spec = AutoevalsSpec.model_validate(FACT)
    judged = spec.interpret(JudgeAnswer(0.0, "D", "disagrees", 1, 1, "m", ""))
    assert (judged.value, judged.string_value, judged.passed, judged.raw_score) == (0.0, "D", None, 0.0)
    assert (
        spec.model_copy(update={"threshold": 0.0}).interpret(JudgeAnswer(0.0, "D", "", 1, 1, "m", "")).passed
    )


def test_a_failed_call_is_an_error_row_without_a_judge_span() -> None:
    job = job_for(FACT, span("c1"))
    problem = job.request.problem
    result = CallResult(None, f"JudgeRequestError: {problem}", "JudgeRequestError", 1, 0.1)
    ((kind, row),) = result_outputs(job, conn(), result, 1_000)
    assert kind == "scores" and row.value is None and row.scorer == "autoevals"
    assert row.error.startswith("JudgeRequestError: autoevals Factuality needs `expected`")


class RecordingExecutor:
    """Records the calls the judge step submits; their results come when the test says."""

    def __init__(self) -> None:
        self.submitted: list[tuple[list[Any], Future[list[CallResult]]]] = []

    def submit(self, calls: list[Any], share: float | None = None) -> Future[list[CallResult]]:
        self.submitted.append((calls, Future()))
        return self.submitted[-1][1]


def pending_jobs() -> tuple[float | None, float | None]:
    get = metrics.REGISTRY.get_sample_value
    return get("tracejudge_judge_pending_jobs"), get("tracejudge_judge_pending_limit_jobs")


def test_a_job_that_cannot_be_sent_is_refused_at_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its error row comes at once, without a budget, rate-limit or pending slot."""
    monkeypatch.setenv("K", "key")
    claude = ConnectionSpec(
        name="claude", provider="anthropic", protocol="messages", api_key_env="K", model="c"
    )
    conns = {"oai": conn(), "claude": claude}
    # One call per minute and one pending slot: refused jobs must take neither, or `ok` would be shed.
    compiled = compile_rule(parse_rule(rule(FACT, scope="span", max_calls_per_minute=1)))
    ok_span, missing_span = span("c1", **{"tracejudge.expected": "Paris"}), span("c2")
    jobs = {s.span_id: job for s in (ok_span, missing_span)
            for job in jobs_for(EvalTask(compiled, trace(span("root", ""), ok_span, missing_span), s))}  # fmt: skip
    on_claude = job_for({**FACT, "connection": "claude"}, span("c3", **{"tracejudge.expected": "Paris"}))
    executor = RecordingExecutor()
    ctx = JudgeContext(executor, conns.get, RuleBudgets(), Pending(1), False)  # type: ignore[arg-type]
    assert pending_jobs() == (0, 1)
    logic = JudgeLogic(ctx, None)

    out, _ = logic.on_batch([jobs["c2"], on_claude, jobs["c1"]])
    rows = {row.span_id: row for _, row in out}
    assert [calls for calls, _ in executor.submitted] == [[(conn(), jobs["c1"].request)]]  # only c1 is sent
    assert pending_jobs() == (1, 1)
    assert sorted(rows) == ["c2", "c3"]  # no shed row for c1
    assert all(kind == "scores" for kind, _ in out)  # no judge span
    # The rows the calls would have ended in, word for word (connectors/llm/autoevals_client.py).
    assert rows["c2"].error == f"JudgeRequestError: {jobs['c2'].request.problem}"
    assert rows["c2"].error.startswith(
        "JudgeRequestError: autoevals Factuality needs `expected`: the span has no attribute 'tracejudge.expected'"
    )
    assert rows["c3"].error == f"JudgeRequestError: {connection_problem(claude)}"
    assert (rows["c2"].value, rows["c2"].scorer, rows["c2"].model, rows["c3"].model) == (
        None, "autoevals", "judge-1", "c",
    )  # fmt: skip
    assert logic.snapshot() == [jobs["c1"]]  # refused jobs are done; they are not pending

    executor.submitted[0][1].set_result([CallResult(None, "JudgeTimeout: slow", "JudgeTimeout", 3, 9.0)])
    (done,), _ = logic.on_notify()
    assert done[1].span_id == "c1" and done[1].error == "JudgeTimeout: slow"
    assert pending_jobs() == (0, 1) and logic.snapshot() == []
