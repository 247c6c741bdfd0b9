"""LLM judges across a kill -9 during judging: exactly one score per (rule, trace, span, scorer) after
`FINAL`, none missing, and judge spans for every judged item.

The service judges through the real openai SDK against the fake LLM server, which answers after 1 to 3 s,
so at the kill some judge calls are in flight (the fake server sees their connections drop: status 499),
some are answered and their score rows committed, and some traces' windows are still open (their root span
has not ended yet: it is exported only after the restart). The restart recovers from the Bytewax snapshot:
pending judge jobs run again, the log replays what the last committed epoch had not covered, and the
deterministic score ids make every replayed row replace its earlier copy.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess
from tests.integration.test_rules_e2e import FAST_WINDOWS, call
from tests.waiting import eventually

# Settle 0.5 s for traces with a root span; a trace without one stays open for 120 s (far past the test).
ENV = {**FAST_WINDOWS, "TRACEJUDGE_WINDOWS__IDLE_GAP_S": "120", "FAKE_LLM_KEY": "secret"}
CLOSED_TRACES = 30  # complete before the kill: judged around the kill
OPEN_TRACES = 6  # root span still running at the kill: their windows are open
ANSWERS = ("Paris", "Lyon", "a wrong guess")  # cycled over the traces
BASE_LATENCY_S = 1.0
EXTRA_LATENCY_S = 2.0  # scripted per request on top, spread evenly: answers take 1 to 3 s

Key = tuple[str, str, str, str]  # (RuleId, TraceId, SpanId, Name)


@dataclass(frozen=True)
class SentTrace:
    trace_id: str
    root_span_id: str
    llm_span_id: str
    answer: str


class SwitchableExporter(SpanExporter):
    """The real OTLP/gRPC exporter, re-pointed at the restarted service's new port; every export must be
    acknowledged (an acknowledged span is durable)."""

    def __init__(self, endpoint: str) -> None:
        self._target = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        self.results: list[SpanExportResult] = []

    def point_at(self, endpoint: str) -> None:
        old, self._target = self._target, OTLPSpanExporter(endpoint=endpoint, insecure=True)
        old.shutdown()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._target.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self._target.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class Client:
    """An instrumented app: one `agent` root span with `llm.call` and `tool` children per question."""

    def __init__(self, endpoint: str, project: str) -> None:
        self.exporter = SwitchableExporter(endpoint)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": "judge-crash", "tracejudge.project": project})
        )
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("judge-crash")

    def start_trace(self, question: str, answer: str) -> tuple[SentTrace, Callable[[], None]]:
        """Export the children now; the returned callable ends (and exports) the root span."""
        root = self.tracer.start_span("agent")
        root.set_attribute("input.value", question)
        root.set_attribute("output.value", answer)
        ctx = trace.set_span_in_context(root)
        llm = self.tracer.start_span("llm.call", context=ctx)
        llm.set_attribute("input.value", question)
        llm.set_attribute("output.value", json.dumps({"answer": answer}))
        llm.end()
        tool = self.tracer.start_span("tool", context=ctx)
        tool.set_attribute("output.value", "not json")
        tool.end()
        sent = SentTrace(
            format(root.get_span_context().trace_id, "032x"),
            format(root.get_span_context().span_id, "016x"),
            format(llm.get_span_context().span_id, "016x"),
            answer,
        )
        return sent, root.end

    def close(self) -> None:
        self.provider.shutdown()
        assert self.exporter.results and all(r is SpanExportResult.SUCCESS for r in self.exporter.results)


def create_rules(svc: ServiceProcess, llm: FakeLLMServer, project: str) -> tuple[str, str]:
    status, conn = call(svc, "POST", "/api/v1/connections", {
        "name": "fake", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
        "api_key_env": "FAKE_LLM_KEY", "model": "judge-model", "timeout_s": 20,
    })  # fmt: skip
    assert status == 201, conn
    # Span scope: the fake judge gives 5 (value 1.0) when the output contains the <expected> answer, else 1.
    status, span_rule = call(svc, "POST", "/api/v1/rules", {
        "name": "span-judge", "project": project, "scope": "span", "span_names": ["llm.call"],
        "scorers": [{"type": "llm_judge", "name": "correct", "connection": "fake",
                     "criteria": "The answer is <expected>Paris</expected>.",
                     "min_score": 1, "max_score": 5, "threshold": 3}],
    })  # fmt: skip
    assert status == 201, span_rule
    # Trace scope: the fake judge gives 10 to a non-empty root output without the word "wrong", else 0;
    # a code scorer rides along in the same rule.
    status, trace_rule = call(svc, "POST", "/api/v1/rules", {
        "name": "trace-judge", "project": project, "scope": "trace",
        "scorers": [
            {"type": "llm_judge", "name": "helpful", "connection": "fake", "criteria": "The agent helped.",
             "min_score": 0, "max_score": 10, "threshold": 5},
            {"type": "code", "name": "mentions_paris", "function": "contains", "args": {"value": "Paris"}},
        ],
    })  # fmt: skip
    assert status == 201, trace_rule
    return str(span_rule["id"]), str(trace_rule["id"])


def expected_scores(
    traces: list[SentTrace], span_rule: str, trace_rule: str
) -> dict[Key, tuple[float, bool]]:
    """(RuleId, TraceId, SpanId, Name) -> (Value, Passed), by the fake server's scoring rule."""
    out: dict[Key, tuple[float, bool]] = {}
    for t in traces:
        correct = "paris" in t.answer.lower()
        helpful = "wrong" not in t.answer
        out[(span_rule, t.trace_id, t.llm_span_id, "correct")] = (float(correct), correct)
        out[(trace_rule, t.trace_id, "", "helpful")] = (float(helpful), helpful)
        mentions = "Paris" in t.answer
        out[(trace_rule, t.trace_id, "", "mentions_paris")] = (float(mentions), mentions)
    return out


