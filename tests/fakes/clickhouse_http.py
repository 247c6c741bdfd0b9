"""TEST HARNESS: a minimal ClickHouse HTTP interface in front of chDB.

This is NOT a production server and NOT a ClickHouse server. It exists so that the real
``clickhouse-connect`` HTTP client (``get_client(host=..., port=...)`` / ``http://host:port`` DSNs) can be
tested on a machine where no ClickHouse server can be installed. Queries are executed by chDB, i.e. the real
ClickHouse engine running in this process; only the HTTP layer is re-implemented here, after ClickHouse's
``HTTPHandler`` (request parameters, status codes, error bodies, headers).

chDB allows one data directory per process, so the front must run in its own process:

    python -m tests.fakes.clickhouse_http --data-dir DIR [--host 127.0.0.1] [--port 0]

prints ``READY <port>`` on stdout once it listens and stops cleanly on SIGTERM/SIGINT. Tests use
``clickhouse_http_front(data_dir)``, a context manager that starts that subprocess and yields its base URL.

Supported:
  * ``GET /ping``, ``GET /`` (``Ok.``), ``/replicas_status``; ``GET``/``POST /`` with the query in the
    ``query`` URL parameter, in the body, or both (``query`` + newline + body, as ClickHouse concatenates them);
    ``multipart/form-data`` bodies carrying plain fields (clickhouse-connect sends large bound parameters so).
  * Authentication: one user (default ``default`` with an empty password) via Basic auth,
    ``X-ClickHouse-User``/``X-ClickHouse-Key`` or ``user``/``password`` parameters; otherwise code 516 / 403.
  * ``database`` / ``X-ClickHouse-Database``, ``default_format`` / ``X-ClickHouse-Format``, ``query_id``,
    ``param_<name>`` (server-side ``{name:Type}`` parameters) and every other parameter as a ClickHouse setting,
    applied in a fresh chDB connection per request (``readonly`` applied last, like ClickHouse applying all URL
    settings at once); HTTP ``GET`` implies ``readonly=2`` as in ClickHouse.
  * Inserts with data (``INSERT ... FORMAT <fmt>`` followed by Native/Arrow/RowBinary/CSV/... bytes) are streamed
    into ``chdb.Connection.send_insert`` in 1 MiB chunks (bodies are spooled to disk above 32 MiB, so inserts of
    hundreds of MB work); ``INSERT ... VALUES`` and ``INSERT ... SELECT`` run as plain queries.
  * Request ``Content-Encoding``: gzip, deflate, zstd, lz4 (frames, concatenated or not), xz, br (if brotli is
    installed). Response compression with ``enable_http_compression=1`` and ``Accept-Encoding``, choosing the
    method in ClickHouse's order (br, gzip, deflate, xz, zstd, lz4).
  * Response headers ``X-ClickHouse-Query-Id``, ``X-ClickHouse-Format`` (only for result-producing statements),
    ``X-ClickHouse-Timezone``, ``X-ClickHouse-Summary`` (string values, as ClickHouse sends them).
  * Errors answer like ClickHouse: status from ClickHouse's ``exceptionCodeToHTTPStatus`` (400 syntax, 403
    auth/access, 404 unknown table/setting, 408 timeout, 500 otherwise ...), body ``Code: N. DB::Exception: ...
    (NAME) (version V)``, header ``X-ClickHouse-Exception-Code``. Multi-statement queries (code 62) and
    ``INTO OUTFILE`` (code 358) are refused, as the ClickHouse HTTP interface does (chDB alone accepts both).
  * chDB's "leftover rows after a failed query" pitfall cannot leak between requests: every request runs on its
    own chDB connection, which is closed afterwards (a never-queried anchor connection keeps the engine up).
  * Concurrency: requests are served by threads; all chDB work is serialised by one lock, held only while chDB
    runs (bodies are read before, responses written after), so a slow client cannot block the others for long.

Not supported (differences from a real server):
  * Sessions: ``session_id`` is accepted and ignored; ``SET``, ``USE`` and temporary tables do not outlive their
    request. Concurrent use of one session is not refused (clickhouse-connect guards that itself).
  * ``client_protocol_version`` is ignored, so clickhouse-connect falls back to protocol 0 (no BlockInfo in
    Native blocks) exactly as with its own chDB backend.
  * Results are fully buffered (as with ``wait_end_of_query=1``): no progress headers, no streaming of huge
    results, and an error never arrives after a 200 status line. Error bodies are never compressed.
  * ``compress=1``/``decompress=1`` (ClickHouse's internal compression framing), external data (multipart file
    parts), TLS, HTTP handlers other than ``/``, ``/ping``, ``/replicas_status``, query cancellation on client
    disconnect, quotas, users and grants beyond the single configured user.
  * chDB-only SQL features (e.g. the ``Python()`` table function, ``file()`` without a user_files sandbox) are not
    blocked beyond what ``readonly`` blocks.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import email.parser
import email.policy
import json
import logging
import lzma
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger("tests.fakes.clickhouse_http")

REPO_ROOT = Path(__file__).resolve().parents[2]
_CHUNK = 1 << 20
_SPOOL_MAX = 32 << 20
_HEAD_LIMIT = 16 << 20
_DISPLAY_NAME = "chdb-http-front"

# URL parameters ClickHouse's HTTP handler consumes itself; everything else (except param_*) is a setting.
_RESERVED_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "compress",
        "decompress",
        "user",
        "password",
        "quota_key",
        "query_id",
        "stacktrace",
        "buffer_size",
        "wait_end_of_query",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "client_protocol_version",
        "role",
    }
)

# ClickHouse's exceptionCodeToHTTPStatus (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp), by error name.
_STATUS_BY_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(
        ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"),
        403,
    ),
    **dict.fromkeys(
        (
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ),
        400,
    ),
    **dict.fromkeys(
        (
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ),
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "CANNOT_SCHEDULE_TASK": 503,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

# Codes the front raises itself (the engine's own errors carry their code in the message).
_OWN_CODES = {
    "SYNTAX_ERROR": 62,
    "NOT_IMPLEMENTED": 48,
    "CANNOT_READ_ALL_DATA": 33,
    "UNKNOWN_COMPRESSION_METHOD": 89,
    "AUTHENTICATION_FAILED": 516,
    "INTO_OUTFILE_NOT_ALLOWED": 358,
    "HTTP_LENGTH_REQUIRED": 381,
    "UNKNOWN_SETTING": 115,
    "STD_EXCEPTION": 1001,
}

_RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK"})


class ClickHouseError(Exception):
    """An error to answer with, formatted like ClickHouse's ``Code: N. DB::Exception: ...``."""

    def __init__(self, code: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.name = name

    @classmethod
    def own(cls, name: str, text: str) -> ClickHouseError:
        code = _OWN_CODES[name]
        return cls(code, f"Code: {code}. DB::Exception: {text}. ({name})", name)

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        text = str(exc)
        idx = text.find("Code: ")
        if idx > 0:
            text = text[idx:]
        text = text.strip()
        match = re.match(r"Code: (\d+)\.", text)
        if not match:
            return cls.own("STD_EXCEPTION", f"std::exception. {text}")
        name_match = re.search(r"\(([A-Z0-9_]+)\)(?: \(version [^)]*\))?\s*$", text)
        return cls(int(match.group(1)), text, name_match.group(1) if name_match else None)


# ---------------------------------------------------------------------------------------------------------------
# SQL scanning: just enough lexing to split "INSERT ... FORMAT X <data>", find the output FORMAT and refuse
# multi-statements, without being fooled by quotes or comments.

_TOKEN_RE = re.compile(
    rb"""
    (?P<ws>\s++)
    |(?P<comment>--[^\n]*+|\#[^\n]*+|/\*(?:[^*]++|\*(?!/))*+\*/)
    |(?P<quoted>'(?:[^'\\]++|\\.|'')*+'|"(?:[^"\\]++|\\.|"")*+"|`(?:[^`\\]++|\\.|``)*+`)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*+)
    |(?P<number>[0-9][0-9A-Za-z_.]*+)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class _Incomplete(Exception):
    """The buffer ends inside a token; more input is needed to decide."""


def _tokens(buf: bytes, final: bool, start: int = 0) -> Iterator[tuple[str, int, int]]:
    """Yield (kind, start, end) for significant tokens (no whitespace/comments)."""
    pos = start
    size = len(buf)
    while pos < size:
        match = _TOKEN_RE.match(buf, pos)
        if match is None:  # pragma: no cover - the regex matches any byte
            return
        kind = match.lastgroup or "other"
        end = match.end()
        if not final and end == size and kind in ("word", "number", "comment", "ws"):
            raise _Incomplete
        unterminated_quote = kind == "other" and buf[pos : pos + 1] in (b"'", b'"', b"`")
        if unterminated_quote or (kind != "comment" and buf.startswith(b"/*", pos)):
            if not final:
                raise _Incomplete
            kind = "unterminated"
        pos = end
        if kind in ("ws", "comment"):
            continue
        yield kind, match.start(), end


@dataclass
class _InsertWithData:
    head: bytes  # "INSERT INTO t (cols) [SETTINGS ...]" without the FORMAT clause
    fmt: str
    data_start: int


@dataclass
class _PlainQuery:
    pass


def _classify(buf: bytes, final: bool) -> _InsertWithData | _PlainQuery | None:
    """Decide whether the stream is an INSERT carrying data after ``FORMAT x``; None = need more bytes."""
    try:
        toks = _tokens(buf, final)
        first = next(toks, None)
        if first is None:
            return _PlainQuery() if final else None
        if first[0] != "word" or buf[first[1] : first[2]].upper() != b"INSERT":
            return _PlainQuery()
        depth = 0
        for kind, start, end in toks:
            text = buf[start:end]
            if kind == "other":
                if text == b"(":
                    depth += 1
                elif text == b")":
                    depth -= 1
                continue
            if kind != "word" or depth != 0:
                continue
            upper = text.upper()
            if upper in (b"VALUES", b"SELECT", b"WITH"):
                return _PlainQuery()
            if upper == b"FORMAT":
                fmt_tok = next(toks, None)
                if fmt_tok is None:
                    return _PlainQuery() if final else None
                if fmt_tok[0] != "word":
                    return _PlainQuery()
                pos = fmt_tok[2]
                while pos < len(buf) and buf[pos : pos + 1] in (b" ", b"\t"):
                    pos += 1
                if not final and pos >= len(buf) - 1:
                    return None  # cannot tell yet whether a newline follows
                if buf.startswith(b"\r\n", pos):
                    pos += 2
                elif buf.startswith(b"\n", pos):
                    pos += 1
                fmt = buf[fmt_tok[1] : fmt_tok[2]].decode()
                return _InsertWithData(head=buf[:start].rstrip(), fmt=fmt, data_start=pos)
        return _PlainQuery() if final else None
    except _Incomplete:
        return None


@dataclass
class _QueryInfo:
    first_word: str
    output_format: str | None


def _analyse_query(sql: bytes, output_formats: dict[str, str]) -> _QueryInfo:
    """Find the statement kind and an explicit output FORMAT; refuse what ClickHouse's HTTP interface refuses."""
    first_word = ""
    output_format: str | None = None
    depth = 0
    previous = b""
    is_insert = False
    toks = _tokens(sql, final=True)
    for kind, start, end in toks:
        text = sql[start:end]
        if not first_word:
            first_word = (
                text.decode(errors="replace").upper() if kind == "word" else text.decode(errors="replace")
            )
            is_insert = first_word == "INSERT"
        if kind == "other":
            if text == b"(":
                depth += 1
            elif text == b")":
                depth -= 1
            elif text == b";" and depth <= 0:
                rest = [t for t in toks if sql[t[1] : t[2]] != b";"]
                if rest:
                    snippet = sql[start : start + 60].decode(errors="replace")
                    raise ClickHouseError.own(
                        "SYNTAX_ERROR",
                        f"Syntax error (Multi-statements are not allowed): failed at position {start + 1} "
                        f"(end of query): {snippet}",
                    )
                break
        elif kind == "word":
            upper = text.upper()
            if is_insert and upper in (b"VALUES", b"FORMAT"):
                break  # the rest is data
            if upper == b"OUTFILE" and previous == b"INTO":
                raise ClickHouseError.own("INTO_OUTFILE_NOT_ALLOWED", "INTO OUTFILE is not allowed")
            if previous == b"FORMAT" and depth == 0:
                known = output_formats.get(text.decode().lower())
                if known is not None:
                    output_format = text.decode()
            previous = upper
            continue
        previous = b""
    return _QueryInfo(first_word=first_word, output_format=output_format)


# ---------------------------------------------------------------------------------------------------------------
# Compression


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


def _decompressor_factory(encoding: str) -> Callable[[], _Decompressor] | None:
    if encoding in ("gzip", "x-gzip"):
        return lambda: zlib.decompressobj(wbits=31)
    if encoding == "deflate":
        return lambda: zlib.decompressobj()
    if encoding == "xz":
        return lzma.LZMADecompressor
    if encoding == "zstd":
        zstd = _zstd_module()
        return cast("Callable[[], _Decompressor]", zstd.ZstdDecompressor)
    if encoding == "lz4":
        import lz4.frame

        return cast("Callable[[], _Decompressor]", lz4.frame.LZ4FrameDecompressor)
    return None


def _zstd_module() -> Any:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:
        from backports import zstd
    return zstd


def _iter_decoded(chunks: Iterable[bytes], encoding: str | None) -> Iterator[bytes]:
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "none"):
        yield from chunks
        return
    if enc == "br":
        try:
            import brotli
        except ImportError:
            raise ClickHouseError.own(
                "UNKNOWN_COMPRESSION_METHOD", "Unknown compression method 'br'"
            ) from None
        decoder = brotli.Decompressor()
        for chunk in chunks:
            out = decoder.process(chunk)
            if out:
                yield out
        return
    factory = _decompressor_factory(enc)
    if factory is None:
        raise ClickHouseError.own("UNKNOWN_COMPRESSION_METHOD", f"Unknown compression method '{enc}'")
    dec = factory()
    pending = False
    try:
        for chunk in chunks:
            data = chunk
            while data:
                out = dec.decompress(data)
                pending = True
                if out:
                    yield out
                if dec.eof:
                    data = dec.unused_data
                    dec = factory()
                    pending = False
                else:
                    data = b""
    except ClickHouseError:
        raise
    except Exception as ex:
        raise ClickHouseError.own(
            "CANNOT_READ_ALL_DATA", f"Cannot decompress {enc} request body: {ex}"
        ) from ex
    if pending:
        raise ClickHouseError.own("CANNOT_READ_ALL_DATA", f"Truncated {enc} request body")


_RESPONSE_ENCODINGS = ("br", "gzip", "deflate", "xz", "zstd", "lz4")


def _choose_response_encoding(accept: str) -> str | None:
    for name in _RESPONSE_ENCODINGS:  # ClickHouse checks by substring, in this order
        if name in accept:
            if name == "br":
                try:
                    import brotli  # noqa: F401
                except ImportError:
                    continue
            return name
    return None


def _compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        comp = zlib.compressobj(3, zlib.DEFLATED, 31)
        return comp.compress(body) + comp.flush()
    if encoding == "deflate":
        return zlib.compress(body, 3)
    if encoding == "xz":
        return lzma.compress(body)
    if encoding == "zstd":
        return bytes(_zstd_module().compress(body))
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.compress(body))
    import brotli

    return bytes(brotli.compress(body))


