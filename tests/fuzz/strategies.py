"""Hypothesis strategies for OTLP trace export requests, valid and broken, for fuzzing whatever reads them.

``fuzz_cases()`` draws a ``FuzzCase``: a request in protobuf or OTLP/JSON, gzipped or not, with what it was
made to hold and how many spans it carries when that is known. The model (``tests/fuzz/wire.py``) takes the
hostile values OTLP bodies meet: ids of every length (empty, short, long, all zeros, not hex, upper case),
strings that are not UTF-8 and lone surrogates, NaN and infinities, ints past 64 bits, 10,000 attributes,
empty and duplicate keys, arrays and key-value lists nested past protobuf's depth limit, huge strings, fields
with the wrong wire type and overflowing varints. Then the body itself may be broken: truncated, a byte
flipped, garbage appended, a JSON container of the wrong type. ``spans`` is None when the breakage leaves the
count unknown; else a receiver that decodes the body must answer for exactly that many spans.

Reuse: ``fuzz_cases()`` for whole requests, ``otlp_docs()`` for the model, ``any_values()`` for attributes.
"""

from __future__ import annotations

import copy
import functools
import gzip
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from connectors.otlp.ingest import Encoding
from tests.fuzz.wire import BadUtf8, Deep, tag, to_json, to_protobuf, varint


@dataclass(frozen=True)
class FuzzCase:
    """One request: ``raw`` (before compression) and ``body`` (as sent, with ``content_encoding``)."""

    encoding: Encoding
    raw: bytes
    body: bytes
    content_encoding: str | None
    spans: int | None  # spans the body carries when it decodes; None when the breakage made it unknown
    broken: str  # how the body was broken after encoding ("" when not)

    @property
    def content_type(self) -> str:
        return "application/x-protobuf" if self.encoding == "protobuf" else "application/json"


_HEX = "0123456789abcdef"
_INT64 = 2**63


def rarely(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int
) -> st.SearchStrategy[Any]:
    """``rare`` about once in ``one_in`` draws, else ``common`` (``one_of`` would draw each branch as often)."""
    # an interior value: Hypothesis draws the bounds of a range far more often than the rest, and shrinks to 1
    pick = one_in // 2 + 1
    return st.integers(1, one_in).flatmap(lambda i: rare if i == pick else common)


@functools.cache
def ids(length: int) -> st.SearchStrategy[str]:
    """Hex ids: the right length mostly, and now and then every wrong one: empty, 1..2x long, all zeros,
    upper case, not hex."""
    good = st.binary(min_size=length // 2, max_size=length // 2).map(
        lambda b: b.hex() if any(b) else (b[:-1] + b"\x01").hex()
    )
    bad = st.one_of(
        good.map(str.upper),
        st.just("0" * length),
        st.integers(0, 2 * length + 2).flatmap(lambda n: st.text(_HEX, min_size=n, max_size=n)),
        st.text(min_size=length, max_size=length),
    )
    return rarely(good, bad, 8)


@functools.cache
def strings(max_size: int = 40) -> st.SearchStrategy[Any]:
    """Text (lone surrogates too), now and then huge, or bytes that are not UTF-8."""
    common = st.one_of(st.text(max_size=max_size), st.text(st.characters(codec="utf-8"), max_size=max_size))
    huge = st.tuples(st.characters(codec="ascii"), st.integers(10_000, 2_000_000)).map(lambda t: t[0] * t[1])
    bad = st.binary(max_size=8).map(
        lambda b: BadUtf8(b.replace(b'"', b"").replace(b"\\", b"") + b"\xff\xc3(")
    )
    return rarely(common, st.one_of(huge, bad), 400)


