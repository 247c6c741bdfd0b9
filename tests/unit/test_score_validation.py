"""tracejudge_client.validation: every field of a score, the type rules, inference, id shapes, and each error's
field and message (the API and the client share this code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tracejudge_client.validation import (
    MAX_ID,
    MAX_NAME,
    ScoreInvalid,
    ValidScore,
    check_score,
    score_body,
    validate_score,
)

TRACE = "ABCDEF1234567890abcdef1234567890"
SPAN = "ABCDEF1234567890"


def valid(**fields: Any) -> ValidScore:
    return validate_score({"name": "accuracy", "value": 0.5, "trace_id": TRACE} | fields)


def refused(doc: dict[str, Any]) -> ScoreInvalid:
    """The error validate_score raises; check_score (the client's) raises the same."""
    with pytest.raises(ScoreInvalid) as info:
        validate_score(doc)
    assert str(info.value) == f"{info.value.field}: {info.value.message}"
    with pytest.raises(ScoreInvalid) as checked:
        check_score(doc)
    assert str(checked.value) == str(info.value)
    return info.value


def refused_with(**fields: Any) -> ScoreInvalid:
    return refused({"name": "accuracy", "value": 0.5, "trace_id": TRACE} | fields)


def test_a_minimal_score_gets_the_defaults() -> None:
    s = valid()
    assert s == ValidScore(
        score_id=None,
        name="accuracy",
        data_type="NUMERIC",
        value=0.5,
        string_value="",
        passed=None,
        trace_id=TRACE.lower(),
        observation_id="",
        session_id="",
        dataset_run_id="",
        comment="",
        config_id="",
        metadata=None,
        timestamp=None,
        project="",
        source="API",
    )


def test_every_field_is_kept() -> None:
    s = valid(
        observation_id=SPAN,
        session_id="sess-1",
        dataset_run_id="run 7",
        score_id="s-1:a.b_c",
        data_type="NUMERIC",
        comment="fine",
        config_id="cfg-1",
        metadata={"k": [1, "two", None]},
        timestamp="2026-03-01T10:00:00.250+02:00",
        project="shop",
        source="ANNOTATION",
    )
    assert (s.observation_id, s.session_id, s.dataset_run_id) == (SPAN.lower(), "sess-1", "run 7")
    assert (s.score_id, s.comment, s.config_id, s.project, s.source) == (
        "s-1:a.b_c",
        "fine",
        "cfg-1",
        "shop",
        "ANNOTATION",
    )
    assert s.metadata == {"k": [1, "two", None]}
    assert s.timestamp == datetime(2026, 3, 1, 8, 0, 0, 250_000, tzinfo=UTC)
    assert s.timestamp is not None and s.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "data_type", "number", "label", "passed"),
    [
        (0.25, "NUMERIC", 0.25, "", None),
        (3, "NUMERIC", 3.0, "", None),
        (-1e9, "NUMERIC", -1e9, "", None),
        (True, "BOOLEAN", 1.0, "", True),
        (False, "BOOLEAN", 0.0, "", False),
        (1, "BOOLEAN", 1.0, "", True),
        (0, "BOOLEAN", 0.0, "", False),
        (1.0, "BOOLEAN", 1.0, "", True),
        ("positive", "CATEGORICAL", None, "positive", None),
    ],
)
def test_type_rules(
    value: Any, data_type: str, number: float | None, label: str, passed: bool | None
) -> None:
    s = valid(value=value, data_type=data_type)
    assert (s.data_type, s.value, s.string_value, s.passed) == (data_type, number, label, passed)


