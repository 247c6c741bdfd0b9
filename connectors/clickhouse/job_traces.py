"""The stored traces a job covers (its plan), and their spans (issue 11).

A plan is one GROUP BY over `otel_traces`: per trace its start (earliest span), project, span count, and what
the rule's filter matches there, with the filter compiled to SQL (`CompiledFilter.sql`, proven equal to the
Python filter by tests/integration/test_filter_differential.py) and the rule's targeting: in trace scope 1 when
some span passes, in span scope the targeted spans that pass. Judge spans are left out, as live. The Python
filter still decides on the fetched spans (`dataflow.jobs.scoring`); the plan only spares fetching traces that
cannot match, and counts what a dry run reports. A job's own plan (`chars=False`) leaves out the input and output
lengths, which only a dry run's estimate needs: that spares reading every span's text. `roots` reads each
trace's root span alone, for rules whose scorers read nothing else (`dataflow.jobs.scoring.reads_root_only`).

A trace's start is its earliest span no more than `lookback_s` before the window: a trace longer than that,
begun before the window, counts as begun in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.replay import ROOTS_FOR_TRACES, SpanFetcher
from dataflow.jobs.model import Candidate, Job, JobKind
from dataflow.model import Span
from dataflow.rules.engine import JUDGE_ATTRIBUTE
from dataflow.rules.model import CompiledRule, SpanNeeds

# Traces whose spans one query reads: a page's, up to this. A read costs about the same for 250 traces as for
# 2,500 (bench/rewind_profile.py: the granules holding a page's spans hold ~60x as many rows of other traces, all
# decompressed), so a big page read at once is cheaper per trace; ~3 KB a span bounds the Arrow batch.
FETCH_TRACES = 5_000
_NOT_JUDGE = f"NOT mapContains(SpanAttributes, '{JUDGE_ATTRIBUTE}')"
_IO = "lengthUTF8(Input) + lengthUTF8(Output)"
_SELECT = """
SELECT TraceId, toUnixTimestamp64Nano(min(Timestamp)) AS start, any(Project),
       uniqExactIf(SpanId, {not_judge}) AS spans, {tasks} AS tasks, {chars} AS chars,
       toUnixTimestamp64Nano(minIf(Timestamp, ParentSpanId = '')) AS root
FROM otel_traces
"""
_WINDOW = """
WHERE Project = {{project:String}} AND Timestamp >= fromUnixTimestamp64Nano({{lo:Int64}})
  AND Timestamp < fromUnixTimestamp64Nano({{hi:Int64}})