# ---------------------------------------------------------------------------------------------------------------
# Request model and the chDB-backed executor


@dataclass
class FrontRequest:
    method: str
    query_string: str
    headers: dict[str, str]  # lower-cased names
    body: IO[bytes] | None


@dataclass
class FrontResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class _HeadStream:
    """The request stream (query parameter + decoded body), buffered only as far as needed."""

    def __init__(self, prefix: bytes, chunks: Iterator[bytes]) -> None:
        self.buf = bytearray(prefix)
        self._chunks = chunks
        self.eof = False

    def fill(self, size: int) -> None:
        while not self.eof and len(self.buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.eof = True
            else:
                self.buf += chunk

    def read_all(self) -> bytes:
        self.fill(sys.maxsize)
        return bytes(self.buf)

    def rest(self, offset: int) -> Iterator[bytes]:
        if offset < len(self.buf):
            yield bytes(self.buf[offset:])
        self.buf = bytearray()
        yield from self._chunks


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _quote_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _content_type(fmt: str) -> str:
    lower = fmt.lower()
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower in ("pretty", "prettycompact", "vertical", "values", "markdown"):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_param("filename", header="content-disposition") is not None:
            raise ClickHouseError.own(
                "NOT_IMPLEMENTED", "External data (multipart file parts) is not supported by the test front"
            )
        if not name:
            continue
        payload = part.get_payload(decode=True)
        fields.append((str(name), payload.decode("utf-8") if isinstance(payload, bytes) else ""))
    return fields


class ChdbHttpFront:
    """Executes ClickHouse HTTP requests on chDB. One instance per process (chDB: one data directory per process)."""

    def __init__(self, data_dir: str | os.PathLike[str], user: str = "default", password: str = "") -> None:
        import chdb

        self._chdb: Any = chdb
        self._path = os.path.abspath(os.fspath(data_dir))
        os.makedirs(self._path, exist_ok=True)
        self._user = user
        self._password = password
        self._lock = threading.Lock()
        self._closed = False
        # The anchor keeps the engine alive between requests; it never runs a failing query.
        self._anchor = self._chdb.connect(self._path)
        info = self._anchor.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().strip()
        self.version, self.timezone = info.split("\t")
        rows = self._anchor.query("SELECT name FROM system.formats WHERE is_output", "TabSeparated").bytes()
        self._output_formats = {name.lower(): name for name in rows.decode().split()}

    # -- public ---------------------------------------------------------------------------------------------

    def execute(self, request: FrontRequest) -> FrontResponse:
        query_id = ""
        try:
            query_id, response = self._execute(request)
            return response
        except ClickHouseError as err:
            return self._error_response(err, query_id)
        except Exception as ex:
            logger.exception("unexpected failure in the front")
            return self._error_response(
                ClickHouseError.own("STD_EXCEPTION", f"std::exception. {ex!r}"), query_id
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(Exception):
                self._anchor.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _error_response(self, err: ClickHouseError, query_id: str) -> FrontResponse:
        message = err.message
        if "(version " not in message:
            message = f"{message} (version {self.version})"
        status = _STATUS_BY_NAME.get(err.name or "", 500)
        headers = [
            ("Content-Type", "text/plain; charset=UTF-8"),
            ("X-ClickHouse-Exception-Code", str(err.code)),
            ("X-ClickHouse-Server-Display-Name", _DISPLAY_NAME),
        ]
        if query_id:
            headers.append(("X-ClickHouse-Query-Id", query_id))
        return FrontResponse(status, (message + "\n").encode(), headers)

    def _authenticate(self, request: FrontRequest, params: list[tuple[str, str]]) -> None:
        headers = request.headers
        user = headers.get("x-clickhouse-user", "")
        password = headers.get("x-clickhouse-key", "")
        if not user and not password:
            auth = headers.get("authorization", "")
            names = {k for k, _ in params}
            if auth:
                if "user" in names or "password" in names:
                    raise ClickHouseError.own(
                        "AUTHENTICATION_FAILED",
                        "Invalid authentication: it is not allowed to use Authorization HTTP header and "
                        "authentication via parameters simultaneously",
                    )
                scheme, _, info = auth.partition(" ")
                if scheme.lower() != "basic":
                    raise ClickHouseError.own(
                        "AUTHENTICATION_FAILED",
                        f"Invalid authentication: '{scheme}' HTTP Authorization scheme is not supported",
                    )
                try:
                    user, _, password = base64.b64decode(info.strip()).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    raise ClickHouseError.own(
                        "AUTHENTICATION_FAILED", "Invalid authentication: bad Basic credentials"
                    ) from None
            else:
                values = dict(params)
                user = values.get("user", "default")
                password = values.get("password", "")
        if user != self._user or password != self._password:
            raise ClickHouseError.own(
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
            )

    def _execute(self, request: FrontRequest) -> tuple[str, FrontResponse]:
        params = parse_qsl(request.query_string, keep_blank_values=True)
        headers = request.headers
        content_type = headers.get("content-type", "")
        body = request.body
        if content_type.lower().startswith("multipart/form-data") and body is not None:
            params = params + _parse_multipart(content_type, body.read())
            body = None
        self._authenticate(request, params)

        database = headers.get("x-clickhouse-database", "")
        default_format = headers.get("x-clickhouse-format", "")
        query_id = headers.get("x-clickhouse-query-id", "")
        query_text = ""
        settings: dict[str, str] = {}
        query_params: dict[str, str] = {}
        for key, value in params:
            if key == "database":
                database = database or value
            elif key == "default_format":
                default_format = default_format or value
            elif key == "query":
                query_text = value
            elif key == "query_id":
                query_id = value
            elif key in ("compress", "decompress") and value not in ("", "0", "false"):
                raise ClickHouseError.own(
                    "NOT_IMPLEMENTED", f"'{key}=1' (internal compression) is not supported by the test front"
                )
            elif key in _RESERVED_PARAMS or not key:
                continue
            elif key.startswith("param_"):
                query_params[key[len("param_") :]] = value
            else:
                settings[key] = value
        query_id = query_id or str(uuid.uuid4())
        if request.method == "GET" and settings.get("readonly", "0") in ("0", ""):
            settings["readonly"] = "2"

        prefix = (query_text + "\n").encode() if query_text else b""
        raw_chunks: Iterator[bytes] = iter(()) if body is None else iter(lambda: body.read(_CHUNK), b"")
        stream = _HeadStream(prefix, _iter_decoded(raw_chunks, headers.get("content-encoding")))
        want = 64 << 10
        while True:
            stream.fill(want)
            kind = _classify(bytes(stream.buf), final=stream.eof)
            if kind is None and len(stream.buf) >= _HEAD_LIMIT:
                kind = _PlainQuery()
            if kind is not None:
                break
            want *= 2

        if isinstance(kind, _InsertWithData):
            # multi-statement / OUTFILE checks on the statement only, never on the data
            _analyse_query(kind.head, self._output_formats)
            return query_id, self._run_insert(kind, stream, database, settings, query_id)

        sql = stream.read_all()
        if not sql.strip():
            raise ClickHouseError.own("SYNTAX_ERROR", "Empty query")
        info = _analyse_query(sql, self._output_formats)
        fmt = info.output_format or default_format or "TabSeparated"
        produces_result = (
            info.output_format is not None or info.first_word in _RESULT_KEYWORDS or info.first_word == "("
        )
        try:
            sql_arg: str | bytes = sql.decode("utf-8")
        except UnicodeDecodeError:
            sql_arg = sql
        with self._lock:
            conn = self._connect(database, settings)
            try:
                started = time.monotonic()
                result = conn.query(sql_arg, fmt, params=query_params)
                elapsed = time.monotonic() - started
                out = result.bytes() or b""
                summary = {
                    "read_rows": str(result.rows_read()),
                    "read_bytes": str(result.bytes_read()),
                    "written_rows": str(result.rows_written()),
                    "written_bytes": str(result.bytes_written()),
                    "total_rows_to_read": "0",
                    "result_rows": "0",
                    "result_bytes": str(len(out)),
                    "elapsed_ns": str(int(elapsed * 1e9)),
                }
            except Exception as ex:
                raise ClickHouseError.from_engine(ex) from None
            finally:
                with contextlib.suppress(Exception):
                    conn.close()

        response_headers = self._common_headers(query_id, settings, summary)
        if produces_result:
            response_headers.append(("X-ClickHouse-Format", fmt))
            response_headers.append(("Content-Type", _content_type(fmt)))
        else:
            response_headers.append(("Content-Type", "text/plain; charset=UTF-8"))
        if settings.get("enable_http_compression", "0") in ("1", "true"):
            encoding = _choose_response_encoding(headers.get("accept-encoding", ""))
            if encoding:
                out = _compress(out, encoding)
                response_headers.append(("Content-Encoding", encoding))
        return query_id, FrontResponse(200, out, response_headers)

    def _run_insert(
        self,
        insert: _InsertWithData,
        stream: _HeadStream,
        database: str,
        settings: dict[str, str],
        query_id: str,
    ) -> FrontResponse:
        head = insert.head.decode("utf-8")
        with self._lock:
            conn = self._connect(database, settings)
            try:
                started = time.monotonic()
                with conn.send_insert(head, insert.fmt) as inserter:
                    pending = bytearray()
                    for chunk in stream.rest(insert.data_start):
                        pending += chunk
                        if len(pending) >= _CHUNK:
                            inserter.append(bytes(pending))
                            pending.clear()
                    if pending:
                        inserter.append(bytes(pending))
                    result = inserter.finish()
                elapsed = time.monotonic() - started
            except ClickHouseError:
                raise
            except Exception as ex:
                raise ClickHouseError.from_engine(ex) from None
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
        summary = {
            "read_rows": str(result.rows_written),
            "read_bytes": str(result.bytes_written),
            "written_rows": str(result.rows_written),
            "written_bytes": str(result.bytes_written),
            "total_rows_to_read": "0",
            "result_rows": str(result.rows_written),
            "result_bytes": str(result.bytes_written),
            "elapsed_ns": str(int(elapsed * 1e9)),
        }
        response_headers = self._common_headers(query_id, settings, summary)
        response_headers.append(("Content-Type", "text/plain; charset=UTF-8"))
        return FrontResponse(200, b"", response_headers)

    def _common_headers(
        self, query_id: str, settings: dict[str, str], summary: dict[str, str]
    ) -> list[tuple[str, str]]:
        return [
            ("X-ClickHouse-Server-Display-Name", _DISPLAY_NAME),
            ("X-ClickHouse-Query-Id", query_id),
            ("X-ClickHouse-Timezone", settings.get("session_timezone") or self.timezone),
            ("X-ClickHouse-Summary", json.dumps(summary, separators=(",", ":"))),
        ]

    def _connect(self, database: str, settings: dict[str, str]) -> Any:
        """A fresh chDB connection with the request's database and settings (caller holds the lock).

        A fresh connection per request is also the guard against chDB returning a failed query's leftover rows
        in front of the next query's result on the same connection.
        """
        if self._closed:
            raise ClickHouseError.own("STD_EXCEPTION", "the test front is shutting down")
        conn = self._chdb.connect(self._path)
        try:
            if database:
                conn.query(f"USE {_quote_identifier(database)}", "TabSeparated")
            ordered = [(k, v) for k, v in settings.items() if k != "readonly"]
            if "readonly" in settings:
                ordered.append(("readonly", settings["readonly"]))
            for key, value in ordered:
                if not _SETTING_NAME_RE.match(key):
                    raise ClickHouseError.own("UNKNOWN_SETTING", f"Unknown setting '{key}'")
                conn.query(f"SET {key} = {_quote_value(value)}", "TabSeparated")
        except ClickHouseError:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        except Exception as ex:
            with contextlib.suppress(Exception):
                conn.close()
            raise ClickHouseError.from_engine(ex) from None
        return conn


# ---------------------------------------------------------------------------------------------------------------
# HTTP server


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], front: ChdbHttpFront) -> None:
        self.front = front
        super().__init__(address, _Handler)