@functools.cache
def any_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Attribute values: every AnyValue kind with their edges, arrays and maps, and ``Deep`` nesting."""
    scalars = st.one_of(
        strings(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.sampled_from([0, -1, _INT64 - 1, -_INT64, _INT64, 2**64 - 1, 2**64]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.binary(max_size=16),
        st.none(),
    )
    deep = st.builds(Deep, st.sampled_from(["array", "kvlist"]), st.integers(1, 400))
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
        max_leaves=max_leaves,
    )
    return rarely(nested, deep, 200)


@functools.cache
def attributes() -> st.SearchStrategy[list[tuple[Any, Any]]]:
    """Key-value lists: empty and duplicate keys, odd values, and now and then 10,000 of them."""
    keys = st.one_of(st.sampled_from(["", "k", "k", "service.name", "input.value"]), strings(12))
    few = st.lists(st.tuples(keys, any_values()), max_size=6)
    many = st.integers(10_000, 10_001).map(lambda n: [(f"k{i % 5000}", f"v{i}") for i in range(n)])
    return rarely(few, many, 400)


@functools.cache
def timestamps() -> st.SearchStrategy[Any]:
    """fixed64 nanoseconds: mostly plausible, as numbers or OTLP/JSON's decimal strings; now and then any
    64-bit value, the edges, past 64 bits or negative."""
    plausible = st.integers(0, 2**62)
    odd = st.one_of(
        st.integers(0, 2**64 - 1),
        st.sampled_from([0, _INT64 - 1, _INT64, 2**64 - 1]),
        st.integers(-(2**80), 2**80).map(str),
        st.just(-1),
    )
    return rarely(st.one_of(plausible, plausible.map(str)), odd, 6)


@functools.cache
def wrong_fields() -> st.SearchStrategy[bytes]:
    """Span fields with the wrong wire type for their number, or a varint that overflows 64 bits."""
    number = st.sampled_from([1, 2, 3, 5, 6, 7, 9, 11, 15, 99])
    varint_field = number.map(lambda n: tag(n, 0) + varint(12345))
    fixed64_field = number.map(lambda n: tag(n, 1) + b"\x01" * 8)
    fixed32_field = number.map(lambda n: tag(n, 5) + b"\x01" * 4)
    overflow = number.map(lambda n: tag(n, 0) + b"\xff" * 9 + b"\x7f")
    return st.one_of(varint_field, fixed64_field, fixed32_field, overflow)


_PARENT_IDS = st.one_of(st.just(""), ids(16))
_NAMES = rarely(strings().filter(bool), st.just(""), 10)
_KINDS = st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1))
_EVENTS = st.lists(
    st.fixed_dictionaries({"timeUnixNano": timestamps(), "name": strings(8), "attributes": attributes()}),
    max_size=3,
)
_LINKS = st.lists(
    st.fixed_dictionaries({"traceId": ids(32), "spanId": ids(16), "attributes": attributes()}), max_size=2
)


_EXTRA = st.lists(wrong_fields(), min_size=1, max_size=3)


@st.composite
def spans(draw: st.DrawFn) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": draw(ids(32)),
        "spanId": draw(ids(16)),
        "parentSpanId": draw(_PARENT_IDS),
        "traceState": draw(strings(8)),
        "name": draw(_NAMES),
        "kind": draw(_KINDS),
        "startTimeUnixNano": draw(timestamps()),
        "endTimeUnixNano": draw(timestamps()),
        "attributes": draw(attributes()),
        "status": {"code": draw(st.integers(-3, 5)), "message": draw(strings(12))},
    }
    if draw(st.booleans()):
        span["events"] = draw(_EVENTS)
        span["links"] = draw(_LINKS)
    if draw(st.integers(0, 5)) == 0:
        span["_extra"] = draw(_EXTRA)
    return span


@functools.cache
def otlp_docs(max_spans: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    """The model of one request: resources with their attributes, scopes, spans."""
    scope = st.fixed_dictionaries({"name": strings(12), "version": strings(6)})
    scope_spans = st.fixed_dictionaries({"scope": scope, "spans": st.lists(spans(), max_size=max_spans)})
    resource = st.fixed_dictionaries({"attributes": attributes()})
    rs = st.fixed_dictionaries({"resource": resource, "scopeSpans": st.lists(scope_spans, max_size=2)})
    return st.fixed_dictionaries({"resourceSpans": st.lists(rs, max_size=2)})


def count_spans(doc: dict[str, Any]) -> int:
    return sum(len(ss["spans"]) for rs in doc["resourceSpans"] for ss in rs["scopeSpans"])


@st.composite
def json_shape_breaks(draw: st.DrawFn, doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The model with one container of the wrong JSON type (the decoder must refuse it, naming it)."""
    wrong = draw(st.sampled_from([1, "x", True, {"a": 1}, [1]]))
    where = draw(st.sampled_from(["resource", "scopeSpans", "scope", "spans", "span", "resourceSpans"]))
    if where == "resourceSpans" or not doc["resourceSpans"]:
        return {"resourceSpans": wrong}, where
    rs = doc["resourceSpans"][0]
    if where == "resource":
        rs["resource"] = wrong
    elif where == "scopeSpans" or not rs["scopeSpans"]:
        rs["scopeSpans"] = wrong if where == "scopeSpans" else [wrong]
    elif where == "scope":
        rs["scopeSpans"][0]["scope"] = wrong
    elif where == "spans":
        rs["scopeSpans"][0]["spans"] = wrong
    else:
        rs["scopeSpans"][0]["spans"].append(wrong)
    return doc, where