def judge_rows(svc: ServiceProcess, project: str) -> int:
    sql = f"SELECT count() FROM scores FINAL WHERE Project = '{project}' AND Scorer = 'llm_judge'"
    return int(svc.scalar(sql))


def wait_during_judging(svc: ServiceProcess, llm: FakeLLMServer, project: str, total: int) -> tuple[int, int]:
    """Until some judge rows are committed and some judge calls are still unanswered; returns both counts."""

    def counts() -> tuple[int, int]:
        return judge_rows(svc, project), calls_in_flight(llm)

    return eventually(
        counts,
        until=lambda c: 3 <= c[0] <= total - 3 and c[1] >= 3,
        timeout=30,
        interval=0.05,
        message=lambda: f"never mid-judging (judge rows of {total}, calls in flight)\n{svc.output}",
    )


def calls_in_flight(llm: FakeLLMServer) -> int:
    return sum(1 for r in llm.requests if r["status"] is None)


def all_answered(llm: FakeLLMServer) -> list[dict[str, Any]]:
    """The fake's requests once none is unanswered (it notices clients that went away: status 499)."""
    return eventually(
        lambda: llm.requests, until=lambda rs: all(r["status"] is not None for r in rs), timeout=10
    )


def test_judge_scores_exactly_once_across_kill_9_during_judging(tmp_path: Path, llm: FakeLLMServer) -> None:
    llm.set_latency(BASE_LATENCY_S)
    project = f"jcrash-{uuid.uuid4().hex[:8]}"
    svc = ServiceProcess(tmp_path / "data", env=ENV).start()
    try:
        span_rule, trace_rule = create_rules(svc, llm, project)
        time.sleep(0.5)  # as in test_rules_e2e: this process reloaded already
        judge_calls = 2 * CLOSED_TRACES
        spread = (EXTRA_LATENCY_S * ((i * 7) % judge_calls) / judge_calls for i in range(judge_calls))
        llm.add_faults({"latency": x, "path": "/v1/chat/completions"} for x in spread)
        client = Client(svc.otlp_grpc, project)
        answers = itertools.cycle(ANSWERS)
        open_traces = [
            client.start_trace(f"Question O-{i}: capital of France?", next(answers))
            for i in range(OPEN_TRACES)
        ]
        closed = []
        for i in range(CLOSED_TRACES):
            sent, end_root = client.start_trace(f"Question C-{i}: capital of France?", next(answers))
            end_root()
            closed.append(sent)
        assert client.exporter.results and all(r is SpanExportResult.SUCCESS for r in client.exporter.results)
        stored, in_flight = wait_during_judging(svc, llm, project, judge_calls)
    finally:
        svc.kill()  # SIGKILL right after the check (or after any failure above)
    # The kill cut calls in flight: the fake server saw their clients go away.
    before = all_answered(llm)
    cut = sum(1 for r in before if r["status"] == 499)
    answered = sum(1 for r in before if r["status"] == 200)
    assert cut >= 1 and answered >= 1, [r["status"] for r in before]
    assert all(r["status"] in (200, 499) for r in before), [r["status"] for r in before]
    assert not any("Question O-" in json.dumps(r["body"]) for r in before)  # open windows: never judged yet
    print(f"at the kill: {stored} judge rows committed, {in_flight} calls in flight ({cut} cut in all)")

    llm.clear_faults()
    llm.set_latency(0.3)
    svc = ServiceProcess(tmp_path / "data", env=ENV).start()
    try:
        client.exporter.point_at(svc.otlp_grpc)
        for _, end_root in open_traces:
            end_root()
        client.close()
        traces = closed + [sent for sent, _ in open_traces]
        expected = expected_scores(traces, span_rule, trace_rule)
        check_scores(svc, project, expected)
        check_judge_spans(svc, project, traces, span_rule)
        assert len(llm.requests) > len(before)  # cut and unfinished calls were made again
    finally:
        assert svc.stop() == 0, svc.output


