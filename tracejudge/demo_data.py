"""The demo dataset of `tracejudge demo`: traces of a tiny RAG app and of a tool-using agent, as OTLP/JSON.

Pure and deterministic for a seed and a `now`: the same seed gives the same trace ids, texts, errors and
sessions; times are ages before `now` (most within the last 24 h, some up to 7 days back, so charts have a
previous period). RAG traces are `rag.query` -> `retrieve` (documents as OpenInference attributes) -> `llm.chat`
(chat messages as input); agent traces are `agent.run` -> `llm.chat` -> one or two `tool.*` calls -> `llm.chat`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

RAG_PROJECT = "demo-rag"
AGENT_PROJECT = "demo-agent"
MS = 1_000_000
HOUR_NS = 3600 * 10**9

DOCS = [
    ("kb-001", "Refunds", "Orders can be refunded within 30 days of delivery from the Orders page."),
    ("kb-002", "Shipping", "Standard shipping takes 3 to 5 business days; express takes 1 to 2."),
    ("kb-003", "Passwords", "Reset a password from Settings > Security; the link is valid for 1 hour."),
    ("kb-004", "Invoices", "Invoices are emailed on the 1st of each month and listed under Billing."),
    ("kb-005", "API limits", "The API allows 600 requests per minute per key; bursts up to 100 per second."),
    ("kb-006", "Data export", "Admins can export all workspace data as CSV from Settings > Export."),
    ("kb-007", "SSO", "Single sign-on supports SAML 2.0 and OIDC on the Business plan."),
    ("kb-008", "Deleting an account", "Deleting an account removes its data after a 14-day grace period."),
]
QUESTIONS = [
    ("How do I get a refund?", 0),
    ("How long does shipping take?", 1),
    ("I forgot my password, what now?", 2),
    ("Where can I find my invoices?", 3),
    ("What are the API rate limits?", 4),
    ("Can I export my data?", 5),
    ("Do you support SAML single sign-on?", 6),
    ("What happens when I delete my account?", 7),
]
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Nairobi", "Toronto", "Sydney", "Madrid"]
SYSTEM_RAG = "Answer from the documents only. Cite the document id you used as [kb-NNN]."


@dataclass(frozen=True)
class DemoData:
    """The requests to send and the trace ids the demo's API scores and annotations go to."""

    requests: list[dict[str, Any]]  # the history: sent before the rules exist, scored by a rewind
    live_requests: list[dict[str, Any]]  # the last minute: sent after, scored live by the rules
    rag_traces: list[str] = field(default_factory=list)
    agent_traces: list[str] = field(default_factory=list)
    live_traces: list[str] = field(default_factory=list)
    spans: int = 0
    live_spans: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)  # trace id: "good", "uncited" or "failed"


def _kv(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in attributes.items():
        if isinstance(value, bool):
            out.append({"key": key, "value": {"boolValue": value}})
        elif isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})
        elif isinstance(value, float):
            out.append({"key": key, "value": {"doubleValue": value}})
        else:
            out.append({"key": key, "value": {"stringValue": str(value)}})
    return out


@dataclass
class _Trace:
    """Spans of one trace under construction; ids come from the generator's random stream."""

    rng: random.Random
    trace_id: str
    start_ns: int
    session: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "good"

    def span(self, name: str, parent: str, offset_ms: int, dur_ms: int, attrs: dict[str, Any],
             error: str = "") -> str:  # fmt: skip
        span_id = f"{self.rng.getrandbits(64) | 1:016x}"
        start = self.start_ns + offset_ms * MS
        self.spans.append({
            "traceId": self.trace_id, "spanId": span_id, "parentSpanId": parent, "name": name,
            "kind": 3 if name.startswith(("llm", "tool")) else 1,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + dur_ms * MS),
            "attributes": _kv({"session.id": self.session, **attrs}),
            "status": {"code": 2, "message": error} if error else {"code": 0},
        })  # fmt: skip
        return span_id


