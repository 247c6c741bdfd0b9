"""Why a protobuf export request did not parse, when protobuf itself does not say: its nesting depth.

upb, protobuf's parser, refuses messages nested deeper than 100 levels with the same "Error parsing message"
it gives for a truncated body. `nesting_depth` walks the wire format along the OTLP trace schema (only the
message-typed fields; everything else is skipped by its wire type) and returns how deep the messages go, so
the 400 can name the problem: an attribute value of arrays or key-value lists nested too deep.
"""

from __future__ import annotations

PROTOBUF_DEPTH_LIMIT = 100  # upb's default recursion limit, which python-protobuf uses

# message -> {field number: message type of that field}, for the message-typed fields of
# opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest and what it holds
_SCHEMA: dict[str, dict[int, str]] = {
    "request": {1: "resource_spans"},
    "resource_spans": {1: "resource", 2: "scope_spans"},
    "resource": {1: "key_value"},
    "scope_spans": {1: "scope", 2: "span"},
    "scope": {3: "key_value"},
    "span": {9: "key_value", 11: "event", 13: "link", 15: "status"},
    "event": {3: "key_value"},
    "link": {4: "key_value"},
    "status": {},
    "key_value": {2: "any_value"},
    "any_value": {5: "array_value", 6: "key_value_list"},
    "array_value": {1: "any_value"},
    "key_value_list": {1: "key_value"},
}


class _Malformed(Exception):
    """The wire format ends or breaks here."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            break
    raise _Malformed


def _skip(data: bytes, pos: int, end: int, wire_type: int) -> int:
    if wire_type == 0:
        return _varint(data, pos, end)[1]
    size = {1: 8, 5: 4}.get(wire_type)
    if size is None:
        raise _Malformed  # groups (3, 4) are not in the OTLP schema; 6 and 7 do not exist
    return pos + size


def _depth(data: bytes, pos: int, end: int, message: str, level: int, cap: int) -> int:
    """The deepest level reached under the message in data[pos:end] (itself at ``level``)."""
    deepest = level
    fields = _SCHEMA[message]
    while pos < end and deepest < cap:
        key, pos = _varint(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if wire_type != 2:
            pos = _skip(data, pos, end, wire_type)
            continue
        length, pos = _varint(data, pos, end)
        if pos + length > end:
            raise _Malformed
        child = fields.get(number)
        if child is not None:
            deepest = max(deepest, _depth(data, pos, pos + length, child, level + 1, cap))
        pos += length
    return deepest


def nesting_depth(body: bytes, cap: int = PROTOBUF_DEPTH_LIMIT + 1) -> int:
    """How many messages deep ``body`` (an ExportTraceServiceRequest) nests, counting the request as 1, up
    to ``cap``; 0 if the wire format breaks before the answer is known."""
    try:
        return _depth(body, 0, len(body), "request", 1, cap)
    except (_Malformed, RecursionError):
        return 0
