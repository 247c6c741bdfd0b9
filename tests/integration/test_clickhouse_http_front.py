"""The chDB-backed ClickHouse HTTP test front works with the real clickhouse-connect HTTP client."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.fakes.clickhouse_http import ClickHouseHttpFrontProcess, clickhouse_http_front

SPANS_DDL = """
CREATE TABLE {name} (
    Timestamp DateTime64(9),
    TraceId String,
    ServiceName LowCardinality(String),
    SpanAttributes Map(LowCardinality(String), String),
    Duration UInt64,
    Events Nested(
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ),
    Tags Array(String)
) ENGINE = MergeTree ORDER BY (ServiceName, Timestamp)
SETTINGS non_replicated_deduplication_window = 100
"""


@pytest.fixture(scope="module")
def front_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with clickhouse_http_front(tmp_path_factory.mktemp("chfront") / "data") as url:
        yield url


def _hp(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _client(url: str, **kwargs: Any) -> Client:
    host, port = _hp(url)
    return clickhouse_connect.get_client(host=host, port=port, username="default", password="", **kwargs)


@pytest.fixture(scope="module")
def client(front_url: str) -> Iterator[Client]:
    c = _client(front_url)
    yield c
    c.close()


_counter = iter(range(1_000_000))


def _table(client: Client, ddl: str = SPANS_DDL) -> str:
    name = f"t_{next(_counter)}"
    client.command(ddl.format(name=name))
    return name


def _spans(n: int, offset: int = 0, pad: int = 0) -> pa.Table:
    base = 1_700_000_000_123_456_789
    return pa.table(
        {
            "Timestamp": pa.array([base + i for i in range(offset, offset + n)], pa.timestamp("ns")),
            "TraceId": [f"trace-{i:06d}" + "x" * pad for i in range(offset, offset + n)],
            "ServiceName": [f"svc-{i % 3}" for i in range(offset, offset + n)],
            "SpanAttributes": pa.array(
                [[("llm.model", f"m{i}"), ("quote", 'it\'s "q" ü')] for i in range(offset, offset + n)],
                pa.map_(pa.string(), pa.string()),
            ),
            "Duration": pa.array(list(range(offset, offset + n)), pa.uint64()),
            "Events.Timestamp": pa.array(
                [[base + i, base + i + 1] for i in range(offset, offset + n)], pa.list_(pa.timestamp("ns"))
            ),
            "Events.Name": [["start", "end"] for _ in range(n)],
            "Events.Attributes": pa.array(
                [[[("k", str(i))], []] for i in range(offset, offset + n)],
                pa.list_(pa.map_(pa.string(), pa.string())),
            ),
            "Tags": [["a", "b"] if i % 2 else [] for i in range(offset, offset + n)],
        }
    )


def _raw(
    url: str, query: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    target = f"{url}/?query={urllib.request.quote(query)}" if body is not None else f"{url}/"
    data = body if body is not None else query.encode()
    req = urllib.request.Request(target, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def test_handshake_command_ping_and_dsn(front_url: str, client: Client) -> None:
    assert client.server_version and client.server_version[0].isdigit()
    assert client.ping()
    assert client.command("SELECT 1") == 1
    assert client.command("SELECT 'a', 2") == ["a", "2"]
    assert client.command("SELECT 1 WHERE 0") == ""
    dsn_client = clickhouse_connect.get_client(dsn=front_url)
    assert dsn_client.query("SELECT timezone()").result_rows == [("UTC",)]
    dsn_client.close()


def test_insert_arrow_roundtrip_query_arrow_and_query(client: Client) -> None:
    table = _table(client)
    tbl = _spans(50)
    summary = client.insert_arrow(table, tbl, settings={"insert_deduplication_token": "roundtrip-1"})
    assert summary.written_rows == 50

    back = client.query_arrow(f"SELECT * FROM {table} ORDER BY Duration")
    assert back.num_rows == 50
    assert (
        back.column("Timestamp").cast(pa.int64()).to_pylist()
        == tbl.column("Timestamp").cast(pa.int64()).to_pylist()
    )
    assert back.column("TraceId").to_pylist() == tbl.column("TraceId").to_pylist()
    assert back.column("ServiceName").to_pylist() == tbl.column("ServiceName").to_pylist()
    assert back.column("SpanAttributes").to_pylist() == tbl.column("SpanAttributes").to_pylist()
    assert back.column("Events.Name").to_pylist() == tbl.column("Events.Name").to_pylist()
    assert back.column("Events.Attributes").to_pylist() == tbl.column("Events.Attributes").to_pylist()
    assert back.column("Tags").to_pylist() == tbl.column("Tags").to_pylist()
    ev_ts = back.column("Events.Timestamp").to_pylist()
    assert [[int(t.value) for t in row] for row in ev_ts] == [
        [t.value for t in row] for row in tbl.column("Events.Timestamp").to_pylist()
    ]

    res = client.query(
        f"SELECT Timestamp, ServiceName, SpanAttributes, Events.Name, Tags FROM {table} WHERE Duration = 1"
    )
    ((ts, svc, attrs, names, tags),) = res.result_rows
    assert ts == dt.datetime(2023, 11, 14, 22, 13, 20, 123456)  # naive UTC, cut to microseconds
    assert svc == "svc-1"
    assert attrs == {"llm.model": "m1", "quote": 'it\'s "q" ü'}
    assert names == ["start", "end"]
    assert tags == ["a", "b"]

    # Native insert (client.insert), default client compression (lz4 body, gzip response)
    client.insert(
        table,
        [[dt.datetime(2024, 1, 2, 3, 4, 5, 6), "native", "svc-n", {"k": "v"}, 7, [], [], [], ["t"]]],
        column_names=[
            "Timestamp",
            "TraceId",
            "ServiceName",
            "SpanAttributes",
            "Duration",
            "Events.Timestamp",
            "Events.Name",
            "Events.Attributes",
            "Tags",
        ],
    )
    assert client.query(
        f"SELECT SpanAttributes['k'], Tags FROM {table} WHERE TraceId = 'native'"
    ).result_rows == [("v", ["t"])]


@pytest.mark.parametrize("compress", [False, "gzip", "zstd", "lz4", True])
def test_compression_variants(front_url: str, compress: bool | str) -> None:
    c = _client(front_url, compress=compress)
    table = _table(c, "CREATE TABLE {name} (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    c.insert(table, [[i, "v" * (i % 50)] for i in range(5000)], column_names=["a", "s"])
    assert c.query(f"SELECT count(), sum(length(s)) FROM {table}").result_rows == [
        (5000, sum(i % 50 for i in range(5000)))
    ]
    assert c.query(f"SELECT a FROM {table} ORDER BY a LIMIT 3").result_rows == [(0,), (1,), (2,)]
    c.close()


def test_parameters_both_styles(client: Client) -> None:
    table = _table(client, "CREATE TABLE {name} (k String, v UInt32) ENGINE = MergeTree ORDER BY k")
    tricky = ["it's", 'say "hi"', "back\\slash", "tab\tnew\nline", "ünïcödé ✓ 日本語 🚀", "100%", ""]
    client.insert(table, [[s, i] for i, s in enumerate(tricky)], column_names=["k", "v"])
    for i, s in enumerate(tricky):
        server_side = client.query(
            f"SELECT v, {{s:String}} FROM {table} WHERE k = {{s:String}}", parameters={"s": s}
        )
        assert server_side.result_rows == [(i, s)], s
        client_side = client.query(f"SELECT v, %(s)s FROM {table} WHERE k = %(s)s", parameters={"s": s})
        assert client_side.result_rows == [(i, s)], s
        arrow = client.query_arrow(f"SELECT k FROM {table} WHERE k = {{s:String}}", parameters={"s": s})
        assert arrow.column("k").to_pylist() == [s]
    assert client.query("SELECT {n:Nullable(String)} IS NULL", parameters={"n": None}).result_rows == [
        (True,)
    ]
    big = "é" * 100_000  # large bind parameters travel as multipart/form-data
    assert client.query("SELECT lengthUTF8({b:String})", parameters={"b": big}).result_rows == [(100_000,)]
    assert client.command("SELECT {x:UInt8} + 1", parameters={"x": 41}) == 42


def test_dedup_token(client: Client) -> None:
    table = _table(client)
    tbl = _spans(20)
    client.insert_arrow(table, tbl, settings={"insert_deduplication_token": "tok-1"})
    client.insert_arrow(table, tbl, settings={"insert_deduplication_token": "tok-1"})
    assert client.command(f"SELECT count() FROM {table}") == 20
    client.insert_arrow(table, tbl, settings={"insert_deduplication_token": "tok-2"})
    assert client.command(f"SELECT count() FROM {table}") == 40


def test_settings_final_database_and_limits(front_url: str, client: Client) -> None:
    table = _table(
        client,
        "CREATE TABLE {name} (k String, ver UInt32, v String) ENGINE = ReplacingMergeTree(ver) ORDER BY k",
    )
    client.insert(table, [["a", 1, "old"]], column_names=["k", "ver", "v"])
    client.insert(table, [["a", 2, "new"]], column_names=["k", "ver", "v"])
    assert client.query(f"SELECT v FROM {table}", settings={"final": 1}).result_rows == [("new",)]
    assert client.query_arrow(f"SELECT v FROM {table}", settings={"final": 1}).column("v").to_pylist() == [
        "new"
    ]

    client.command("CREATE DATABASE IF NOT EXISTS other")
    client.command("CREATE TABLE IF NOT EXISTS other.only_here (x UInt8) ENGINE = Memory")
    client.command("INSERT INTO other.only_here VALUES (7)")
    other = _client(front_url, database="other")
    assert other.query("SELECT x FROM only_here").result_rows == [(7,)]
    other.close()

    with pytest.raises(DatabaseError) as info:
        client.query("SELECT number FROM numbers(100)", settings={"max_result_rows": 10, "max_block_size": 5})
    assert "TOO_MANY_ROWS_OR_BYTES" in str(info.value)
    with pytest.raises(DatabaseError) as info:
        client.command("SELECT count() FROM numbers(100000000000)", settings={"max_execution_time": 0.3})
    assert "TIMEOUT_EXCEEDED" in str(info.value)


def test_readonly_client_refuses_writes(front_url: str, client: Client) -> None:
    table = _table(client, "CREATE TABLE {name} (a UInt64) ENGINE = MergeTree ORDER BY a")
    ro = _client(front_url, settings={"max_execution_time": 10, "max_result_rows": 1000, "readonly": 1})
    assert ro.query(f"SELECT count() FROM {table}").result_rows == [(0,)]
    with pytest.raises(DatabaseError) as info:
        ro.command(f"INSERT INTO {table} VALUES (1)")
    assert "READONLY" in str(info.value) or "readonly" in str(info.value)
    with pytest.raises(DatabaseError):
        ro.insert_arrow(table, pa.table({"a": pa.array([1], pa.uint64())}))
    with pytest.raises(DatabaseError):
        ro.command(f"DROP TABLE {table}")
    ro.close()
    # On HTTP a per-call readonly does not stick to the client (unlike the chdb:// backend)
    with pytest.raises(DatabaseError):
        client.command(f"INSERT INTO {table} VALUES (1)", settings={"readonly": 1})
    client.command(f"INSERT INTO {table} VALUES (2)")
    assert client.command(f"SELECT count() FROM {table}") == 1


def test_error_then_success_on_same_client(front_url: str, client: Client) -> None:
    for _ in range(2):
        with pytest.raises(DatabaseError) as info:
            client.query(
                "SELECT number FROM numbers(100000)", settings={"max_result_rows": 10, "max_block_size": 5}
            )
        assert "Code: 396" in str(info.value)
        assert client.query("SELECT 42 AS x").result_rows == [(42,)]
        with pytest.raises(DatabaseError):
            client.query_arrow(
                "SELECT throwIf(number = 5000) FROM numbers(10000)", settings={"max_block_size": 100}
            )
        assert client.query_arrow("SELECT number FROM numbers(3)").column("number").to_pylist() == [0, 1, 2]
        assert client.query("SELECT number FROM numbers(3)").result_rows == [(0,), (1,), (2,)]

    # the wire format of errors, as ClickHouse sends it
    status, headers, body = _raw(front_url, "SELEC 1")
    assert status == 400
    assert headers["X-ClickHouse-Exception-Code"] == "62"
    assert body.startswith(b"Code: 62. DB::Exception: ")
    status, headers, body = _raw(front_url, "SELECT * FROM no_such_table")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    status, headers, body = _raw(front_url, "SELECT 1; SELECT 2")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    assert b"Multi-statements" in body
    status, headers, body = _raw(front_url, "SELECT 1 INTO OUTFILE '/tmp/should_not_exist'")
    assert headers["X-ClickHouse-Exception-Code"] == "358"
    with pytest.raises(DatabaseError) as info:
        client.command("SELECT 1; SELECT 2")
    assert "Multi-statements" in str(info.value)

    status, headers, body = _raw(front_url, "SELECT 1 AS one FORMAT JSONEachRow")
    assert status == 200 and json.loads(body) == {"one": 1}
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert "read_rows" in json.loads(headers["X-ClickHouse-Summary"])
    assert headers["X-ClickHouse-Query-Id"]


def test_authentication(front_url: str) -> None:
    host, port = _hp(front_url)
    with pytest.raises(DatabaseError) as info:
        clickhouse_connect.get_client(host=host, port=port, username="default", password="wrong")
    assert "516" in str(info.value)


@pytest.mark.parametrize("ncols", [9, 10, 32])
def test_native_insert_column_counts_and_raw_bodies(front_url: str, client: Client, ncols: int) -> None:
    # Native data starts with the column count: 9 = TAB, 10 = LF, 32 = space right after "FORMAT Native\n"
    cols = ", ".join(f"c{i} UInt32" for i in range(ncols))
    table = _table(client, f"CREATE TABLE {{name}} ({cols}) ENGINE = MergeTree ORDER BY c0")
    for compress in (False, True):
        c = _client(front_url, compress=compress)
        c.insert(
            table,
            [[r * 100 + i for i in range(ncols)] for r in range(3)],
            column_names=[f"c{i}" for i in range(ncols)],
        )
        c.close()
    assert client.query(f"SELECT c0, c{ncols - 1} FROM {table} ORDER BY c0").result_rows == [
        (0, ncols - 1),
        (0, ncols - 1),
        (100, 100 + ncols - 1),
        (100, 100 + ncols - 1),
        (200, 200 + ncols - 1),
        (200, 200 + ncols - 1),
    ]
    # raw_insert with a bytes block: the INSERT statement travels at the start of the body
    line = ",".join(str(7000 + i) for i in range(ncols)) + "\n"
    client.raw_insert(table, [f"c{i}" for i in range(ncols)], line.encode(), fmt="CSV")
    # command() with data: statement in the URL, VALUES data in the body
    client.command(f"INSERT INTO {table} (c0) VALUES", data="(9000), (9001)")
    assert client.command(f"SELECT countIf(c0 >= 7000) FROM {table}") == 3


def test_large_insert_20mb(client: Client) -> None:
    table = _table(client)
    tbl = _spans(20_000, pad=1000)  # ~20 MB of TraceId alone
    assert tbl.nbytes > 20_000_000
    client.insert_arrow(table, tbl, settings={"insert_deduplication_token": "big-1"})
    assert client.query(f"SELECT count(), sum(length(TraceId)) FROM {table}").result_rows == [
        (20_000, sum(len(s) for s in tbl.column("TraceId").to_pylist()))
    ]
    # ~20 MB through the Native path too: many blocks, each its own lz4 frame, chunked transfer encoding
    native = _table(client, "CREATE TABLE {name} (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    client.insert(native, [[i, f"{i:08d}" * 125] for i in range(20_000)], column_names=["a", "s"])
    assert client.query(f"SELECT count(), sum(length(s)), max(a) FROM {native}").result_rows == [
        (20_000, 20_000_000, 19_999)
    ]


def test_concurrent_writer_and_readers(front_url: str) -> None:
    setup = _client(front_url)
    table = _table(setup, "CREATE TABLE {name} (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            c = _client(front_url)
            for i in range(20):
                c.insert_arrow(
                    table,
                    pa.table({"a": pa.array(range(i * 100, i * 100 + 100), pa.uint64()), "s": ["x"] * 100}),
                )
            c.close()
        except BaseException as ex:  # pragma: no cover - reported below
            errors.append(ex)

    def reader() -> None:
        try:
            c = _client(front_url)
            for _ in range(20):
                assert c.query(f"SELECT count() FROM {table}").result_rows[0][0] % 100 == 0
                c.query_arrow(f"SELECT a FROM {table} ORDER BY a LIMIT 5")
                with pytest.raises(DatabaseError):
                    c.query("SELECT throwIf(1)")
            c.close()
        except BaseException as ex:  # pragma: no cover - reported below
            errors.append(ex)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert setup.command(f"SELECT count() FROM {table}") == 2000
    setup.close()


def test_subprocess_stops_on_sigterm_and_data_persists(tmp_path: Path) -> None:
    data = tmp_path / "data"
    front = ClickHouseHttpFrontProcess(data)
    url = front.start()
    c = _client(url)
    c.command("CREATE TABLE keep (a UInt8) ENGINE = MergeTree ORDER BY a")
    c.command("INSERT INTO keep VALUES (1), (2)")
    c.close()
    assert front.stop() == 0
    with clickhouse_http_front(data) as url2:  # the directory lock was released
        c2 = _client(url2)
        assert c2.command("SELECT sum(a) FROM keep") == 3
        c2.close()