def _chat(*messages: tuple[str, str]) -> str:
    return json.dumps([{"role": role, "content": content} for role, content in messages])


def _llm_attrs(model: str, messages: str, answer: str, rng: random.Random) -> dict[str, Any]:
    return {
        "gen_ai.system": "openai", "gen_ai.request.model": model, "gen_ai.input.messages": messages,
        "gen_ai.output.messages": _chat(("assistant", answer)),
        "gen_ai.usage.input_tokens": 40 + len(messages) // 4 + rng.randint(0, 30),
        "gen_ai.usage.output_tokens": 8 + len(answer) // 4 + rng.randint(0, 10),
    }  # fmt: skip


def _rag(t: _Trace, rng: random.Random) -> None:
    question, right = rng.choice(QUESTIONS)
    hits = [right, *rng.sample([i for i in range(len(DOCS)) if i != right], 2)]
    root = t.span("rag.query", "", 0, 0, {"input.value": question})
    docs: dict[str, Any] = {"retrieval.query": question}
    for n, i in enumerate(hits):
        doc_id, title, text = DOCS[i]
        docs |= {f"retrieval.documents.{n}.document.id": doc_id, f"retrieval.documents.{n}.document.content": text,
                 f"retrieval.documents.{n}.document.score": round(0.9 - 0.15 * n - rng.random() * 0.1, 3),
                 f"retrieval.documents.{n}.document.metadata": json.dumps({"title": title})}  # fmt: skip
    retrieve_ms = rng.randint(20, 140)
    t.span("retrieve", root, 2, retrieve_ms, docs | {"output.value": ", ".join(DOCS[i][0] for i in hits)})
    doc_id, _, text = DOCS[right]
    roll = rng.random()
    if roll < 0.06:
        answer, error, t.outcome = "", "openai.APITimeoutError: Request timed out after 30s", "failed"
    elif roll < 0.25:
        answer, error, t.outcome = f"{text.split(';')[0]}.", "", "uncited"  # forgets the citation
    else:
        answer, error = f"{text} [{doc_id}]", ""
    context = "\n".join(f"[{DOCS[i][0]}] {DOCS[i][2]}" for i in hits)
    messages = _chat(("system", SYSTEM_RAG), ("user", f"Documents:\n{context}\n\nQuestion: {question}"))
    llm_ms = 30000 if error else rng.randint(400, 2600)
    t.span("llm.chat", root, 4 + retrieve_ms, llm_ms, _llm_attrs("gpt-4o-mini", messages, answer, rng), error)
    root_span = t.spans[0]
    root_span["endTimeUnixNano"] = str(t.start_ns + (6 + retrieve_ms + llm_ms) * MS)
    root_span["attributes"] += _kv({"output.value": answer} if answer else {})
    if error:
        root_span["status"] = {"code": 2, "message": error}