@st.composite
def body_breaks(draw: st.DrawFn, body: bytes) -> tuple[bytes, str]:
    """The encoded body truncated, a byte flipped or garbage appended."""
    how = draw(st.sampled_from(["truncated", "flipped", "garbage"]))
    if how == "truncated":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))], how
    if how == "flipped" and body:
        i = draw(st.integers(0, len(body) - 1))
        return body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :], how
    return body + draw(st.binary(min_size=1, max_size=32)), "garbage"


@st.composite
def fuzz_cases(draw: st.DrawFn, encodings: tuple[Encoding, ...] = ("protobuf", "json")) -> FuzzCase:
    """One request, valid or broken, in one of ``encodings``, gzipped or not."""
    encoding = draw(st.sampled_from(encodings))
    doc = draw(otlp_docs())
    spans_n: int | None = count_spans(doc)
    broken = ""
    if encoding == "json" and draw(st.integers(0, 9)) == 0:
        doc, broken = draw(json_shape_breaks(doc))
        spans_n = None
    raw = to_protobuf(doc) if encoding == "protobuf" else to_json(doc)
    if not broken and draw(st.integers(0, 5)) == 0:
        raw, broken = draw(body_breaks(raw))
        spans_n = None
    compressed = draw(st.booleans())
    body = gzip.compress(raw, compresslevel=1) if compressed else raw
    if compressed and draw(st.integers(0, 19)) == 0:
        body, broken = body[: len(body) // 2], broken or "gzip truncated"
        spans_n = None
    return FuzzCase(encoding, raw, body, "gzip" if compressed else None, spans_n, broken)


def _encode(doc: dict[str, Any], encoding: Encoding) -> bytes:
    return to_protobuf(doc) if encoding == "protobuf" else to_json(doc)


@st.composite
def case_families(draw: st.DrawFn) -> list[FuzzCase]:
    """Many cases from one drawn request (drawing is what costs, decoding is cheap): the request in both
    encodings, each plain and gzipped, truncated at three points, with a byte flipped and with garbage
    appended; and as OTLP/JSON with a container of the wrong type."""
    doc = draw(otlp_docs())
    n = count_spans(doc)
    cases: list[FuzzCase] = []
    for encoding in ("protobuf", "json"):
        raw = _encode(doc, encoding)
        cases.append(FuzzCase(encoding, raw, raw, None, n, ""))
        cases.append(FuzzCase(encoding, raw, gzip.compress(raw, 1), "gzip", n, ""))
        for _ in range(5):
            broken, how = draw(body_breaks(raw))
            cases.append(FuzzCase(encoding, broken, broken, None, None, how))
    shaped, where = draw(json_shape_breaks(copy.deepcopy(doc)))
    raw = to_json(shaped)
    cases.append(FuzzCase("json", raw, raw, None, None, where))
    return cases
