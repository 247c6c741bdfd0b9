"""OTLP export requests (protobuf or OTLP/JSON) -> validated, normalised Arrow span batches.

Protobuf is parsed lazily by upb; the cost is turning attribute values into Python strings, about 15 us a
span. OTLP/JSON goes through orjson and a hand mapping (protobuf's json_format is ~20x slower and reads ids
as base64, which OTLP/JSON does not use). Both feed `SpanBatchBuilder`, so they give identical rows.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from google.protobuf.message import DecodeError as ProtoDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from connectors.otlp.builder import Normalizer, SpanBatchBuilder, bytes_to_str, double_to_str, json_text
from connectors.otlp.wire_depth import PROTOBUF_DEPTH_LIMIT, nesting_depth
from dataflow.errors import DecodeError

_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
# Arrays and key-value lists within each other in one OTLP/JSON attribute value (protobuf's own depth limit
# allows about 45 in a span's attribute; orjson writes at most 254 levels, Python recurses to about 1,000)
MAX_JSON_NESTING = 64
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


@dataclass(frozen=True)
class DecodedRequest:
    """What one export request held: the accepted spans as a batch, and what was rejected and why."""

    batch: pa.RecordBatch | None
    accepted: int
    rejected: int
    traces: int
    reject_reasons: dict[str, int]
    errors: tuple[str, ...]

    def error_message(self) -> str:
        if not self.rejected:
            return ""
        shown = "; ".join(self.errors)
        more = self.rejected - len(self.errors)
        suffix = f"; and {more} more" if more > 0 else ""
        return f"{self.rejected} span(s) rejected: {shown}{suffix}"


def _finish(builder: SpanBatchBuilder) -> DecodedRequest:
    return DecodedRequest(
        batch=builder.to_batch(),
        accepted=builder.accepted,
        rejected=builder.rejected,
        traces=len(builder.trace_ids),
        reject_reasons=dict(builder.reject_reasons),
        errors=tuple(builder.errors),
    )


# --- protobuf ---------------------------------------------------------------------------------------------------


def _pb_value_json(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        v = value.double_value
        return v if v == v and v not in (float("inf"), float("-inf")) else double_to_str(v)
    if kind == "array_value":
        return [_pb_value_json(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value_json(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return bytes_to_str(value.bytes_value)
    return None


def _pb_value_str(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return double_to_str(value.double_value)
    if kind == "bytes_value":
        return bytes_to_str(value.bytes_value)
    if kind is None:
        return ""
    return json_text(_pb_value_json(value))


def _pb_attrs(attributes: Any) -> tuple[list[str], list[str]]:
    keys = [kv.key for kv in attributes]
    # Most values are non-empty strings: read them directly and fall back only for the rest.
    vals = [v.string_value or _pb_value_str(v) for v in (kv.value for kv in attributes)]
    return keys, vals


def decode_protobuf(body: bytes, normalizer: Normalizer, ingested_at_ns: int) -> DecodedRequest:
    """Decode a binary `ExportTraceServiceRequest`; raise DecodeError if the body is not one."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except ProtoDecodeError as exc:
        depth = nesting_depth(body)
        if depth > PROTOBUF_DEPTH_LIMIT:
            msg = (
                f"body is not a protobuf ExportTraceServiceRequest: messages nest more than protobuf's limit of "
                f"{PROTOBUF_DEPTH_LIMIT} levels deep (attribute values of arrays or key-value lists within "
                "each other)"
            )
        else:
            msg = f"body is not a protobuf ExportTraceServiceRequest: {exc}"
        raise DecodeError(msg) from exc
    return decode_message(request, normalizer, ingested_at_ns)