def _agent(t: _Trace, rng: random.Random) -> None:
    city = rng.choice(CITIES)
    question = f"Should I pack an umbrella for {city} tomorrow? Convert the high to Fahrenheit too."
    root = t.span("agent.run", "", 0, 0, {"input.value": question, "agent.name": "trip-helper"})
    first = _chat(("system", "You can call get_weather(city) and convert(celsius)."), ("user", question))
    call = json.dumps({"tool": "get_weather", "arguments": {"city": city}})
    t.span("llm.chat", root, 3, rng.randint(300, 900), _llm_attrs("gpt-4o", first, call, rng))
    at = 1000
    high, rain = rng.randint(4, 31), rng.randint(0, 100)
    roll = rng.random()
    broken = roll < 0.08
    t.outcome = "failed" if broken else "good"
    weather = f"weather service returned HTML for {city}" if broken else json.dumps({"city": city, "high_c": high, "rain_pct": rain})  # fmt: skip
    error = "ValueError: weather payload is not JSON" if broken else ""
    dur = rng.randint(80, 400)
    t.span("tool.get_weather", root, at, dur, {"tool.name": "get_weather", "input.value": json.dumps({"city": city}),
                                               "output.value": weather}, error)  # fmt: skip
    at += dur + 5
    if not broken and rng.random() < 0.7:
        dur = rng.randint(5, 40)
        t.span("tool.convert", root, at, dur, {"tool.name": "convert", "input.value": json.dumps({"celsius": high}),
                                               "output.value": json.dumps({"fahrenheit": round(high * 9 / 5 + 32)})})  # fmt: skip
        at += dur + 5
    if broken:
        answer = "Sorry, I could not get the weather right now."
    else:
        answer = f"{'Yes, pack an umbrella' if rain > 50 else 'No umbrella needed'}: {city} expects {high} C ({round(high * 9 / 5 + 32)} F) with {rain}% rain."  # fmt: skip
    dur = rng.randint(400, 1800)
    t.span("llm.chat", root, at, dur, _llm_attrs("gpt-4o", _chat(("tool", weather)), answer, rng))
    root_span = t.spans[0]
    root_span["endTimeUnixNano"] = str(t.start_ns + (at + dur + 3) * MS)
    root_span["attributes"] += _kv({"output.value": answer})
    if broken:
        root_span["status"] = {"code": 2, "message": error}


def _age_ns(rng: random.Random) -> int:
    """Most traces in the last 24 h, a fifth from 1 to 7 days back."""
    hours = rng.uniform(24, 24 * 7) if rng.random() < 0.2 else rng.uniform(0.05, 24)
    return int(hours * HOUR_NS)


def _requests(traces: dict[str, list[_Trace]], batch: int) -> list[dict[str, Any]]:
    requests = []
    for project, items in traces.items():
        resource = _kv(
            {"service.name": project, "tracejudge.project": project, "deployment.environment": "demo"}
        )
        for i in range(0, len(items), batch):
            spans = [s for t in items[i : i + batch] for s in t.spans]
            requests.append({"resourceSpans": [{"resource": {"attributes": resource},
                                                 "scopeSpans": [{"scope": {"name": "tracejudge.demo"}, "spans": spans}]}]})  # fmt: skip
    return requests


def build(
    seed: int, now_ns: int, rag: int = 200, agent: int = 100, batch: int = 50, live: float = 0.1
) -> DemoData:
    """`rag` RAG traces and `agent` agent traces, in OTLP/JSON requests of at most `batch` traces each; the last
    `live` share of each started in the last minute."""
    rng = random.Random(seed)
    traces: dict[str, list[_Trace]] = {RAG_PROJECT: [], AGENT_PROJECT: []}
    lives: dict[str, list[_Trace]] = {RAG_PROJECT: [], AGENT_PROJECT: []}
    for project, count, make, prefix in (
        (RAG_PROJECT, rag, _rag, "rag"),
        (AGENT_PROJECT, agent, _agent, "agt"),
    ):
        sessions = [f"{prefix}-session-{seed}-{n:03d}" for n in range(max(1, count // 4))]
        for n in range(count):
            recent = n >= count - round(count * live)
            age = rng.randrange(60 * 10**9) if recent else _age_ns(rng)
            t = _Trace(rng, f"{rng.getrandbits(128) | 1:032x}", now_ns - age, rng.choice(sessions))
            make(t, rng)
            (lives if recent else traces)[project].append(t)
    return DemoData(
        requests=_requests(traces, batch),
        live_requests=_requests(lives, batch),
        rag_traces=[t.trace_id for t in traces[RAG_PROJECT] + lives[RAG_PROJECT]],
        agent_traces=[t.trace_id for t in traces[AGENT_PROJECT] + lives[AGENT_PROJECT]],
        live_traces=[t.trace_id for items in lives.values() for t in items],
        spans=sum(len(t.spans) for group in (traces, lives) for items in group.values() for t in items),
        live_spans=sum(len(t.spans) for items in lives.values() for t in items),
        outcomes={
            t.trace_id: t.outcome for group in (traces, lives) for items in group.values() for t in items
        },
    )