@pytest.mark.parametrize(
    ("value", "data_type", "number", "label", "passed"),
    [
        (True, "BOOLEAN", 1.0, "", True),
        (False, "BOOLEAN", 0.0, "", False),
        (0.9, "NUMERIC", 0.9, "", None),
        (1, "NUMERIC", 1.0, "", None),
        ("good", "CATEGORICAL", None, "good", None),
    ],
)
def test_data_type_is_inferred_from_the_value(
    value: Any, data_type: str, number: float | None, label: str, passed: bool | None
) -> None:
    s = valid(value=value)
    assert (s.data_type, s.value, s.string_value, s.passed) == (data_type, number, label, passed)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"value": True, "data_type": "NUMERIC"}, "value", "a NUMERIC score takes a number, not a bool"),
        ({"value": "0.5", "data_type": "NUMERIC"}, "value", "a NUMERIC score takes a number, not a string"),
        ({"value": float("nan")}, "value", "a NUMERIC score takes a finite number"),
        ({"value": float("inf"), "data_type": "NUMERIC"}, "value", "a NUMERIC score takes a finite number"),
        ({"value": 10**400}, "value", "a NUMERIC score takes a finite number"),  # beyond a float: not a 500
        ({"value": 0.5, "data_type": "BOOLEAN"}, "value", "a BOOLEAN score takes true/false or 0/1"),
        ({"value": 2, "data_type": "BOOLEAN"}, "value", "a BOOLEAN score takes true/false or 0/1"),
        ({"value": "true", "data_type": "BOOLEAN"}, "value", "a BOOLEAN score takes true/false or 0/1"),
        (
            {"value": 1, "data_type": "CATEGORICAL"},
            "value",
            "a CATEGORICAL score takes a string, not a number",
        ),
        ({"value": ""}, "value", f"a CATEGORICAL score takes 1 to {MAX_NAME} characters"),
        ({"value": "x" * (MAX_NAME + 1)}, "value", f"a CATEGORICAL score takes 1 to {MAX_NAME} characters"),
        ({"value": [1]}, "value", "takes a number, a bool or a string, not a list"),
        ({"value": {"a": 1}}, "value", "takes a number, a bool or a string, not an object"),
        ({"value": None}, "value", "is required"),
        ({"data_type": "numeric"}, "data_type", "must be one of NUMERIC, BOOLEAN, CATEGORICAL"),
        ({"data_type": 1}, "data_type", "must be one of NUMERIC, BOOLEAN, CATEGORICAL"),
        ({"name": None}, "name", "is required"),
        ({"name": ""}, "name", "must not be empty"),
        ({"name": "  "}, "name", "must not be empty"),
        ({"name": "n" * (MAX_NAME + 1)}, "name", f"must be at most {MAX_NAME} characters"),
        ({"name": 5}, "name", "must be a string, not a number"),
        ({"trace_id": "abc"}, "trace_id", "must be 32 hex digits"),
        ({"trace_id": "g" * 32}, "trace_id", "must be 32 hex digits"),
        ({"trace_id": TRACE + "0"}, "trace_id", "must be 32 hex digits"),
        ({"trace_id": 12}, "trace_id", "must be 32 hex digits"),
        ({"observation_id": "abc"}, "observation_id", "must be 16 hex digits"),
        ({"observation_id": TRACE}, "observation_id", "must be 16 hex digits"),
        ({"session_id": ""}, "session_id", "must not be empty"),
        ({"session_id": 3}, "session_id", "must be a string, not a number"),
        ({"dataset_run_id": "r" * (MAX_ID + 1)}, "dataset_run_id", f"must be at most {MAX_ID} characters"),
        ({"score_id": "a/b"}, "score_id", f"must be 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ : -"),
        ({"score_id": ""}, "score_id", f"must be 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ : -"),
        (
            {"score_id": "s" * (MAX_ID + 1)},
            "score_id",
            f"must be 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ : -",
        ),
        ({"config_id": "a b"}, "config_id", f"must be 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ : -"),
        ({"comment": 1}, "comment", "must be a string, not a number"),
        ({"comment": "c" * 10_001}, "comment", "must be at most 10000 characters"),
        ({"project": ""}, "project", "must not be empty"),
        ({"source": "RULE"}, "source", "must be one of API, ANNOTATION"),
        ({"timestamp": "2026-03-01"}, "timestamp", "must be an RFC 3339 date and time with an offset"),
        (
            {"timestamp": "2026-03-01T10:00:00"},
            "timestamp",
            "must be an RFC 3339 date and time with an offset",
        ),
        ({"timestamp": 1767225600}, "timestamp", "must be an RFC 3339 date and time with an offset"),
        ({"timestamp": datetime(2026, 3, 1)}, "timestamp", "needs a UTC offset (an aware datetime)"),
        ({"timestamp": "1969-12-31T23:59:59Z"}, "timestamp", "must be between 1970 and 2262"),
        ({"timestamp": "0001-01-01T00:30:00+01:00"}, "timestamp", "must be between 1970 and 2262"),
        ({"timestamp": "9999-12-31T23:59:59-01:00"}, "timestamp", "must be between 1970 and 2262"),
        ({"traceId": TRACE}, "traceId", "unknown field"),
    ],
)
def test_each_error_names_its_field(fields: dict[str, Any], field: str, message: str) -> None:
    err = refused_with(**fields)
    assert (err.field, err.message) == (field, message)


def test_an_impossible_date_is_refused() -> None:
    err = refused_with(timestamp="2026-02-30T10:00:00Z")
    assert err.field == "timestamp"
    assert err.message.startswith("is not a valid date and time")


def test_a_score_names_a_trace_a_session_or_a_dataset_run() -> None:
    err = refused({"name": "n", "value": 1})
    assert (err.field, err.message) == (
        "trace_id",
        "a score names a trace_id, a session_id or a dataset_run_id",
    )
    assert validate_score({"name": "n", "value": 1, "session_id": "s"}).session_id == "s"
    assert validate_score({"name": "n", "value": 1, "dataset_run_id": "r"}).dataset_run_id == "r"


def test_observation_id_needs_trace_id() -> None:
    err = refused({"name": "n", "value": 1, "session_id": "s", "observation_id": SPAN})
    assert (err.field, err.message) == ("observation_id", "needs trace_id (the trace the span belongs to)")


def test_not_an_object() -> None:
    err = refused([1, 2])  # type: ignore[arg-type]
    assert (err.field, err.message) == ("body", "a score must be a JSON object")


def test_the_first_bad_field_is_named() -> None:
    err = refused({"name": "", "value": None, "trace_id": "x"})
    assert err.field == "name"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01t10:00:00z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01 10:00:00-05:30", datetime(2026, 3, 1, 15, 30, tzinfo=UTC)),
        ("2026-03-01T10:00:00.123456789+00:00", datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_are_stored_utc(text: str, expected: datetime) -> None:
    assert valid(timestamp=text).timestamp == expected


def test_an_aware_datetime_is_taken_as_is() -> None:
    ts = datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert valid(timestamp=ts).timestamp == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_score_body_drops_none_and_writes_the_timestamp_as_rfc3339_utc() -> None:
    ts = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    body = score_body(name="n", value=1, trace_id=TRACE, comment=None, timestamp=ts, metadata={"a": None})
    assert body == {
        "name": "n",
        "value": 1,
        "trace_id": TRACE,
        "timestamp": "2026-03-01T10:00:00.000005Z",
        "metadata": {"a": None},
    }
    assert validate_score(body).timestamp == datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC)


def test_score_body_keeps_a_naive_datetime_naive_so_validation_refuses_it() -> None:
    body = score_body(name="n", value=1, trace_id=TRACE, timestamp=datetime(2026, 3, 1, 12))
    assert body["timestamp"] == "2026-03-01T12:00:00.000000"
    assert refused(body).field == "timestamp"
