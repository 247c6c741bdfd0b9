"""`tracejudge demo [--api-url URL] [--seed N]`: load a small realistic dataset into a running service.

Through the public API only: the history of `tracejudge/demo_data.py` (`POST /api/v1/traces`), two rules
with code scorers (`PUT /api/v1/rules`, create or replace by name), a rewind of each so the stored traces get
their scores (`POST /api/v1/rules/{id}/rewind`, then the job is polled to its end), the last minute's traces,
which the rules score live (waited for in `scores`), and a few API scores (thumbs up or down) and annotations (`POST /api/v1/scores`, with fixed score ids). Running it again with the same seed sends
only the traces not stored yet and replaces the rest by id, so it adds nothing twice; another seed adds another
batch. Exit 0 when everything is stored and scored, 1 when the API refused something or a wait ran out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from typing import Any

from tracejudge.cli_follow import FINISHED, Exit, api
from tracejudge.cli_http import DEFAULT_API_URL
from tracejudge.demo_data import AGENT_PROJECT, RAG_PROJECT, DemoData, build

RULES: list[dict[str, Any]] = [
    {
        "name": "answer-cites-source", "project": RAG_PROJECT, "scope": "trace", "sampling_rate": 1.0,
        "description": "The RAG app's answer cites the knowledge-base document it used, and stays short.",
        "filter": "name = 'rag.query'",
        "scorers": [
            {"type": "code", "name": "cites_source", "function": "regex", "args": {"pattern": r"\[kb-\d{3}\]"}},
            {"type": "code", "name": "concise", "function": "length_between", "args": {"min": 1, "max": 160}},
        ],
    },
    {
        "name": "tool-output-json", "project": AGENT_PROJECT, "scope": "span", "sampling_rate": 1.0,
        "description": "Every tool call of the agent returns valid JSON.",
        "span_names": ["tool.get_weather", "tool.convert"],
        "scorers": [{"type": "code", "name": "tool_output_json", "function": "json_valid", "args": {}}],
    },
]  # fmt: skip
REWIND_DAYS = 8


def _sql(args: argparse.Namespace, query: str) -> list[list[Any]]:
    return list(api(args, "POST", "/api/v1/sql", {"query": query})["data"])


def _stored(args: argparse.Namespace, trace_ids: list[str]) -> tuple[set[str], int]:
    """Which of `trace_ids` have spans stored, and how many spans they have."""
    ids = ", ".join(f"'{t}'" for t in trace_ids)
    rows = _sql(args, f"SELECT TraceId, count() FROM otel_traces WHERE TraceId IN ({ids}) GROUP BY TraceId")
    return {str(r[0]) for r in rows}, sum(int(r[1]) for r in rows)


def _wait(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Exit(1, f"error: gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(interval)


def send_traces(args: argparse.Namespace, requests: list[dict[str, Any]]) -> tuple[int, int]:
    """Send the traces of `requests` not stored yet; wait until all their spans are stored. (Sent, stored before.)"""
    spans = [s for r in requests for rs in r["resourceSpans"] for sc in rs["scopeSpans"] for s in sc["spans"]]
    ids = sorted({s["traceId"] for s in spans})
    present, _ = _stored(args, ids)
    for request in requests:
        for resource in request["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                scope["spans"] = [s for s in scope["spans"] if s["traceId"] not in present]
        if any(scope["spans"] for r in request["resourceSpans"] for scope in r["scopeSpans"]):
            api(args, "POST", "/api/v1/traces", request)
    _wait(f"{len(spans)} spans to be stored", lambda: _stored(args, ids)[1] >= len(spans), args.wait)
    return len(ids) - len(present), len(present)


def scored_live(args: argparse.Namespace, trace_ids: list[str]) -> bool:
    """Whether every one of `trace_ids` has a rule's score (the live flow scored it)."""
    ids = ", ".join(f"'{t}'" for t in trace_ids)
    query = f"SELECT uniqExact(TraceId) FROM scores WHERE Source = 'EVAL' AND TraceId IN ({ids})"
    return bool(_sql(args, query)[0][0] >= len(trace_ids))


