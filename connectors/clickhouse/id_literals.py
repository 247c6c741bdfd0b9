"""Look-ups by many ids without binding them: validated ids written into the SQL as one literal, split under
ClickHouse's query size limit (the scores store's trace and id look-ups, thousands of ids per log segment)."""

from __future__ import annotations

import re
from typing import Any

from tracejudge_client.validation import MAX_ID

_SAFE_IDS = re.compile(r"[A-Za-z0-9._:-]*")  # needs no quoting in a SQL string literal
_MAX_LITERAL = 200_000  # characters of ids per look-up; ClickHouse's max_query_size is 256 KiB by default


def id_queries(sql: str, name: str, ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """`sql` and its parameters, with the `{name:Array(String)}` parameter written out as a literal when every
    id is of the safe alphabet (validated score ids, hex trace ids): one regex check instead of
    clickhouse-connect's escaping of each character (~8 us a score for a segment's thousands of ids). One string
    literal split by ClickHouse (a constant: the IN set and the bloom-filter index work as with an array), not
    one literal per id, which clickhouse-connect's comment scan would visit one by one in Python. A
    query's text is bounded (`max_query_size`), so the ids are split over as many queries as they need.
    Otherwise `sql` as it is with `ids` bound."""
    longest = max(map(len, ids), default=0)
    if longest > MAX_ID or _SAFE_IDS.fullmatch("".join(ids)) is None:
        return [(sql, {name: ids})]
    per_query = _MAX_LITERAL // (longest + 1)
    param = f"{{{name}:Array(String)}}"
    return [
        (sql.replace(param, "splitByChar(',', '" + ",".join(ids[i : i + per_query]) + "')"), {})
        for i in range(0, len(ids), per_query)
    ]