def decode_message(
    request: ExportTraceServiceRequest, normalizer: Normalizer, ingested_at_ns: int
) -> DecodedRequest:
    builder = SpanBatchBuilder(normalizer, ingested_at_ns)
    for ri, rs in enumerate(request.resource_spans):
        res = builder.resource(*_pb_attrs(rs.resource.attributes))
        for si, ss in enumerate(rs.scope_spans):
            scope_name = ss.scope.name
            scope_version = ss.scope.version
            for pi, span in enumerate(ss.spans):
                trace_id = span.trace_id.hex()
                span_id = span.span_id.hex()
                parent_id = span.parent_span_id.hex()
                index = f"{ri}.{si}.{pi}"
                if not builder.check_ids(trace_id, span_id, parent_id, span.name, index):
                    continue
                attr_k, attr_v = _pb_attrs(span.attributes)
                events = []
                for ev in span.events:
                    ek, evv = _pb_attrs(ev.attributes)
                    events.append((ev.time_unix_nano, ev.name, ek, evv))
                links = []
                for ln in span.links:
                    lk, lv = _pb_attrs(ln.attributes)
                    links.append((ln.trace_id.hex(), ln.span_id.hex(), ln.trace_state, lk, lv))
                builder.add_span(
                    res=res,
                    scope_name=scope_name,
                    scope_version=scope_version,
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_id=parent_id,
                    trace_state=span.trace_state,
                    name=span.name,
                    kind=span.kind,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attr_k=attr_k,
                    attr_v=attr_v,
                    status_code=span.status.code,
                    status_message=span.status.message,
                    events=events,
                    links=links,
                    index=index,
                )
    return _finish(builder)


# --- OTLP/JSON --------------------------------------------------------------------------------------------------