def apply_rules(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [dict(api(args, "PUT", "/api/v1/rules", rule, ok=(200, 201))) for rule in RULES]


def rewind(args: argparse.Namespace, rule: dict[str, Any]) -> dict[str, Any]:
    """Rewind `rule` over the last REWIND_DAYS days and wait for the job to finish; the finished job."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=REWIND_DAYS)
    body = {"since": since.isoformat(timespec="seconds").replace("+00:00", "Z")}
    job_id = api(args, "POST", f"/api/v1/rules/{rule['id']}/rewind", body, ok=(202,))["job_id"]

    def done() -> dict[str, Any] | None:
        job = api(args, "GET", f"/api/v1/jobs/{job_id}")
        return dict(job) if job["state"] in FINISHED else None

    job: dict[str, Any] = _wait(f"the rewind job {job_id}", done, args.wait)
    if job["state"] != "succeeded":
        raise Exit(1, f"error: the rewind of {rule['name']} ended {job['state']}: {job['last_error']}")
    return job


REVIEWS = {
    "good": (5, "accurate, and cites its source"),
    "uncited": (3, "right answer, but no citation"),
    "failed": (1, "no usable answer"),
}


def feedback(seed: int, data: DemoData) -> list[dict[str, Any]]:
    """Thumbs up/down from the app's users (source API) and a reviewer's annotations (source ANNOTATION), each
    following what happened in the trace (a good answer mostly gets a thumbs up)."""
    scores: list[dict[str, Any]] = []
    for n, trace_id in enumerate(data.rag_traces[:40]):
        up = data.outcomes[trace_id] == "good" and n % 7 != 6
        scores.append({"score_id": f"demo-{seed}-thumbs-{trace_id}", "trace_id": trace_id, "name": "thumbs_up",
                       "value": up, "data_type": "BOOLEAN", "source": "API",
                       "comment": "" if up else "not what I needed"})  # fmt: skip
    for trace_id in data.rag_traces[40:52] + data.agent_traces[:6]:
        rating, note = REVIEWS[data.outcomes[trace_id]]
        scores.append({"score_id": f"demo-{seed}-review-{trace_id}", "trace_id": trace_id, "name": "review",
                       "value": rating, "data_type": "NUMERIC", "source": "ANNOTATION", "comment": note})  # fmt: skip
    return scores


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        return _load(args)
    except Exit as exc:
        print(exc.message, file=sys.stderr)
        return exc.code


def _load(args: argparse.Namespace) -> int:
    data = build(args.seed, time.time_ns())
    print(f"demo (seed {args.seed}): {len(data.rag_traces)} RAG traces ({RAG_PROJECT}) and "
          f"{len(data.agent_traces)} agent traces ({AGENT_PROJECT}), {data.spans} spans, into {args.api_url}")  # fmt: skip
    sent, before = send_traces(args, data.requests)
    print(f"  history: {sent} traces sent, {before} already stored, over the last 7 days")
    for rule in apply_rules(args):
        job = rewind(args, rule)
        c = job["counts"]
        print(f"  rule {rule['project']}/{rule['name']} (id {rule['id']}): rewound {REWIND_DAYS} days, "
              f"{c['matched']} matched, {c['scored']} scores, {c['errors']} errors")  # fmt: skip
    sent, before = send_traces(args, data.live_requests)
    _wait("the rules to score the live traces", lambda: scored_live(args, data.live_traces), args.wait)
    print(f"  live: {sent} traces sent ({before} already stored) and scored by the rules as they closed")
    scores = feedback(args.seed, data)
    api(args, "POST", "/api/v1/scores", scores, ok=(200, 201))
    annotations = sum(1 for s in scores if s["source"] == "ANNOTATION")
    print(f"  scores: {len(scores) - annotations} thumbs up/down (API), {annotations} reviews (ANNOTATION)")
    print(f"open {args.api_url.rstrip('/')}/ to look around")
    return 0


def add_parsers(sub: Any) -> None:
    """Add `demo` to the CLI's subcommands."""
    demo = sub.add_parser("demo", help="load demo traces, rules and scores into a running service")
    demo.add_argument("--api-url", default=os.environ.get("TRACEJUDGE_API_URL", DEFAULT_API_URL))
    demo.add_argument("--seed", type=int, default=1, help="another seed adds another batch (default 1)")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one API answer")
    demo.add_argument("--wait", type=float, default=300.0, help="seconds to wait for storing or a job")
    demo.set_defaults(func=cmd_demo)
