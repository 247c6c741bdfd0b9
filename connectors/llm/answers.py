"""The answer a judge must give, and reading it: the JSON schema of `{rationale, score}` or
`{rationale, choice}`, the merge of request parameters, and the validation of a provider's structured answer
into a `JudgeAnswer` (JudgeBadResponse when it does not fit). Provider-independent; the SDK clients use it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dataflow.errors import JudgeBadResponse
from dataflow.judging.client import JudgeAnswer, JudgeRequest
from dataflow.judging.connections import ConnectionSpec

RAW_LIMIT = 4096  # characters of the structured answer kept in JudgeAnswer.raw
SNIPPET_LIMIT = 300  # characters of a bad answer or error body quoted in an error message
SCORE_TOLERANCE = 1e-9  # a score this far outside [min, max] is clamped, not refused
SCHEMA_NAME_SCORE = "judge_score"
SCHEMA_NAME_CHOICE = "judge_choice"
TOOL_NAME = "submit_score"

# Never taken from params, whatever the protocol: the client owns them.
ALWAYS_RESERVED = frozenset(
    {"timeout", "extra_headers", "extra_query", "extra_body", "stream", "stream_options"}
)


def answer_schema(request: JudgeRequest) -> dict[str, Any]:
    """The JSON schema of the answer: `{rationale, score}` or `{rationale, choice}`, both required.

    The rationale comes first so that a model writing in order reasons before it commits to a verdict.
    The schema stays inside OpenAI's strict subset (no extra keys, every property required).
    """
    rationale = {"type": "string", "description": "One or two sentences explaining the verdict."}
    verdict: dict[str, Any]
    if request.choices:
        key = "choice"
        verdict = {"type": "string", "enum": list(request.choices), "description": "The label that applies."}
    else:
        key = "score"
        verdict = {
            "type": "number",
            "minimum": request.min_score,
            "maximum": request.max_score,
            "description": f"The score, from {request.min_score:g} (worst) to {request.max_score:g} (best).",
        }
    return {
        "type": "object",
        "properties": {"rationale": rationale, key: verdict},
        "required": ["rationale", key],
        "additionalProperties": False,
    }


def schema_name(request: JudgeRequest) -> str:
    return SCHEMA_NAME_CHOICE if request.choices else SCHEMA_NAME_SCORE


def call_params(spec: ConnectionSpec, request: JudgeRequest, reserved: Iterable[str]) -> dict[str, Any]:
    """`spec.params` then `request.params`, without the keys the client sets itself (model, messages, format)."""
    blocked = ALWAYS_RESERVED | frozenset(reserved)
    merged = {**spec.params, **request.params}
    return {k: v for k, v in merged.items() if k not in blocked}


# ---- answers ----------------------------------------------------------------------------------------------


def who(spec: ConnectionSpec) -> str:
    return f"connection {spec.name!r} ({spec.provider} {spec.protocol}, model {spec.model})"


def snippet(text: object, limit: int = SNIPPET_LIMIT) -> str:
    s = text if isinstance(text, str) else repr(text)
    s = s.strip()
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


def truncate_raw(text: str) -> str:
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT]


_FENCE_RE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def _loads_object(text: str) -> object:
    """JSON of the answer text; a Markdown code fence around it (endpoints without strict formats) is allowed."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        fenced = _FENCE_RE.match(stripped)
        if fenced is None:
            raise
        return json.loads(fenced.group(1))


def bad_answer(spec: ConnectionSpec, problem: str, got: object) -> JudgeBadResponse:
    return JudgeBadResponse(f"{who(spec)}: {problem}; got: {snippet(got) if got != '' else '(empty)'}")


def parse_answer(
    spec: ConnectionSpec,
    request: JudgeRequest,
    payload: str | Mapping[str, Any],
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    note: str = "",
) -> JudgeAnswer:
    """Validate a structured answer (JSON text, or an already decoded object such as a tool input).

    `note` is added to the message of a refusal (e.g. "the answer was cut off at max_tokens").
    """
    raw = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
    suffix = f" ({note})" if note else ""
    obj: object
    if isinstance(payload, str):
        if not payload.strip():
            raise bad_answer(spec, f"the answer is empty{suffix}", raw)
        try:
            obj = _loads_object(payload)
        except ValueError as exc:
            raise bad_answer(spec, f"the answer is not JSON ({exc}){suffix}", raw) from None
    else:
        obj = payload
    if not isinstance(obj, Mapping):
        raise bad_answer(spec, f"the answer is not a JSON object{suffix}", raw)

    rationale = obj.get("rationale")
    if not isinstance(rationale, str):
        problem = "'rationale' is missing" if rationale is None else "'rationale' is not a string"
        raise bad_answer(spec, problem + suffix, raw)

    score: float | None = None
    choice: str | None = None
    if request.choices:
        got = obj.get("choice")
        if got is None:
            raise bad_answer(spec, f"'choice' is missing{suffix}", raw)
        choice = _match_choice(got, request.choices)
        if choice is None:
            raise bad_answer(spec, f"choice {got!r} is not one of {list(request.choices)}{suffix}", raw)
    else:
        got = obj.get("score")
        if got is None:
            raise bad_answer(spec, f"'score' is missing{suffix}", raw)
        if isinstance(got, bool) or not isinstance(got, int | float):
            raise bad_answer(spec, f"score {got!r} is not a number{suffix}", raw)
        value = float(got)
        lo, hi = request.min_score, request.max_score
        if not math.isfinite(value):
            raise bad_answer(spec, f"score {got!r} is not finite{suffix}", raw)
        if value < lo - SCORE_TOLERANCE or value > hi + SCORE_TOLERANCE:
            raise bad_answer(spec, f"score {got!r} is outside [{lo:g}, {hi:g}]{suffix}", raw)
        score = float(min(hi, max(lo, value)))

    return JudgeAnswer(
        score=score,
        choice=choice,
        rationale=rationale,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=model or spec.model,
        raw=truncate_raw(raw),
    )


def _match_choice(got: object, labels: tuple[str, ...]) -> str | None:
    """The label `got` names: exactly, else ignoring case and surrounding blanks when that is unambiguous."""
    if not isinstance(got, str):
        return None
    if got in labels:
        return got
    folded = [label for label in labels if label.strip().casefold() == got.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def text_body_error(spec: ConnectionSpec, body: str) -> JudgeBadResponse:
    """A 2xx whose body is not JSON at all (e.g. a proxy's HTML page): the SDKs return it as a plain str."""
    return bad_answer(spec, "HTTP 200 but the body is not an API response (not JSON)", body)


def as_int(value: object) -> int:
    """A token count from a usage object (None or missing on some OpenAI-compatible servers)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