def check_scores(svc: ServiceProcess, project: str, expected: dict[Key, tuple[float, bool]]) -> None:
    final = (
        "SELECT RuleId, TraceId, SpanId, Name, count(), any(Value), any(Passed), any(Error), any(Model), "
        f"any(Scorer) FROM scores FINAL WHERE Project = '{project}' GROUP BY RuleId, TraceId, SpanId, Name"
    )
    eventually(
        lambda: svc.sql(final), until=lambda rows: len(rows) >= len(expected), timeout=45, interval=0.2,
        message=lambda: svc.output,
    )  # fmt: skip
    time.sleep(2.0)  # replays still running would add rows now; nothing more may arrive
    rows = svc.sql(final)
    got = {(r[0], r[1], r[2], r[3]): r for r in rows}
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert not missing and not extra, (
        f"{len(missing)} scores missing, e.g. {sorted(missing)[:3]}; {len(extra)} unexpected, "
        f"e.g. {sorted(extra)[:3]}\n{svc.output}"
    )
    assert [r for r in rows if r[4] != 1] == []  # exactly one row per key after FINAL
    assert [r for r in rows if r[7] != ""] == []  # no errors, no shed calls
    assert {k: (got[k][5], got[k][6]) for k in expected} == expected
    judged = [r for r in rows if r[9] == "llm_judge"]
    assert len(judged) == 2 * len(expected) // 3 and all(r[8] == "judge-model" for r in judged)
    # Without FINAL, replays may have written a score again; every copy has the same deterministic id.
    raw, ids = svc.sql(f"SELECT count(), uniqExact(ScoreId) FROM scores WHERE Project = '{project}'")[0]
    deduped = svc.scalar(f"SELECT count() FROM scores FINAL WHERE Project = '{project}'")
    assert raw >= len(expected) and ids == deduped == len(expected)
    print(f"scores: {raw} rows written, {len(expected)} after FINAL")


def check_judge_spans(svc: ServiceProcess, project: str, traces: list[SentTrace], span_rule: str) -> None:
    """At least one judge span per judged item, a child of the scored span, one span id per score id.

    None is lost: the judge span sink appends an epoch's spans to the log at the epoch's snapshot and waits
    until they are durable, before the epoch commits. Duplicates are possible: `otel_traces` is a plain
    MergeTree, and a call answered in an epoch the crash left uncommitted (its spans possibly appended
    already) is judged again after the restart (its job from the snapshot or its trace from the log's
    replay), and its second span is stored too. Both copies share the span id (derived from the score id),
    so `LIMIT 1 BY TraceId, SpanId` reads one.
    """
    judged = svc.sql(
        f"SELECT ScoreId, TraceId, if(RuleId = '{span_rule}', SpanId, '') FROM scores FINAL "
        f"WHERE Project = '{project}' AND Scorer = 'llm_judge'"
    )
    roots = {t.trace_id: t.root_span_id for t in traces}
    parents = {sid: span or roots[tid] for sid, tid, span in judged}
    sql = (
        "SELECT SpanAttributes['tracejudge.score_id'], count(), uniqExact(SpanId), any(ParentSpanId), "
        "any(TraceId) FROM otel_traces WHERE ScopeName = 'tracejudge.judge' "
        f"AND Project = '{project}' GROUP BY 1"
    )
    rows = eventually(
        lambda: svc.sql(sql), until=lambda rows: {r[0] for r in rows} >= set(parents), timeout=45, interval=0.2,
        message=lambda: f"judged items without a judge span\n{svc.output}",
    )  # fmt: skip
    spans = {r[0]: r for r in rows}
    missing = set(parents) - set(spans)
    assert not missing, f"{len(missing)} judged items without a judge span, e.g. {sorted(missing)[:3]}"
    assert set(spans) == set(parents), set(spans) - set(parents)
    assert all(spans[sid][2] == 1 and spans[sid][3] == parents[sid] for sid in parents), rows
    assert all(spans[sid][4] == tid for sid, tid, _ in judged)
    print(f"judge spans: {sum(r[1] for r in rows)} stored for {len(parents)} judged items")
