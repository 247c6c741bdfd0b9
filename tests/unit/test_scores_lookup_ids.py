"""The scores store's id look-ups: safe ids written into the query as a literal, split under the query size
limit; anything else bound as a parameter."""

from __future__ import annotations

import re
import uuid

from connectors.clickhouse.id_literals import id_queries

SQL = "SELECT ScoreId FROM scores WHERE ScoreId IN {score_ids:Array(String)}"


def test_safe_ids_are_written_out_in_queries_under_the_size_limit() -> None:
    ids = [str(uuid.uuid4()) for _ in range(12_000)]
    queries = id_queries(SQL, "score_ids", ids)
    assert len(queries) > 1
    assert all(params == {} and len(sql.encode()) < 256 * 1024 for sql, params in queries)
    written = [
        i for sql, _ in queries for i in re.findall(r"splitByChar\(',', '([^']*)'\)", sql)[0].split(",")
    ]
    assert written == ids


def test_ids_that_would_need_quoting_are_bound() -> None:
    ids = ["a", "it's"]
    assert id_queries(SQL, "score_ids", ids) == [(SQL, {"score_ids": ids})]
