"""The typed filter tree compiled to a parameterised ClickHouse WHERE fragment over `otel_traces`.

Pure: it emits text and parameters, the ClickHouse connector runs them. The text holds only column names,
operators, function names, `NULL`, and the compiler's own constants (`''` for the root test, the number
pattern, `1e6`, `0.`); every value the user wrote (literals, attribute keys, LIKE patterns) and the case maps are
server-side parameters `{name:Type}`, passed as clickhouse-connect `parameters=`.
"""

from __future__ import annotations

import re
from typing import Any

from dataflow.rules.parser import (
    Call,
    Compare,
    Const,
    Expr,
    Field,
    IsNull,
    Like,
    Logic,
    MapValue,
    Not,
    ToNumber,
)
from dataflow.rules.python_compiler import NUMBER_TEXT, case_maps

COLUMNS: dict[str, str] = {
    "name": "SpanName",
    "input": "Input",
    "output": "Output",
    "kind": "SpanKind",
    "status_code": "StatusCode",
    "status_message": "StatusMessage",
    "service_name": "ServiceName",
    "project": "Project",
    "session_id": "SessionId",
    "duration_ms": "(Duration / 1e6)",
    "is_root": "(ParentSpanId = '')",
}
MAP_COLUMNS = {"attributes": "SpanAttributes", "resource": "ResourceAttributes"}
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
assert "'" not in NUMBER_TEXT and "\\" not in NUMBER_TEXT


class SqlCompiler:
    """Compiles one tree; parameters are named `{prefix}0`, `{prefix}1`, ... and shared when equal."""

    def __init__(self, prefix: str = "f") -> None:
        if not _PREFIX.fullmatch(prefix):
            msg = f"parameter prefix {prefix!r} is not a plain name"
            raise ValueError(msg)
        self.prefix = prefix
        self.params: dict[str, Any] = {}
        self._names: dict[tuple[str, str, str], str] = {}

    def param(self, value: str | float | bool, sql_type: str) -> str:
        key = (sql_type, type(value).__name__, repr(value))
        name = self._names.get(key)
        if name is None:
            name = f"{self.prefix}{len(self._names)}"
            self._names[key] = name
            self.params[name] = value
        return "{" + name + ":" + sql_type + "}"

    def emit(self, node: Expr) -> str:
        if isinstance(node, Field):
            return COLUMNS[node.name]
        if isinstance(node, MapValue):
            column, key = MAP_COLUMNS[node.map], self.param(node.key, "String")
            return f"if(mapContains({column}, {key}), {column}[{key}], NULL)"
        if isinstance(node, Const):
            return self._const(node.value)
        if isinstance(node, Call):
            return self._call(node.func, self.emit(node.arg))
        if isinstance(node, ToNumber):
            arg = self.emit(node.arg)
            # `+ 0.` turns -0 into 0: ClickHouse rewrites `x = a OR x = b OR x = c` into `x IN (a, b, c)` (and
            # `!=` chains into NOT IN), and its IN hashes -0. and 0. apart although `-0. = 0.` is true.
            return f"(if(match({arg}, '^{NUMBER_TEXT}$'), toFloat64OrNull({arg}), NULL) + 0.)"
        if isinstance(node, Compare):
            return f"({self.emit(node.left)} {node.op} {self.emit(node.right)})"
        if isinstance(node, Logic):
            return "(" + f" {node.op} ".join(self.emit(item) for item in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.emit(node.arg)})"
        if isinstance(node, IsNull):
            return f"({self.emit(node.arg)} IS NULL)"
        return self._like(node)

    def _const(self, value: str | float | bool | None) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return self.param(value, "Bool")
        if isinstance(value, float):
            return self.param(value + 0.0, "Float64")  # -0. -> 0., see ToNumber
        return self.param(value, "String")

    def _call(self, func: str, arg: str) -> str:
        if func == "length":
            return f"lengthUTF8({arg})"
        mapping = case_maps()[0 if func == "lower" else 1]
        source = self.param("".join(map(chr, mapping)), "String")
        target = self.param("".join(map(chr, mapping.values())), "String")
        return f"translateUTF8({arg}, {source}, {target})"

    def _like(self, node: Like) -> str:
        arg, pattern = self.emit(node.arg), self.param(node.pattern, "String")
        if node.caseless:
            arg, pattern = self._call("lower", arg), self._call("lower", pattern)
        return f"({arg} LIKE {pattern})"


def compile_sql(tree: Expr | None, prefix: str = "f") -> tuple[str, dict[str, Any]]:
    """The WHERE fragment and its parameters; the empty filter is `1`."""
    if tree is None:
        return "1", {}
    compiler = SqlCompiler(prefix)
    return compiler.emit(tree), compiler.params
