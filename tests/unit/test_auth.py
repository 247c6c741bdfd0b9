"""API keys as objects (issue 13.1): the key format, the ring's verification and reloads, sessions, which
scope each path needs, the start-up refusal, and the decoder dropping spans of other projects."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from connectors.api.access import api_scope, limited_may
from connectors.auth.exposure import check_exposure, is_loopback
from connectors.auth.keys import ApiKey, hash_secret, new_key, parse_scopes, split_key
from connectors.auth.middleware import bearer_token, same_origin
from connectors.auth.ring import KeyRing
from connectors.auth.session import SessionSigner, load_secret
from connectors.auth.sql_scope import SqlRefused, confine
from connectors.otlp.builder import restricted
from connectors.otlp.decode import decode_json
from connectors.otlp.ingest import normalizer_from
from dataflow.config import IngestConfig
from dataflow.errors import ConfigError

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "testdata" / "otlp"


class FakeStore:
    def __init__(self) -> None:
        self.keys: list[ApiKey] = []

    def fingerprint(self) -> str:
        return str([(k.key_id, k.revoked_at) for k in self.keys])

    def load(self) -> list[ApiKey]:
        return list(self.keys)

    def add(self, scopes: str, projects: frozenset[str] = frozenset()) -> tuple[ApiKey, str]:
        key_id, token, digest = new_key()
        key = ApiKey(key_id, "k", digest, parse_scopes(scopes), projects, T0)
        self.keys.append(key)
        return key, token


def test_key_format_and_hash() -> None:
    key_id, token, digest = new_key()
    parts = split_key(token)
    assert parts is not None and parts[0] == key_id and hash_secret(parts[1]) == digest
    assert digest not in token and len(parts[1]) >= 43  # 32 random bytes, urlsafe base64
    for bad in ("", "tj_", "tj_xyz_s", "tj_0123456789ab", "tj_0123456789ab_", "Bearer x", "tj_" + "a" * 300):
        assert split_key(bad) is None


def test_scopes() -> None:
    assert parse_scopes("ingest, read") == {"ingest", "read"}
    with pytest.raises(ValueError, match="ingest, read, write, admin"):
        parse_scopes("read,root")
    admin = ApiKey("a" * 12, "a", "", frozenset({"admin"}), frozenset({"p"}), T0)
    assert admin.allows("ingest") and admin.allows("write") and not admin.limited
    reader = ApiKey("b" * 12, "b", "", frozenset({"read"}), frozenset({"p"}), T0)
    assert not reader.allows("write") and reader.limited and reader.allows_project("p")


def test_ring_verifies_reloads_and_stays_on_after_the_last_revoke() -> None:
    store = FakeStore()
    ring = KeyRing(store)
    ring.refresh(force=True)
    assert not ring.enabled
    key, token = store.add("read")
    assert ring.verify(token) is None  # not loaded yet
    assert ring.refresh() and ring.enabled and ring.verify(token) == key
    assert not ring.refresh()  # nothing changed
    key_id, secret = token[3:].split("_", 1)
    assert ring.verify(f"tj_{key_id}_{secret}x") is None and ring.verify("tj_0123456789ab_" + secret) is None
    store.keys = [ApiKey(key.key_id, key.name, key.hash, key.scopes, key.projects, T0, T0)]
    ring.refresh()
    assert ring.verify(token) is None and ring.by_id(key.key_id) is None and ring.enabled
    assert KeyRing(store, enabled=False).enabled is False


def test_session_cookie_is_signed_and_expires(tmp_path: Path) -> None:
    secret = load_secret(tmp_path)
    assert load_secret(tmp_path) == secret and (tmp_path / "session_secret").stat().st_mode & 0o077 == 0
    signer = SessionSigner(secret, 60)
    value = signer.issue("0123456789ab")
    assert signer.key_id(value) == "0123456789ab"
    assert signer.key_id(value.replace("0123456789ab", "ba9876543210")) is None
    assert SessionSigner(b"other", 60).key_id(value) is None
    assert SessionSigner(secret, -1).key_id(SessionSigner(secret, -1).issue("0123456789ab")) is None
    assert signer.key_id("garbage") is None


def test_authorization_header_and_origin() -> None:
    assert bearer_token("Bearer tj_x") == "tj_x" and bearer_token("bearer  tj_x ") == "tj_x"
    basic = "Basic " + base64.b64encode(b"pk-lf-1:tj_secret").decode()
    assert bearer_token(basic) == "tj_secret"
    assert (
        bearer_token("Basic !!") is None and bearer_token("Digest x") is None and bearer_token(None) is None
    )
    host = {"host": "tj.example:8080"}
    assert same_origin(Headers({**host, "origin": "https://tj.example:8080"}))
    assert same_origin(Headers({**host, "referer": "http://tj.example:8080/rules/new"}))
    assert not same_origin(Headers({**host, "origin": "https://evil.example"}))
    assert not same_origin(Headers(host)) and not same_origin(Headers({**host, "origin": "null"}))


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/healthz", None),
        ("GET", "/login", None),
        ("GET", "/static/app.css", None),
        ("GET", "/metrics", "read"),
        ("GET", "/api/v1/traces", "read"),
        ("POST", "/api/v1/traces", "ingest"),
        ("POST", "/api/public/otel/v1/traces", "ingest"),
        ("POST", "/api/v1/sql", "read"),
        ("POST", "/api/v1/rules/test", "read"),
        ("POST", "/api/v1/rules", "write"),
        ("DELETE", "/api/v1/scores/x", "write"),
        ("POST", "/api/v1/rules/r/rewind", "write"),
        ("GET", "/api/v1/keys", "admin"),
        ("DELETE", "/api/v1/keys/0123456789ab", "admin"),
        ("GET", "/traces", "read"),
        ("POST", "/rules/new", "write"),
    ],
)
def test_scope_of_each_path(method: str, path: str, scope: str | None) -> None:
    assert api_scope(method, path) == scope


def test_what_a_project_limited_key_may_call() -> None:
    assert limited_may("GET", "/api/v1/traces") and limited_may("GET", "/api/v1/connections")
    assert not limited_may("POST", "/api/v1/connections") and not limited_may("GET", "/traces")


def test_a_network_address_without_keys_is_refused() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("tj.example")
    check_exposure("127.0.0.1", auth_on=False, insecure=False)
    check_exposure("0.0.0.0", auth_on=True, insecure=False)
    check_exposure("0.0.0.0", auth_on=False, insecure=True)
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 with no API key.*--insecure"):
        check_exposure("0.0.0.0", auth_on=False, insecure=False)


def test_spans_of_other_projects_are_rejected_and_named() -> None:
    doc = json.loads((FIXTURES / "project_from_tracejudge_project.json").read_text())
    body = json.dumps(doc).encode()
    norm = normalizer_from(IngestConfig())
    mine = decode_json(body, restricted(norm, frozenset({"p-tracejudge.project"})), 0)
    assert mine.rejected == 0 and mine.accepted > 0
    other = decode_json(body, restricted(norm, frozenset({"p1"})), 0)
    assert other.accepted == 0 and other.reject_reasons == {"project": mine.accepted}
    assert "is not one of this API key's" in other.error_message()
    assert restricted(norm, None) is norm


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT count() FROM otel_traces",
         "SELECT count() FROM (SELECT * FROM otel_traces WHERE Project IN ('o''k', 'p1')) AS otel_traces"),
        ("SELECT Name FROM scores AS s FINAL",
         "SELECT Name FROM (SELECT * FROM scores FINAL WHERE Project IN ('o''k', 'p1')) AS s"),
        ("SELECT 1 UNION ALL SELECT count() FROM rules WHERE Project = 'p2'",
         "SELECT 1 UNION ALL SELECT count() FROM (SELECT * FROM rules WHERE Project IN ('o''k', 'p1')) AS rules "
         "WHERE Project = 'p2'"),
        ("SELECT * FROM jobs WHERE JobId IN (SELECT JobId FROM jobs)",
         "SELECT * FROM (SELECT * FROM jobs WHERE Project IN ('o''k', 'p1')) AS jobs WHERE JobId IN "
         "(SELECT JobId FROM (SELECT * FROM jobs WHERE Project IN ('o''k', 'p1')) AS jobs)"),
    ],
)  # fmt: skip
def test_sql_of_a_limited_key_reads_its_projects_only(query: str, expected: str) -> None:
    assert confine(query, frozenset({"p1", "o'k"})) == expected


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM keys", "SELECT * FROM (keys)", "SELECT * FROM otel_traces, connections",
        "SELECT * FROM `keys`", "SELECT * FROM system.tables", "SELECT * FROM default.otel_traces",
        "SELECT * FROM otel_traces_trace_id_ts", "SELECT * FROM numbers(3)", "SELECT * FROM remote('h', default.keys)",
        "SELECT * FROM view(SELECT * FROM keys)", "WITH otel_traces AS (SELECT 1) SELECT * FROM otel_traces",
        "SELECT 1 FROM otel_traces WHERE TraceId IN keys", "SELECT 1 FROM otel_traces WHERE TraceId GLOBAL IN keys",
        "SELECT file('x')", "SELECT dictGet('d', 'a', 1)", "SELECT joinGet('j', 'v', 1)", "SELECT * FROM scores INTERSECT SELECT * FROM keys",
        "SELECT 1; SELECT 2", "INSERT INTO scores VALUES (1)", "EXPLAIN SELECT * FROM keys", "DESCRIBE keys",
        "SELEC broken",
    ],
)  # fmt: skip
def test_sql_a_limited_key_may_not_run(query: str) -> None:
    with pytest.raises(SqlRefused, match="a key limited to projects may not use"):
        confine(query, frozenset({"p1"}))
