"""The batched scoring path agrees with the one-trace-at-a-time definitions it replaces for speed.

- `sample_matrix` (numpy) gives the same sample as `sample_point` (Python ints) for every (trace, rule);
- `evaluate_batch` gives the same tasks and decision counts as `evaluate` per trace;
- `spans_from_batch` with attribute keys gives what a per-key `map_lookup` gives (first duplicate wins).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bench.rules import make_rules
from dataflow.model import CloseReason, Span, Trace, scores_to_arrow
from dataflow.rules.engine import OUTCOMES, evaluate, evaluate_batch
from dataflow.rules.model import CompiledRule, compile_rule, hash64, parse_rule, sample_point
from dataflow.rules.sampling import sample_matrix
from dataflow.scoring.code_step import run_code_scorers
from dataflow.windowing.step import _maps
from tests import builders


def _rules(n: int, rate: float) -> tuple[CompiledRule, ...]:
    out = []
    for i, raw in enumerate(make_rules(n, ("p",), rate)):
        out.append(compile_rule(parse_rule({**raw, "id": f"rule-{i}", "version": 1})))
    return tuple(out)


def test_sample_matrix_agrees_with_sample_point_bit_for_bit() -> None:
    rng = random.Random(7)
    rates = [0.0, 1.0, 0.1, 0.5, 0.999, 1e-9, 0.3333333333333333]
    rules = []
    for i, rate in enumerate(rates * 4):
        raw = make_rules(1, ("p",), rate)[0]
        rules.append(compile_rule(parse_rule({**raw, "id": f"r{i}-{rng.random()}"})))
    ids = [os.urandom(16).hex() for _ in range(3000)]
    hashes = [hash64(t) for t in ids]
    # Hashes at the edges of the 64-bit range too.
    hashes += [0, 1, 2**63, 2**64 - 1, 2**53 + 1]
    got = sample_matrix(hashes, tuple(rules))
    for r, rule in enumerate(rules):
        rate = rule.spec.sampling_rate
        for t, h in enumerate(hashes):
            want = rate >= 1.0 or (rate > 0.0 and sample_point(rule.salt, h) < rate)
            assert bool(got[t, r]) == want, (rule.id, h, rate)


def _span(rng: random.Random, trace_id: str, sid: str, parent: str) -> Span:
    names = ["agent", "ChatCompletion", "retrieve", "embedding", "rerank", "tool.search", "format_answer"]
    words = ["refund", "payment", "order 42", "thanks", "invoice", "Subscription", '{"answer": 1}', "x"]
    text = " ".join(rng.choice(words) for _ in range(rng.randrange(0, 40)))
    attrs = {
        "llm.provider": rng.choice(["openai", "anthropic"]),
        "user.id": f"user-{rng.randrange(20)}",
        "session.id": f"sess-{rng.randrange(100)}",
        "llm.token_count.prompt": str(rng.randrange(300)),
        "openinference.span.kind": rng.choice(["tool", "LLM", "guardrail"]),
        "input.mime_type": rng.choice(["text/plain", "application/json"]),
        "llm.model_name": rng.choice(["claude-sonnet-4", "gpt-4o"]),
    }
    for key in rng.sample(sorted(attrs), rng.randrange(3)):
        del attrs[key]
    return builders.span(
        trace_id=trace_id, span_id=sid, parent_span_id=parent, name=rng.choice(names),
        kind=rng.choice(["Client", "Internal"]), status_code=rng.choice(["Unset", "Ok", "Error"]),
        service_name=f"support-bot-{rng.randrange(4)}", start_ns=rng.randrange(10**9),
        duration_ns=rng.randrange(3 * 10**9), input=rng.choice(["Refund please", "Payment", text]), output=text,
        attributes=attrs, resource={"service.name": f"support-bot-{rng.randrange(4)}"},
    )  # fmt: skip


def _traces(rng: random.Random, n: int) -> list[Trace]:
    out = []
    for _ in range(n):
        tid = os.urandom(16).hex()
        spans = [_span(rng, tid, "s0", "" if rng.random() < 0.9 else "gone")]
        spans += [_span(rng, tid, f"s{i}", "s0") for i in range(1, rng.randrange(1, 12))]
        late = rng.random() < 0.1
        out.append(builders.trace(*spans, late=late))
    return out


def _task_key(task: Any) -> tuple[str, str, str]:
    return (task.rule.id, task.trace.trace_id, task.span.span_id if task.span else "")


def test_evaluate_batch_agrees_with_evaluate() -> None:
    rng = random.Random(11)
    for rate in (0.1, 0.5, 1.0):
        rules = _rules(50, rate)
        traces = _traces(rng, 300)
        only = [frozenset(s.span_id for s in t.spans[-2:]) if t.late else None for t in traces]
        starts = [min(s.start_ns for s in t.spans) for t in traces]
        tasks, tally = evaluate_batch(traces, rules, starts, only)
        want_tasks = []
        want = Counter()
        for t, o in zip(traces, only, strict=True):
            ts, decisions = evaluate(t, rules, span_scope_only=o)
            want_tasks += ts
            want.update((d.rule.id, d.outcome) for d in decisions)
        assert [_task_key(x) for x in tasks] == [_task_key(x) for x in want_tasks] or sorted(
            map(_task_key, tasks)
        ) == sorted(map(_task_key, want_tasks))
        got = Counter()
        for rule, counts in zip(tally.rules, tally.counts, strict=True):
            for outcome, n in zip(OUTCOMES, counts, strict=True):
                if n:
                    got[(rule.id, outcome)] = n
        assert got == want
        assert tally.latest_trace_ns == max(starts)
        assert sum(want.values()) == len(rules) * len(traces)


def test_score_rows_survive_the_arrow_round_trip() -> None:
    rng = random.Random(3)
    rules = _rules(20, 1.0)
    traces = _traces(rng, 30)
    tasks, _ = evaluate_batch(traces, rules, [0] * len(traces))
    rows = [row for task in tasks for row in run_code_scorers(task)]
    assert rows
    table = scores_to_arrow(rows)
    assert table.column("ScoreId").to_pylist() == [r.score_id for r in rows]
    assert table.column("Metadata").to_pylist() == [list(r.metadata.items()) for r in rows]
    assert table.column("Passed").to_pylist() == [r.passed for r in rows]


def test_needed_attributes_match_a_map_lookup_per_key() -> None:
    rng = random.Random(5)
    keys = [f"k{i}" for i in range(12)]
    rows = []
    for _ in range(400):
        entries = [(rng.choice(keys), str(rng.randrange(5))) for _ in range(rng.randrange(0, 8))]
        rows.append(entries)
    column = pa.array(rows, pa.map_(pa.string(), pa.string()))
    wanted = frozenset([*rng.sample(keys, 5), "absent"])
    for part in (column, column.slice(37, 200), pa.chunked_array([column.slice(0, 10), column.slice(10)])):
        got = _maps(part, wanted, len(part))
        want: list[dict[str, str]] = [{} for _ in range(len(part))]
        for key in wanted:
            for i, value in enumerate(pc.map_lookup(part, pa.scalar(key, pa.string()), "first").to_pylist()):
                if value is not None:
                    want[i][key] = value
        assert got == want
    assert _maps(column, frozenset(), len(column)) == [{}] * len(column)


def test_the_scoring_micro_benchmark_runs(tmp_path: Any) -> None:
    import json

    from bench import scoring

    out = tmp_path / "scoring.json"
    assert scoring.main(["--requests", "2", "--repeat", "1", "--json-out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["spans"] == 1000 and result["traces"] == 100 and result["score_rows"] > 0
    assert set(result["us_per_span"]) == {"decode", "shards", "windows", "scoring", "arrow", "flow (2-5)"}


def test_sampled_by_any_agrees_with_each_rules_sample() -> None:
    from dataflow.rules.engine import sampled_by_any

    rules = _rules(3, 0.05)
    ids = [os.urandom(16).hex() for _ in range(2000)]
    got = sampled_by_any(lambda p: rules if p == "p" else (), ids, ["p"] * len(ids))
    assert got is not None and 0 < sum(got) < len(ids)
    assert got == [any(r.sampled(t) for r in rules) for t in ids]
    assert sampled_by_any(lambda p: _rules(1, 1.0), ids, ["p"] * len(ids)) is None  # rate 1: all wanted


def test_spans_of_unsampled_traces_stay_partial_and_are_completed_only_if_scored() -> None:
    """A trace no rule samples on arrival keeps only ids in Python; if a rule (changed since) samples it at
    close, the scoring step completes it from ClickHouse; otherwise nothing is fetched."""
    from dataflow.config import WindowConfig
    from dataflow.rules.model import RuleSet
    from dataflow.rules.status import RuleStats
    from dataflow.scoring.step import ScoringStep
    from dataflow.windowing.step import spans_from_batch
    from dataflow.windowing.trace_window import WindowShard

    rng = random.Random(9)
    traces = _traces(rng, 40)
    spans = [s for t in traces for s in t.spans]
    batch = pa.table(
        {
            "TraceId": [s.trace_id for s in spans], "SpanId": [s.span_id for s in spans],
            "ParentSpanId": [s.parent_span_id for s in spans], "SpanName": [s.name for s in spans],
            "SpanKind": [s.kind for s in spans], "StatusCode": [s.status_code for s in spans],
            "StatusMessage": [s.status_message for s in spans], "ServiceName": [s.service_name for s in spans],
            "Project": [s.project for s in spans], "SessionId": [s.session_id for s in spans],
            "Duration": pa.array([s.duration_ns for s in spans], pa.uint64()),
            "Input": [s.input for s in spans], "Output": [s.output for s in spans],
            "Timestamp": pa.array([s.start_ns for s in spans], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "SpanAttributes": pa.array([list(s.attributes.items()) for s in spans], pa.map_(pa.string(), pa.string())),
            "ResourceAttributes": pa.array([list(s.resource.items()) for s in spans], pa.map_(pa.string(), pa.string())),
            "ScopeName": [""] * len(spans),
        }
    )  # fmt: skip
    wanted_ids = {t.trace_id for t in traces[::4]}
    built = spans_from_batch(batch, None, None, None, lambda tids, _p: [t in wanted_ids for t in tids])
    assert len(built) == len(spans)
    for s in built:
        assert s.partial == (s.trace_id not in wanted_ids)
        if s.partial:
            assert (s.input, s.output, s.name, dict(s.attributes)) == ("", "", "", {}) and s.project == "p"
    full = {(s.trace_id, s.span_id): s for s in spans}
    assert all(s == full[(s.trace_id, s.span_id)] for s in built if not s.partial)

    shard = WindowShard.create(WindowConfig())
    shard.add(built, 0)
    closed = shard.close_all(CloseReason.SHUTDOWN, 1)
    assert {t.trace_id for t in closed if not t.complete} == {t.trace_id for t in traces} - wanted_ids

    class Fetcher:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def fetch(self, trace_ids: list[str]) -> dict[str, list[Span]]:
            self.asked += trace_ids
            return {t.trace_id: list(t.spans) for t in traces if t.trace_id in trace_ids}

    class Rules:
        def __init__(self, rules: tuple[CompiledRule, ...]) -> None:
            self.current = RuleSet.of(rules)

    none_sample = tuple(r for r in _rules(1, 0.0))
    fetcher = Fetcher()
    ScoringStep(Rules(none_sample), RuleStats(), fetcher)(closed)
    assert fetcher.asked == []  # no rule samples them: nothing to complete
    fetcher = Fetcher()
    out = ScoringStep(Rules(_rules(1, 1.0)), RuleStats(), fetcher)(closed)
    assert sorted(fetcher.asked) == sorted({t.trace_id for t in traces} - wanted_ids)
    rows = [r for kind, batch_ in out if kind == "scores" for r in batch_]
    # The same scores as from the full traces: completed partial traces are scored on their real text.
    direct = ScoringStep(Rules(_rules(1, 1.0)), RuleStats(), None)(traces)
    want = [r for kind, batch_ in direct if kind == "scores" for r in batch_]
    assert rows and sorted((r.score_id, r.value) for r in rows) == sorted((r.score_id, r.value) for r in want)


def test_the_flow_benchmark_runs_the_real_flow_and_scores_what_the_stages_score(tmp_path: Any) -> None:
    """`bench/flow.py` (the Bytewax flow in-process, recovery on) scores exactly what the stage-by-stage path
    of `bench/scoring.py` scores for the same requests: same rules, sampling 1, so the counts must agree."""
    import json

    from bench import flow, scoring

    out = tmp_path / "flow.json"
    args = ["--requests", "4", "--rules", "5", "--sampling-rate", "1", "--rate", "1000000", "--repeat", "1"]
    assert flow.main([*args, "--json-out", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]
    staged = scoring.run(requests=4, rules=5, sampling_rate=1.0, repeat=1, per_item=1)
    assert run["spans"] == staged["spans"] == 2000
    assert run["score_rows"] == staged["score_rows"] > 0
    assert run["snapshots"] >= 1 and run["us_per_span"] > 0
