"""Decode and normalisation, one fixture per case (tests/testdata/otlp/)."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from connectors.otlp.builder import with_project
from connectors.otlp.decode import DecodedRequest, decode_json, decode_protobuf
from connectors.otlp.ingest import normalizer_from
from dataflow.config import IngestConfig
from dataflow.errors import DecodeError
from dataflow.model import SPAN_SCHEMA

FIXTURES = Path(__file__).resolve().parents[1] / "testdata" / "otlp"
NOW = 1_800_000_000_000_000_000
NORM = normalizer_from(IngestConfig())


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(name: str) -> DecodedRequest:
    return decode_json(load(name), NORM, NOW)


def rows(result: DecodedRequest) -> list[dict[str, Any]]:
    assert result.batch is not None
    return pa.Table.from_batches([result.batch]).to_pylist()


def _id_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b"\x01\x02\x03"  # not hex: protobuf cannot carry it, so give it a wrong length instead


def to_protobuf(doc: dict[str, Any]) -> bytes:
    """OTLP/JSON -> protobuf through protobuf's own JSON parser (ids: hex -> base64, enums by name ok)."""
    doc = json.loads(json.dumps(doc))
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if sp.get(key):
                        sp[key] = base64.b64encode(_id_bytes(sp[key])).decode()
                for ln in sp.get("links", []):
                    for key in ("traceId", "spanId"):
                        ln[key] = base64.b64encode(bytes.fromhex(ln[key])).decode()
    msg = json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    return msg.SerializeToString()


# --- JSON variants --------------------------------------------------------------------------------------------


def test_uppercase_hex_ids_are_read_case_insensitively() -> None:
    (row,) = rows(decode("json_uppercase_hex_ids.json"))
    assert row["TraceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert row["SpanId"] == "b7ad6b7169203331"


@pytest.mark.parametrize("name", ["json_int64_as_numbers.json", "json_int64_as_strings.json"])
def test_int64_as_strings_or_numbers(name: str) -> None:
    (row,) = rows(decode(name))
    assert row["Timestamp"].value == 1_700_000_000_000_000_000  # type: ignore[union-attr]
    assert row["Duration"] == 2_000_000_000
    assert dict(row["SpanAttributes"])["tokens"] == "42"


@pytest.mark.parametrize("name", ["json_enum_names.json", "json_enum_ints.json"])
def test_enums_as_integers_or_names(name: str) -> None:
    (row,) = rows(decode(name))
    assert row["SpanKind"] == "Client"
    assert row["StatusCode"] == "Error"
    assert row["StatusMessage"] == "boom"


def test_unknown_fields_are_ignored() -> None:
    result = decode("json_unknown_fields.json")
    assert result.accepted == 1 and result.rejected == 0


def test_every_value_type_becomes_text() -> None:
    (row,) = rows(decode("json_all_value_types.json"))
    attrs = dict(row["SpanAttributes"])
    assert attrs == {
        "s": "text",
        "i": "-7",
        "d": "0.25",
        "b": "true",
        "arr": '["a",1]',
        "kv": '{"k":false}',
        "bytes": "aGVsbG8=",
        "empty": "",
    }


def test_events_and_links() -> None:
    (row,) = rows(decode("json_events_and_links.json"))
    assert row["Events.Name"] == ["gen_ai.evaluation.result"]
    assert dict(row["Events.Attributes"][0]) == {"gen_ai.evaluation.name": "helpfulness"}
    assert row["Links.TraceId"] == ["11111111111111111111111111111111"]
    assert row["Links.SpanId"] == ["2222222222222222"]


@pytest.mark.parametrize("name", ["json_empty_request.json", "json_empty_resource_spans.json"])
def test_empty_request_succeeds_with_nothing(name: str) -> None:
    result = decode(name)
    assert (result.accepted, result.rejected, result.traces, result.batch) == (0, 0, 0, None)


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"resourceSpans": 5}', b"\xff\xfe"])
def test_undecodable_json_raises(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_json(body, NORM, NOW)


def test_undecodable_protobuf_raises() -> None:
    with pytest.raises(DecodeError):
        decode_protobuf(b"\xff\xff\xff\xff garbage", NORM, NOW)


# --- rejects ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("reject_missing_trace_id.json", "trace_id"),
        ("reject_short_trace_id.json", "trace_id"),
        ("reject_zero_trace_id.json", "trace_id"),
        ("reject_non_hex_trace_id.json", "trace_id"),
        ("reject_missing_span_id.json", "span_id"),
        ("reject_zero_span_id.json", "span_id"),
        ("reject_long_span_id.json", "span_id"),
        ("reject_empty_name.json", "name"),
        ("reject_missing_name.json", "name"),
        ("reject_bad_parent_span_id.json", "parent_span_id"),
    ],
)
def test_a_malformed_span_is_skipped_and_counted(name: str, reason: str) -> None:
    result = decode(name)
    assert result.accepted == 1
    assert result.rejected == 1
    assert result.reject_reasons == {reason: 1}
    assert "1 span(s) rejected" in result.error_message()
    assert "span 0.0.1" in result.error_message()
    (row,) = rows(result)
    assert row["SpanId"] == "1111111111111111"