class _BadRequest(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer
    server_version = "ClickHouse-chDB-test-front"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)

    def _read_body(self) -> IO[bytes] | None:
        transfer_encoding = self.headers.get("Transfer-Encoding", "").lower()
        length = self.headers.get("Content-Length")
        if "chunked" not in transfer_encoding and length is None:
            if self.command == "POST":
                raise ClickHouseError.own(
                    "HTTP_LENGTH_REQUIRED",
                    "The Transfer-Encoding is not chunked and there is no Content-Length header for POST request",
                )
            return None
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX)  # noqa: SIM115
        if "chunked" in transfer_encoding:
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequest("bad chunk size line") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self._copy(size, spool)
                self.rfile.readline(65537)
        else:
            self._copy(int(length or 0), spool)
        spool.seek(0)
        return spool

    def _copy(self, size: int, out: IO[bytes]) -> None:
        remaining = size
        while remaining > 0:
            data = self.rfile.read(min(remaining, _CHUNK))
            if not data:
                raise _BadRequest("request body ended early")
            out.write(data)
            remaining -= len(data)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        body: IO[bytes] | None = None
        try:
            try:
                body = self._read_body()
            except _BadRequest as ex:
                self.close_connection = True
                self._send(
                    FrontResponse(400, f"Bad request: {ex}\n".encode(), [("Content-Type", "text/plain")])
                )
                return
            except ClickHouseError as err:
                self.close_connection = True
                self._send(self.server.front._error_response(err, ""))
                return
            path = split.path or "/"
            headers = {k.lower(): v for k, v in self.headers.items()}
            has_query = any(key == "query" for key, _ in parse_qsl(split.query, keep_blank_values=True))
            if path in ("/ping", "/replicas_status") or (
                path == "/" and self.command == "GET" and not has_query
            ):
                self._send(FrontResponse(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")]))
                return
            if path != "/":
                message = f"There is no handle {path}\n\nUse / or /ping for health checks.\n"
                self._send(
                    FrontResponse(404, message.encode(), [("Content-Type", "text/plain; charset=UTF-8")])
                )
                return
            request = FrontRequest(method=self.command, query_string=split.query, headers=headers, body=body)
            self._send(self.server.front.execute(request))
        finally:
            if body is not None:
                body.close()

    def _send(self, response: FrontResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Keep-Alive", "timeout=3600")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()


def serve(
    data_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    user: str = "default",
    password: str = "",
    stop: threading.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Run the front until ``stop`` is set (blocking)."""
    stop = stop or threading.Event()
    front = ChdbHttpFront(data_dir, user=user, password=password)
    server = _FrontServer((host, port), front)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="front-http", daemon=True
    )
    thread.start()
    try:
        if on_ready is not None:
            on_ready(server.server_address[1])
        while not stop.wait(0.5):
            pass
    finally:
        started = time.monotonic()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        front.close()
        logger.info("stopped in %.2fs", time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TEST HARNESS: minimal ClickHouse HTTP interface over chDB")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default="")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (parent died)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s clickhouse_http %(levelname)s %(message)s",
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.exit_on_stdin_eof:

        def _watch_stdin() -> None:
            # os.read on the raw fd: a daemon thread blocked in sys.stdin's buffered reader aborts shutdown
            with contextlib.suppress(OSError):
                while os.read(0, 4096):
                    pass
            stop.set()

        threading.Thread(target=_watch_stdin, name="stdin-watch", daemon=True).start()

    def _ready(port: int) -> None:
        logger.info("listening on %s:%d, data dir %s", args.host, port, args.data_dir)
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()

    serve(args.data_dir, args.host, args.port, args.user, args.password, stop=stop, on_ready=_ready)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Test helper: run the front as a subprocess


class ClickHouseHttpFrontProcess:
    """The front in its own process (chDB allows one data directory per process)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "default",
        password: str = "",
        tz: str | None = "UTC",
        startup_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.tz = tz
        self.startup_timeout = startup_timeout
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=200)
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        if self.tz:
            env["TZ"] = self.tz
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        cmd = [
            sys.executable,
            "-m",
            "tests.fakes.clickhouse_http",
            "--data-dir",
            self.data_dir,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--user",
            self.user,
            "--password",
            self.password,
            "--exit-on-stdin-eof",
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        ready: deque[int] = deque()
        got_ready = threading.Event()
        proc = self.proc

        def _read_stdout() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith("READY ") and not got_ready.is_set():
                    ready.append(int(line.split()[1]))
                    got_ready.set()
            got_ready.set()

        def _read_stderr() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                self.stderr_tail.append(line)
                sys.stderr.write(f"[clickhouse-http-front] {line}\n")

        for target in (_read_stdout, _read_stderr):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        if not got_ready.wait(self.startup_timeout) or not ready:
            self.stop()
            tail = "\n".join(self.stderr_tail)
            raise RuntimeError(f"ClickHouse HTTP test front did not start (rc={proc.returncode}):\n{tail}")
        self.port = ready[0]
        return self.base_url

    def stop(self, timeout: float = 20.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for thread in self._threads:
            thread.join(timeout=5)
        return proc.returncode


@contextlib.contextmanager
def clickhouse_http_front(
    data_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    user: str = "default",
    password: str = "",
    tz: str | None = "UTC",
    startup_timeout: float = 60.0,
) -> Iterator[str]:
    """Start the front over ``data_dir`` in a subprocess; yield its base URL (``http://127.0.0.1:PORT``).

    The subprocess runs with ``TZ=tz`` (UTC by default, like a typical server) and stops at exit.
    """
    front = ClickHouseHttpFrontProcess(
        data_dir, host=host, port=port, user=user, password=password, tz=tz, startup_timeout=startup_timeout
    )
    url = front.start()
    try:
        yield url
    finally:
        rc = front.stop()
        if rc not in (0, None):
            logger.warning("ClickHouse HTTP test front exited with %s", rc)


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The engine is already closed (front.close()); skip interpreter finalisation, which spends seconds
    # tearing down chDB's native thread pools and can trip over daemon threads.
    os._exit(exit_code)
