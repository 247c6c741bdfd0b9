"""One score as `POST /api/v1/scores` takes it, checked the same way by the API and by the client.

Standard library only (no pydantic): the client calls `validate_score` in the application's thread for every
`create_score`, so it stays small and cheap. The fields are seed 002's snake_case names plus `project` and
`source`; `validate_score` raises `ScoreInvalid` naming the first bad field and why.

Type rules: NUMERIC takes a finite number (not a bool); BOOLEAN takes true/false or 0/1 (value 1.0/0.0 and
`passed`); CATEGORICAL takes a string (`string_value`). Without `data_type` it is inferred from the value:
bool -> BOOLEAN, number -> NUMERIC, string -> CATEGORICAL. A score names a trace, a session or a dataset run.
`trace_id` is 32 hex digits, `observation_id` 16 (it needs `trace_id`), any case, kept lowercase.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

DATA_TYPES = ("NUMERIC", "BOOLEAN", "CATEGORICAL")
SOURCES = ("API", "ANNOTATION")
MAX_BATCH = 1000
MAX_NAME = 200
MAX_ID = 200
MAX_COMMENT = 10_000

FIELDS = frozenset(
    {
        "name",
        "value",
        "trace_id",
        "observation_id",
        "session_id",
        "dataset_run_id",
        "score_id",
        "data_type",
        "comment",
        "config_id",
        "metadata",
        "timestamp",
        "project",
        "source",
    }
)

_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
# score_id and config_id travel in URL paths (GET/DELETE /api/v1/scores/{score_id}): a safe alphabet.
_KEY_ID = re.compile(r"[A-Za-z0-9._:-]+")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_MIN_YEAR, _MAX_YEAR = 1970, 2262  # what a DateTime64(9) column holds


class ScoreInvalid(ValueError):
    """A score the API refuses. `field` names the offending field (seed 002's snake_case name), `message` why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ValidScore:
    """A score that passed `validate_score`, its values normalised (ids lowercase, timestamp UTC)."""

    score_id: str | None  # None: the server generates one (and returns it)
    name: str
    data_type: str  # NUMERIC | BOOLEAN | CATEGORICAL (inferred from the value when not given)
    value: float | None  # NUMERIC: the number; BOOLEAN: 1.0 / 0.0; CATEGORICAL: None (a config may map it)
    string_value: str  # CATEGORICAL: the label; '' otherwise
    passed: bool | None  # BOOLEAN: the value; None otherwise
    trace_id: str  # 32 lowercase hex digits, or ''
    observation_id: str  # 16 lowercase hex digits, or '' (needs trace_id)
    session_id: str
    dataset_run_id: str
    comment: str
    config_id: str
    metadata: Any  # any JSON value; None when absent
    timestamp: datetime | None  # aware UTC; None: "now" at the server
    project: str  # '': the server decides (the trace's project, else "default")
    source: str  # API (default) | ANNOTATION


def validate_score(doc: Mapping[str, Any]) -> ValidScore:
    """One score object as POST /api/v1/scores takes it (seed 002's snake_case fields plus `project`, `source`);
    raises ScoreInvalid naming the first bad field. Pure and cheap."""
    return ValidScore(**_checked(doc))


def check_score(doc: Mapping[str, Any]) -> None:
    """`validate_score`'s checks without its result: raises ScoreInvalid naming the first bad field. The client
    calls it per `create_score` (building the frozen ValidScore would be a third of the cost)."""
    _checked(doc)


def _checked(doc: Mapping[str, Any]) -> dict[str, Any]:
    """ValidScore's fields of a valid `doc`; ScoreInvalid naming the first bad field."""
    if type(doc) is not dict and not isinstance(doc, Mapping):
        _refuse("body", "a score must be a JSON object")
    if not FIELDS.issuperset(doc):
        _refuse(sorted(str(k) for k in doc if k not in FIELDS)[0], "unknown field")
    name = _text(doc, "name", MAX_NAME, required=True)
    data_type, value, string_value, passed = _typed_value(doc)
    trace_id = _hex_id(doc, "trace_id", _TRACE_ID, 32)
    observation_id = _hex_id(doc, "observation_id", _SPAN_ID, 16)
    if observation_id and not trace_id:
        _refuse("observation_id", "needs trace_id (the trace the span belongs to)")
    session_id = _text(doc, "session_id", MAX_ID)
    dataset_run_id = _text(doc, "dataset_run_id", MAX_ID)
    if not (trace_id or session_id or dataset_run_id):
        _refuse("trace_id", "a score names a trace_id, a session_id or a dataset_run_id")
    score_id = _key_id(doc, "score_id")
    return {
        "score_id": score_id or None,
        "name": name,
        "data_type": data_type,
        "value": value,
        "string_value": string_value,
        "passed": passed,
        "trace_id": trace_id,
        "observation_id": observation_id,
        "session_id": session_id,
        "dataset_run_id": dataset_run_id,
        "comment": _text(doc, "comment", MAX_COMMENT, allow_empty=True),
        "config_id": _key_id(doc, "config_id"),
        "metadata": doc.get("metadata"),
        "timestamp": _timestamp(doc.get("timestamp")),
        "project": _text(doc, "project", MAX_NAME),
        "source": _choice(doc, "source", SOURCES) or "API",
    }


def score_body(**fields: Any) -> dict[str, Any]:
    """create_score's keyword arguments -> the JSON object POST /api/v1/scores takes: None values dropped, a
    datetime `timestamp` as RFC 3339 UTC. Does not validate (call validate_score on the result)."""
    body = {k: v for k, v in fields.items() if v is not None}
    ts = body.get("timestamp")
    if isinstance(ts, datetime):
        # A naive datetime keeps no offset, and validate_score refuses it (which zone was meant is unknown).
        body["timestamp"] = rfc3339(ts) if ts.tzinfo is not None else ts.isoformat(timespec="microseconds")
    return body


def rfc3339(ts: datetime) -> str:
    """An aware datetime as RFC 3339 UTC with microseconds (``2026-12-04T21:10:44.123456Z``)."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _refuse(field: str, message: str) -> NoReturn:
    raise ScoreInvalid(field, message)


def _typed_value(doc: Mapping[str, Any]) -> tuple[str, float | None, str, bool | None]:
    """(data_type, value, string_value, passed) by the type rules."""
    raw = doc.get("value")
    if raw is None:
        _refuse("value", "is required")
    data_type = _choice(doc, "data_type", DATA_TYPES) or _inferred(raw)
    if data_type == "NUMERIC":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            _refuse("value", f"a NUMERIC score takes a number, not {_kind(raw)}")
        try:
            number = float(raw)
        except OverflowError:  # an int beyond a float's range
            number = math.inf
        if not math.isfinite(number):
            _refuse("value", "a NUMERIC score takes a finite number")
        return data_type, number, "", None
    if data_type == "BOOLEAN":
        if isinstance(raw, bool):
            return data_type, float(raw), "", raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return data_type, float(raw), "", raw == 1
        _refuse("value", "a BOOLEAN score takes true/false or 0/1")
    if not isinstance(raw, str):
        _refuse("value", f"a CATEGORICAL score takes a string, not {_kind(raw)}")
    if not raw or len(raw) > MAX_NAME:
        _refuse("value", f"a CATEGORICAL score takes 1 to {MAX_NAME} characters")
    return data_type, None, raw, None


def _inferred(raw: Any) -> str:
    if isinstance(raw, bool):
        return "BOOLEAN"
    if isinstance(raw, int | float):
        return "NUMERIC"
    if isinstance(raw, str):
        return "CATEGORICAL"
    _refuse("value", f"takes a number, a bool or a string, not {_kind(raw)}")


def _kind(raw: Any) -> str:
    names = {bool: "a bool", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(raw), "a number" if isinstance(raw, int | float) else type(raw).__name__)


def _text(
    doc: Mapping[str, Any], field: str, limit: int, *, required: bool = False, allow_empty: bool = False
) -> str:
    raw = doc.get(field)
    if raw is None:
        if required:
            _refuse(field, "is required")
        return ""
    if not isinstance(raw, str):
        _refuse(field, f"must be a string, not {_kind(raw)}")
    if len(raw) > limit:
        _refuse(field, f"must be at most {limit} characters")
    if not raw.strip() and not allow_empty:
        _refuse(field, "must not be empty")
    return raw


def _hex_id(doc: Mapping[str, Any], field: str, shape: re.Pattern[str], digits: int) -> str:
    raw = doc.get(field)
    if raw is None:
        return ""
    if not isinstance(raw, str) or shape.fullmatch(raw) is None:
        _refuse(field, f"must be {digits} hex digits")
    return raw.lower()


def _key_id(doc: Mapping[str, Any], field: str) -> str:
    raw = doc.get(field)
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_ID or _KEY_ID.fullmatch(raw) is None:
        _refuse(field, f"must be 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ : -")
    return raw


def _choice(doc: Mapping[str, Any], field: str, choices: tuple[str, ...]) -> str:
    raw = doc.get(field)
    if raw is None:
        return ""
    if raw not in choices:
        _refuse(field, f"must be one of {', '.join(choices)}")
    return str(raw)


def _timestamp(raw: Any) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, datetime):
        ts = raw
    elif isinstance(raw, str) and _RFC3339.fullmatch(raw):
        try:
            ts = datetime.fromisoformat(raw.upper())
        except ValueError as exc:
            _refuse("timestamp", f"is not a valid date and time ({exc})")
    else:
        _refuse("timestamp", "must be an RFC 3339 date and time with an offset")
    if ts.tzinfo is None or ts.utcoffset() is None:
        _refuse("timestamp", "needs a UTC offset (an aware datetime)")
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved past the calendar's end by its offset
        _refuse("timestamp", f"must be between {_MIN_YEAR} and {_MAX_YEAR}")
    if not _MIN_YEAR <= ts.year < _MAX_YEAR:
        _refuse("timestamp", f"must be between {_MIN_YEAR} and {_MAX_YEAR}")
    return ts
