"""Confining a read-only SQL query to an API key's projects, by rewriting it (sqlglot, ClickHouse dialect).

Each reference to a table that has a `Project` column (`otel_traces`, `scores`, `rules`, `jobs`) becomes a
subquery of that table filtered to the key's projects, under the same name or alias, so the query reads as
written and sees nothing else. Anything the rewrite cannot vouch for is refused rather than guessed at: another
table (system tables, the lookup table, keys, connections), a database-qualified name, a table function
(`remote`, `url`, `file`, `merge`, `view`, `numbers`...), `IN <table>`, functions that read tables by name
(`joinGet`, `dictGet`, `file`...), `WITH` clauses (a CTE named like a table would shadow it) and anything that is not
one SELECT (or UNION of SELECTs). Values are quoted by sqlglot's generator, never pasted in by hand.
"""

from __future__ import annotations

from typing import NoReturn

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

PROJECT_TABLES = frozenset({"otel_traces", "scores", "rules", "jobs"})
_TABLE_READERS = ("dict", "joinget", "hascolumnintable", "getsetting", "getserversetting", "file")


class SqlRefused(ValueError):
    """The query cannot be confined to the key's projects; the message says why (a 403)."""


def _refuse(why: str) -> NoReturn:
    msg = f"a key limited to projects may not use {why} in SQL"
    raise SqlRefused(msg)


def _check(stmt: exp.Expr) -> list[exp.Table]:
    """The table references to rewrite; SqlRefused for anything else that could read data."""
    if not isinstance(stmt, exp.Query):
        _refuse("anything but a SELECT")
    if stmt.find(exp.CTE) is not None:
        _refuse("WITH")
    for node in stmt.find_all(exp.In):
        if node.args.get("field") is not None:
            _refuse("IN <table>")
    for func in stmt.find_all(exp.Func):
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if name.startswith(_TABLE_READERS):
            _refuse(f"{name}()")
    tables = list(stmt.find_all(exp.Table))
    for table in tables:
        if not isinstance(table.this, exp.Identifier):
            _refuse("table functions")
        if table.args.get("db") is not None or table.args.get("catalog") is not None:
            _refuse("database-qualified tables")
        if table.name not in PROJECT_TABLES:
            _refuse(f"the table {table.name!r} (only {', '.join(sorted(PROJECT_TABLES))})")
    return tables


def _filtered(table: exp.Table, final: bool, projects: list[str]) -> exp.Subquery:
    source: exp.Expression = exp.to_table(table.name)
    if final:
        source = exp.Final(this=source)
    inner = (
        exp.select("*")
        .from_(source)
        .where(exp.column("Project").isin(*(exp.Literal.string(p) for p in projects)))
    )
    return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name)))


def confine(sql: str, projects: frozenset[str]) -> str:
    """`sql`, reading only rows of `projects`; SqlRefused when it cannot be made to."""
    if not sql.lstrip(" \t\r\n(").upper().startswith("SELECT"):
        _refuse("anything but a SELECT (a query that starts with SELECT)")
    try:
        statements = [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except SqlglotError:
        _refuse("a query this server cannot check (it did not parse)")
    if len(statements) != 1:
        _refuse("more than one statement")
    stmt = statements[0]
    ordered = sorted(projects)
    for table in _check(stmt):
        parent = table.parent
        if isinstance(parent, exp.Final):
            parent.replace(_filtered(table, True, ordered))
        else:
            table.replace(_filtered(table, False, ordered))
    return stmt.sql(dialect="clickhouse")