GROUP BY TraceId
HAVING start >= {{since:Int64}} AND start < {{until:Int64}} {having}
ORDER BY start {order}, TraceId {order}
"""
_LISTED = """
WHERE TraceId IN {{trace_ids:Array(String)}}
GROUP BY TraceId
ORDER BY start, TraceId
"""


def _targets(rule: CompiledRule) -> tuple[str, dict[str, Any]]:
    spec = rule.spec
    if spec.scope == "trace" or (not spec.root_spans and not rule.span_names):
        return "1", {}
    parts = (["ParentSpanId = ''"] if spec.root_spans else []) + (
        ["SpanName IN {tj_names:Array(String)}"] if rule.span_names else []
    )
    return "(" + " OR ".join(parts) + ")", {"tj_names": sorted(rule.span_names)}


def _rule_columns(rule: CompiledRule, with_chars: bool = True) -> tuple[str, dict[str, Any]]:
    targets, params = _targets(rule)
    match = f"{_NOT_JUDGE} AND {targets} AND ({rule.filter.sql})"
    if rule.spec.scope == "trace":
        tasks, chars = f"toUInt64(countIf({match}) > 0)", f"sumIf({_IO}, ParentSpanId = '' AND {_NOT_JUDGE})"
    else:
        tasks, chars = f"uniqExactIf(SpanId, {match})", f"sumIf({_IO}, {match})"
    if not with_chars:
        chars = "toUInt64(0)"
    return _SELECT.format(not_judge=_NOT_JUDGE, tasks=tasks, chars=chars), {**rule.filter.params, **params}


def _candidates(rows: list[tuple[Any, ...]]) -> list[Candidate]:
    return [Candidate(int(s), tid, p, int(n), int(t), int(c), int(r)) for tid, s, p, n, t, c, r in rows]


class JobTraces:
    """Plans and span reads for jobs, on one ClickHouse client."""

    def __init__(self, ch: ClickHouse, lookback_s: float = 3600.0) -> None:
        self._ch = ch
        self._lookback_ns = int(lookback_s * 1e9)
        self._fetcher = SpanFetcher(ch, FETCH_TRACES)
        self._roots = SpanFetcher(ch, FETCH_TRACES, ROOTS_FOR_TRACES)

    def fetch(self, trace_ids: list[str], needs: SpanNeeds | None = None) -> dict[str, list[Span]]:
        return self._fetcher.fetch(trace_ids, needs)

    def roots(self, chosen: list[Candidate], needs: SpanNeeds | None = None) -> dict[str, Span]:
        """Each trace's root span (`Trace.root`'s choice) where the plan found one (`root_ns`), else absent."""
        out: dict[str, Span] = {}
        for project in {c.project for c in chosen if c.root_ns}:
            rooted = [c for c in chosen if c.root_ns and c.project == project]
            bounds = {
                "project": project,
                "lo": min(c.root_ns for c in rooted),
                "hi": max(c.root_ns for c in rooted),
            }
            spans = self._roots.fetch([c.trace_id for c in rooted], needs, bounds)
            out.update((tid, found[0]) for tid, found in spans.items())
        return out

    def plan(self, job: Job, rule: CompiledRule | None, chars: bool = True) -> list[Candidate]:
        """Every trace the job covers, in (start, trace id) order (`chars` False: every `chars` 0)."""
        p = job.params
        if job.kind == JobKind.SCORE_TRACES:
            return self.listed(p["trace_ids"], p.get("scope", "trace"), p.get("span_ids") or [])
        assert rule is not None
        if p.get("last"):
            keep = lambda c: c.tasks > 0 and rule.sampled(c.trace_id)  # noqa: E731
            return self.last(rule, int(p["last"]), int(p.get("until_ns") or 2**62), keep, chars)
        return self.window(rule, int(p["since_ns"]), int(p["until_ns"]), chars=chars)

    def window(
        self, rule: CompiledRule, since_ns: int, until_ns: int, having: str = "", chars: bool = True
    ) -> list[Candidate]:
        """The project's traces that started in [since, until), each with what the rule matches there."""
        select, params = _rule_columns(rule, chars)
        sql = select + _WINDOW.format(having=having, order="")
        params |= {
            "project": rule.spec.project, "lo": max(0, since_ns - self._lookback_ns), "hi": until_ns,
            "since": since_ns, "until": until_ns,
        }  # fmt: skip
        return _candidates(self._ch.query_rows(sql, params))

    def last(
        self, rule: CompiledRule, n: int, until_ns: int, keep: Callable[[Candidate], bool], chars: bool = True
    ) -> list[Candidate]:
        """The `n` most recent traces (started before `until_ns`) that `keep` keeps, oldest first."""
        select, params = _rule_columns(rule, chars)
        limit = max(4 * n, 1000)
        while True:
            sql = select + _WINDOW.format(having="AND tasks > 0", order="DESC") + f" LIMIT {int(limit)}"
            rows = self._ch.query_rows(
                sql,
                params
                | {"project": rule.spec.project, "lo": 0, "hi": until_ns, "since": 0, "until": until_ns},
            )
            kept = [c for c in _candidates(rows) if keep(c)]
            if len(kept) >= n or len(rows) < limit:
                return sorted(kept[:n], key=lambda c: (c.start_ns, c.trace_id))
            limit *= 4

    def listed(self, trace_ids: list[str], scope: str, span_ids: list[str]) -> list[Candidate]:
        """The listed traces that are stored; tasks: 1 a trace (trace scope) or its listed (else all) spans."""
        if scope == "trace":
            tasks, chars = "toUInt64(1)", f"sumIf({_IO}, ParentSpanId = '' AND {_NOT_JUDGE})"
        elif span_ids:
            cond = f"{_NOT_JUDGE} AND SpanId IN {{span_ids:Array(String)}}"
            tasks, chars = f"uniqExactIf(SpanId, {cond})", f"sumIf({_IO}, {cond})"
        else:
            tasks, chars = f"uniqExactIf(SpanId, {_NOT_JUDGE})", f"sumIf({_IO}, {_NOT_JUDGE})"
        sql = _SELECT.format(not_judge=_NOT_JUDGE, tasks=tasks, chars=chars) + _LISTED.format()
        return _candidates(self._ch.query_rows(sql, {"trace_ids": trace_ids, "span_ids": span_ids}))
