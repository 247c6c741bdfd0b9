"""The OTLP model of the fuzz strategies -> request bodies: protobuf by hand, and OTLP/JSON text.

The model is an OTLP/JSON-shaped dict (``resourceSpans`` ... ``spans``) whose ids are hex text, bytes
values ``bytes``, doubles ``float`` (NaN and infinities too) and ints any size. Hand encoding, not the
protobuf library, so that a body can hold what the library refuses to write: ids of any length, strings
that are not UTF-8 (``BadUtf8``), 64-bit overflow, fields with the wrong wire type (a span's ``_extra``),
and nesting past protobuf's depth limit (``Deep``, written as text too, past orjson's and Python's
recursion limits).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BadUtf8:
    """Bytes that are not UTF-8, where OTLP wants a string."""

    raw: bytes


@dataclass(frozen=True)
class Deep:
    """An AnyValue of ``levels`` arrays (``kind`` "array") or key-value lists ("kvlist") within each other."""

    kind: str
    levels: int


# --- protobuf ---------------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative and over-wide ints as protobuf writes an int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def ld(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def _text(value: Any) -> bytes:
    if isinstance(value, BadUtf8):
        return value.raw
    return str(value).encode("utf-8", "surrogatepass")


def _id(value: Any) -> bytes:
    text = str(value)
    try:
        return bytes.fromhex(text)
    except ValueError:
        return text.encode("utf-8", "surrogatepass")  # not hex: some bytes of a wrong length


def pb_any(value: Any) -> bytes:
    if isinstance(value, Deep):
        out = tag(3, 0) + varint(1)
        for _ in range(value.levels):
            out = ld(5, ld(1, out)) if value.kind == "array" else ld(6, ld(1, ld(1, b"k") + ld(2, out)))
        return out
    if isinstance(value, bool):
        return tag(2, 0) + varint(int(value))
    if isinstance(value, int):
        return tag(3, 0) + varint(value)
    if isinstance(value, float):
        return tag(4, 1) + struct.pack("<d", value)
    if isinstance(value, bytes):
        return ld(7, value)
    if isinstance(value, list):
        return ld(5, b"".join(ld(1, pb_any(v)) for v in value))
    if isinstance(value, dict):
        return ld(6, b"".join(ld(1, pb_kv(k, v)) for k, v in value.items()))
    if value is None:
        return b""
    return ld(1, _text(value))


def pb_kv(key: Any, value: Any) -> bytes:
    return ld(1, _text(key)) + ld(2, pb_any(value))


def pb_attrs(number: int, attrs: list[tuple[Any, Any]]) -> bytes:
    return b"".join(ld(number, pb_kv(k, v)) for k, v in attrs)


def _fixed64(value: Any) -> bytes:
    return struct.pack("<Q", int(value) & ((1 << 64) - 1))  # JSON's decimal strings too


def pb_span(span: dict[str, Any]) -> bytes:
    out = [ld(1, _id(span["traceId"])), ld(2, _id(span["spanId"]))]
    if span.get("parentSpanId"):
        out.append(ld(4, _id(span["parentSpanId"])))
    out += [ld(3, _text(span.get("traceState", ""))), ld(5, _text(span["name"]))]
    out += [tag(6, 0) + varint(span.get("kind", 0))]
    out += [tag(7, 1) + _fixed64(span.get("startTimeUnixNano", 0))]
    out += [tag(8, 1) + _fixed64(span.get("endTimeUnixNano", 0)), pb_attrs(9, span.get("attributes", []))]
    for ev in span.get("events", []):
        out.append(ld(11, tag(1, 1) + _fixed64(ev["timeUnixNano"]) + ld(2, _text(ev["name"])) +
                      pb_attrs(3, ev.get("attributes", []))))  # fmt: skip
    for ln in span.get("links", []):
        out.append(
            ld(13, ld(1, _id(ln["traceId"])) + ld(2, _id(ln["spanId"])) + pb_attrs(4, ln["attributes"]))
        )
    status = span.get("status", {})
    out.append(ld(15, ld(2, _text(status.get("message", ""))) + tag(3, 0) + varint(status.get("code", 0))))
    out += [raw for raw in span.get("_extra", [])]  # fields with the wrong wire type, overflowing varints
    return b"".join(out)


def to_protobuf(doc: dict[str, Any]) -> bytes:
    out = []
    for rs in doc["resourceSpans"]:
        body = ld(1, pb_attrs(1, rs["resource"]["attributes"]))
        for ss in rs["scopeSpans"]:
            scope = ld(1, ld(1, _text(ss["scope"]["name"])) + ld(2, _text(ss["scope"].get("version", ""))))
            body += ld(2, scope + b"".join(ld(2, pb_span(s)) for s in ss["spans"]))
        out.append(ld(1, body))
    return b"".join(out)


# --- OTLP/JSON --------------------------------------------------------------------------------------------------

_DEEP = "\x00deep{}\x00"


def _json_deep(value: Deep) -> str:
    if value.kind == "array":
        return '{"arrayValue":{"values":[' * value.levels + '{"intValue":"1"}' + "]}}" * value.levels
    return (
        '{"kvlistValue":{"values":[{"key":"k","value":' * value.levels
        + '{"intValue":1}'
        + "}]}}" * value.levels
    )


def json_any(value: Any, deep: list[Deep]) -> Any:
    if isinstance(value, Deep):
        deep.append(value)
        return _DEEP.format(len(deep) - 1)
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):  # within int64 as a number or a string (both OTLP/JSON), beyond it a string
        return {"intValue": value if -(2**63) <= value < 2**63 and value % 2 else str(value)}
    if isinstance(value, float):
        return {"doubleValue": value if math.isfinite(value) else ("NaN" if math.isnan(value) else
                                                                   ("Infinity" if value > 0 else "-Infinity"))}  # fmt: skip
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return {"arrayValue": {"values": [json_any(v, deep) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": json_any(v, deep)} for k, v in value.items()]}}
    if value is None:
        return {}
    return {"stringValue": value}


def _json_attrs(attrs: Any, deep: list[Deep]) -> Any:
    if not isinstance(attrs, list):
        return attrs
    return [{"key": k, "value": json_any(v, deep)} for k, v in attrs]


def _json_model(value: Any, deep: list[Deep]) -> Any:
    """The model with every attribute list as OTLP/JSON KeyValues (the rest is already OTLP/JSON)."""
    if isinstance(value, dict):
        return {k: (_json_attrs(v, deep) if k == "attributes" else _json_model(v, deep))
                for k, v in value.items() if k != "_extra"}  # fmt: skip
    if isinstance(value, list):
        return [_json_model(v, deep) for v in value]
    return value


def _placeholders(value: Any, raw: list[bytes]) -> Any:
    """``BadUtf8`` anywhere (also in attribute values) -> a placeholder string, its bytes kept in ``raw``."""
    if isinstance(value, BadUtf8):
        raw.append(value.raw)
        return f"\x00raw{len(raw) - 1}\x00"
    if isinstance(value, dict):
        return {_placeholders(k, raw) if isinstance(k, BadUtf8) else k: _placeholders(v, raw)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list | tuple):
        return type(value)(_placeholders(v, raw) for v in value)
    return value


def to_json(doc: dict[str, Any]) -> bytes:
    deep: list[Deep] = []
    raw: list[bytes] = []
    text = json.dumps(_json_model(_placeholders(doc, raw), deep), ensure_ascii=False, allow_nan=True)
    for i, d in enumerate(deep):
        text = text.replace(json.dumps(_DEEP.format(i)), _json_deep(d))
    body = text.encode("utf-8", "surrogatepass")
    for i, r in enumerate(raw):
        body = body.replace(json.dumps(f"\x00raw{i}\x00").encode(), b'"' + r + b'"')
    return body