@pytest.mark.parametrize(
    "name",
    [
        "reject_zero_trace_id.json",
        "reject_short_trace_id.json",
        "reject_zero_span_id.json",
        "reject_empty_name.json",
    ],
)
def test_protobuf_rejects_the_same_spans(name: str) -> None:
    result = decode_protobuf(to_protobuf(json.loads(load(name))), NORM, NOW)
    assert (result.accepted, result.rejected) == (1, 1)


def test_message_names_only_the_first_problems() -> None:
    doc = json.loads(load("reject_empty_name.json"))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.extend([dict(spans[1]) for _ in range(9)])
    result = decode_json(json.dumps(doc).encode(), NORM, NOW)
    assert result.rejected == 10
    assert len(result.errors) == IngestConfig().max_errors_in_message
    assert result.error_message().endswith("and 5 more")


# --- derived fields -------------------------------------------------------------------------------------------------

INPUT_KEYS = IngestConfig().input_keys
OUTPUT_KEYS = IngestConfig().output_keys


@pytest.mark.parametrize("key", INPUT_KEYS)
def test_input_from_each_key(key: str) -> None:
    (row,) = rows(decode(f"input_from_{key.replace('.', '_')}.json"))
    assert row["Input"] == f"from {key}"
    assert key not in dict(row["SpanAttributes"])  # moved, not duplicated


@pytest.mark.parametrize("key", OUTPUT_KEYS)
def test_output_from_each_key(key: str) -> None:
    (row,) = rows(decode(f"output_from_{key.replace('.', '_')}.json"))
    assert row["Output"] == f"from {key}"


def test_first_present_key_wins() -> None:
    (row,) = rows(decode("input_precedence.json"))
    assert row["Input"] == "high"
    assert dict(row["SpanAttributes"]) == {"prompt": "low", "gen_ai.prompt": "mid"}


def test_non_string_input_is_stored_as_json_text() -> None:
    (row,) = rows(decode("input_non_string_value.json"))
    assert json.loads(row["Input"]) == {"question": "why?", "n": 3}


def test_keep_io_in_attributes_when_configured() -> None:
    norm = normalizer_from(IngestConfig(keep_io_in_attributes=True))
    result = decode_json(load("input_from_input_value.json"), norm, NOW)
    (row,) = rows(result)
    assert row["Input"] == "from input.value"
    assert dict(row["SpanAttributes"])["input.value"] == "from input.value"


@pytest.mark.parametrize(
    "key", ["tracejudge.project", "dokimos.project", "dokimos.project.name", "service.name"]
)
def test_project_from_each_resource_key(key: str) -> None:
    (row,) = rows(decode(f"project_from_{key.replace('.', '_')}.json"))
    assert row["Project"] == f"p-{key}"


def test_project_precedence_and_default() -> None:
    assert rows(decode("project_precedence.json"))[0]["Project"] == "tj"
    assert rows(decode("project_default.json"))[0]["Project"] == "default"


@pytest.mark.parametrize(
    ("name", "session"),
    [
        ("session_from_session_id.json", "s-1"),
        ("session_from_conversation_id.json", "c-1"),
        ("session_from_resource.json", "r-1"),
        ("session_from_traceloop_association.json", "t-1"),
        ("session_from_langfuse_session_id.json", "l-1"),
    ],
)
def test_session(name: str, session: str) -> None:
    assert rows(decode(name))[0]["SessionId"] == session


@pytest.mark.parametrize("name", ["project_precedence.json", "project_default.json"])
def test_a_request_project_overrides_the_resources(name: str) -> None:
    norm = with_project(NORM, "from-key")
    assert [r["Project"] for r in rows(decode_json(load(name), norm, NOW))] == ["from-key"]
    assert (
        decode_protobuf(to_protobuf(json.loads(load(name))), norm, NOW).batch
        == decode_json(load(name), norm, NOW).batch
    )
    assert rows(decode(name))[0]["Project"] != "from-key"  # the ordinary path is untouched


def test_traces_counts_distinct_trace_ids() -> None:
    doc = json.loads(load("json_int64_as_strings.json"))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(dict(spans[0], spanId="1111111111111111"))
    spans.append(dict(spans[0], spanId="2222222222222222", traceId="3" * 32))
    result = decode_json(json.dumps(doc).encode(), NORM, NOW)
    assert (result.accepted, result.traces) == (3, 2)


# --- protobuf and JSON agree ------------------------------------------------------------------------------------------

ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json") if not p.name.startswith("json_enum_names"))


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_protobuf_and_json_give_identical_rows(name: str) -> None:
    from_json = decode(name)
    from_proto = decode_protobuf(to_protobuf(json.loads(load(name))), NORM, NOW)
    assert (from_json.accepted, from_json.rejected, from_json.traces) == (
        from_proto.accepted,
        from_proto.rejected,
        from_proto.traces,
    )
    if from_json.batch is None:
        assert from_proto.batch is None
    else:
        assert from_proto.batch is not None
        assert from_json.batch.schema.equals(SPAN_SCHEMA)
        assert from_proto.batch.equals(from_json.batch), name


def test_gzip_body_helper_roundtrip() -> None:
    from connectors.otlp.http import decompress

    body = load("json_int64_as_strings.json")
    assert decompress(gzip.compress(body), "gzip", 1 << 20) == body