def _get(obj: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    value = obj.get(camel)
    if value is None:
        value = obj.get(snake, default)
    return default if value is None else value


def _json_int(value: Any) -> int:
    """int64/uint64 fields: decimal strings or numbers. Raises ValueError if neither."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value, 10)
    raise ValueError(value)


def _json_enum(value: Any, names: dict[str, int]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lstrip("-").isdigit():
            return int(value)
        return names.get(value, 0)
    return 0


def _json_value(value: Any, depth: int = 0) -> Any:
    """An OTLP/JSON AnyValue -> the plain JSON value the protobuf path produces. Arrays and key-value lists
    nested deeper than `MAX_JSON_NESTING` raise ValueError (the recursion stays far from Python's limit,
    and the value can be stored as JSON text)."""
    if not isinstance(value, dict):
        return None
    if depth > MAX_JSON_NESTING:
        msg = f"attribute value nests arrays or key-value lists more than {MAX_JSON_NESTING} levels deep"
        raise ValueError(msg)
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _json_int(value["intValue"])
    if "doubleValue" in value:
        v = value["doubleValue"]
        return float(v) if not isinstance(v, str) else _json_double_str(v)
    if "arrayValue" in value:
        return [_json_value(v, depth + 1) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return {
            str(kv.get("key", "")): _json_value(kv.get("value"), depth + 1)
            for kv in (value["kvlistValue"] or {}).get("values") or []
        }
    if "bytesValue" in value:
        return bytes_to_str(base64.b64decode(value["bytesValue"], validate=True))
    return None


def _json_double_str(text: str) -> Any:
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        return double_to_str(number)
    return number


def _json_value_str(value: Any) -> str:
    if isinstance(value, dict):
        if "stringValue" in value:
            return str(value["stringValue"])
        if "intValue" in value:
            return str(_json_int(value["intValue"]))
        if "boolValue" in value:
            return "true" if value["boolValue"] else "false"
        if "doubleValue" in value:
            return double_to_str(float(value["doubleValue"]))
        if "bytesValue" in value:
            return bytes_to_str(base64.b64decode(value["bytesValue"], validate=True))
        plain = _json_value(value)
        return "" if plain is None else json_text(plain)
    return ""


def _json_attrs(attributes: Any) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    vals: list[str] = []
    for kv in attributes or ():
        keys.append(str(kv.get("key", "")))
        value = kv.get("value")
        if isinstance(value, dict) and "stringValue" in value:
            vals.append(str(value["stringValue"]))
        else:
            vals.append(_json_value_str(value))
    return keys, vals


def _json_id(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


def decode_json(body: bytes, normalizer: Normalizer, ingested_at_ns: int) -> DecodedRequest:
    """Decode an OTLP/JSON `ExportTraceServiceRequest`; raise DecodeError if the body is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"body is not valid JSON: {exc}"
        raise DecodeError(msg) from exc
    if not isinstance(doc, dict):
        msg = "body is not an OTLP/JSON ExportTraceServiceRequest object"
        raise DecodeError(msg)
    resource_spans = _get(doc, "resourceSpans", "resource_spans", [])
    if not isinstance(resource_spans, list):
        msg = "resourceSpans must be an array"
        raise DecodeError(msg)
    builder = SpanBatchBuilder(normalizer, ingested_at_ns)
    for ri, rs in enumerate(resource_spans):
        if not isinstance(rs, dict):
            msg = f"resourceSpans[{ri}] must be an object"
            raise DecodeError(msg)
        resource = rs.get("resource") or {}
        try:
            res = builder.resource(*_json_attrs(resource.get("attributes")))
        except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
            msg = f"resourceSpans[{ri}].resource has malformed attributes: {exc}"
            raise DecodeError(msg) from exc
        for si, ss in enumerate(
            _json_array(_get(rs, "scopeSpans", "scope_spans", []), f"resourceSpans[{ri}].scopeSpans")
        ):
            _json_scope_spans(builder, res, ss, f"resourceSpans[{ri}].scopeSpans[{si}]", f"{ri}.{si}")
    return _finish(builder)


def _json_array(value: Any, where: str) -> list[Any]:
    """A container array of the request (absent or null: empty); DecodeError naming it if not an array."""
    if not value:
        return []
    if not isinstance(value, list):
        msg = f"{where} must be an array"
        raise DecodeError(msg)
    return value


def _json_scope_spans(
    builder: SpanBatchBuilder, res: tuple[list[str], list[str], str, str], ss: Any, where: str, index: str
) -> None:
    """One ScopeSpans object; DecodeError naming it when it, its scope or its spans are not what OTLP says
    (the spans' count would be unknown, so the request is refused rather than answered with a wrong one)."""
    if ss is None:
        return
    if not isinstance(ss, dict):
        msg = f"{where} must be an object"
        raise DecodeError(msg)
    scope = ss.get("scope") or {}
    if not isinstance(scope, dict):
        msg = f"{where}.scope must be an object"
        raise DecodeError(msg)
    scope_name = str(scope.get("name", "") or "")
    scope_version = str(scope.get("version", "") or "")
    for pi, span in enumerate(_json_array(ss.get("spans"), f"{where}.spans")):
        _json_span(builder, res, scope_name, scope_version, span, f"{index}.{pi}")


def _json_span(
    builder: SpanBatchBuilder,
    res: tuple[list[str], list[str], str, str],
    scope_name: str,
    scope_version: str,
    span: Any,
    index: str,
) -> None:
    if not isinstance(span, dict):
        builder.reject("malformed", f"span {index}: not an object")
        return
    trace_id = _json_id(_get(span, "traceId", "trace_id", ""))
    span_id = _json_id(_get(span, "spanId", "span_id", ""))
    parent_id = _json_id(_get(span, "parentSpanId", "parent_span_id", ""))
    name = span.get("name")
    name = name if isinstance(name, str) else ""
    if not builder.check_ids(trace_id, span_id, parent_id, name, index):
        return
    try:
        attr_k, attr_v = _json_attrs(span.get("attributes"))
        events = []
        for ev in span.get("events") or ():
            ek, evv = _json_attrs(ev.get("attributes"))
            events.append(
                (
                    _json_int(_get(ev, "timeUnixNano", "time_unix_nano", 0)),
                    str(ev.get("name", "") or ""),
                    ek,
                    evv,
                )
            )
        links = []
        for ln in span.get("links") or ():
            lk, lv = _json_attrs(ln.get("attributes"))
            links.append(
                (
                    _json_id(_get(ln, "traceId", "trace_id", "")),
                    _json_id(_get(ln, "spanId", "span_id", "")),
                    str(_get(ln, "traceState", "trace_state", "")),
                    lk,
                    lv,
                )
            )
        status = span.get("status") or {}
        start_ns = _json_int(_get(span, "startTimeUnixNano", "start_time_unix_nano", 0))
        end_ns = _json_int(_get(span, "endTimeUnixNano", "end_time_unix_nano", 0))
        kind = _json_enum(span.get("kind", 0), _KIND_NAMES)
        status_code = _json_enum(status.get("code", 0), _STATUS_NAMES)
    except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
        builder.reject("malformed", f"span {index}: malformed field ({exc.__class__.__name__}: {exc})"[:200])
        return
    builder.add_span(
        res=res,
        scope_name=scope_name,
        scope_version=scope_version,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        trace_state=str(_get(span, "traceState", "trace_state", "")),
        name=name,
        kind=kind,
        start_ns=start_ns,
        end_ns=end_ns,
        attr_k=attr_k,
        attr_v=attr_v,
        status_code=status_code,
        status_message=str(status.get("message", "") or ""),
        events=events,
        links=links,
        index=index,
    )
