"""Which filter_rows conditions SQL Server can evaluate, so fewer rows are read.

A condition (or a conjunct of it) is pushed down as a WHERE clause with bound
parameters (:mod:`dtaas_dagster.sqlserver.where`) when it reads only source
columns that no earlier transform changed (a rename is fine) and SQL Server
gives the same answer as Arrow. Two kinds of pushdown:

- **exact**: SQL Server and Arrow agree row for row (numbers, bit, date,
  datetime2 read at full precision; ``IS [NOT] NULL`` on any column). The
  Arrow filter is then skipped;
- **superset**: SQL Server keeps at least the rows Arrow keeps (text ``=``,
  ``IN`` and ``LIKE`` on varchar/nvarchar with printable-ASCII literals,
  because SQL Server's usual collations ignore case and trailing blanks, and
  Arrow compares exactly; arrow-odbc sends parameters as VARCHAR, so other
  characters could be changed by the code page). The Arrow filter still runs
  on what is read, so the result is Arrow's.

Anything else (arithmetic, text ordering, ``datetime``/``time``/
``datetimeoffset`` columns, a ``NOT`` over a superset) stays in Arrow only. A
conjunction pushes its pushable parts; a disjunction only when every part is
pushable. The property test in dtaas_dagster_tests/transforms checks that both
paths keep the same rows against the SQL Server double.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from dtaas_dagster.sqlserver import where as sql
from dtaas_dagster.transforms.expressions import (
    And,
    Between,
    Column,
    Compare,
    InList,
    IsNull,
    Like,
    Literal,
    Node,
    Not,
    Or,
)

_EXACT_NUMERIC = {"tinyint", "smallint", "int", "bigint", "decimal", "numeric", "money", "smallmoney", "float", "real"}
# char/nchar are left out: their padding makes equality depend on how the value was stored.
_TEXT = {"varchar", "nvarchar"}
_ORDER = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class Pushdown:
    """The conditions pushed to SQL Server, as one predicate (their AND) and as the user wrote them."""

    predicate: sql.Predicate
    conditions: tuple[str, ...]

    @property
    def where(self) -> str:
        return sql.build_where(self.predicate)[0]


def combine_pushdown(pushed: Sequence[tuple[Any, str]]) -> Pushdown:
    predicates = tuple(p for p, _ in pushed)
    predicate = predicates[0] if len(predicates) == 1 else sql.SqlAnd(predicates)
    return Pushdown(predicate=predicate, conditions=tuple(text for _, text in pushed))


def _base_type(type_text: str) -> str:
    return type_text.split("(")[0].strip().lower()


def _precision(type_text: str) -> int | None:
    if "(" not in type_text:
        return None
    try:
        return int(type_text.split("(")[1].split(")")[0].split(",")[0])
    except ValueError:
        return None


class _Planner:
    def __init__(self, cols: Mapping[str, Any], source_types: Mapping[str, str]) -> None:
        self.cols = cols
        self.source_types = {k.lower(): v for k, v in source_types.items()}

    # column categories
    def kind(self, node: Node) -> str | None:
        """exact-number / bool / date / timestamp / text for a pushable column, else None."""
        if not isinstance(node, Column):
            return None
        col = self.cols[node.name]
        type_text = self.source_types.get(col.source.lower(), "")
        base = _base_type(type_text)
        arrow = col.type
        if base in _EXACT_NUMERIC and (
            pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_decimal(arrow)
        ):
            return "number"
        if base == "bit" and pa.types.is_boolean(arrow):
            return "bool"
        if base == "date" and pa.types.is_date(arrow):
            return "date"
        if base == "datetime2" and pa.types.is_timestamp(arrow) and arrow.tz is None:
            digits = _precision(type_text)
            digits = 7 if digits is None else digits
            if digits <= 6 or arrow.unit == "ns":
                return "timestamp"
        if base in _TEXT and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
            return "text"
        return None

    def column(self, node: Column) -> sql.SqlColumn:
        return sql.SqlColumn(self.cols[node.name].source)

    # literals
    @staticmethod
    def param(literal: Literal, kind: str) -> sql.SqlParam | None:
        value: Any = literal.value
        if literal.kind == "null":
            return sql.SqlParam(None, "bigint")
        if kind == "number" and literal.kind == "int":
            return sql.SqlParam(str(value), "bigint")
        if kind == "number" and literal.kind == "decimal":
            assert isinstance(value, decimal.Decimal)
            text = format(value, "f")
            scale = len(text.split(".")[1]) if "." in text else 0
            digits = len(text.replace("-", "").replace(".", "").lstrip("0"))
            if digits > 38 or scale > 38:
                return None
            return sql.SqlParam(text, f"decimal(38,{scale})")
        if kind == "number" and literal.kind == "float":
            return sql.SqlParam(repr(float(value)), "float")
        if kind == "bool" and literal.kind == "bool":
            return sql.SqlParam("1" if value else "0", "bit")
        if kind == "date" and literal.kind == "date":
            return sql.SqlParam(value.isoformat(), "date")
        if kind == "timestamp" and literal.kind in ("date", "timestamp"):
            moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
            return sql.SqlParam(moment.strftime("%Y-%m-%dT%H:%M:%S.%f"), "datetime2(7)")
        if kind == "text" and literal.kind == "string" and _ascii(str(value)):
            # arrow-odbc binds every parameter as VARCHAR: only ASCII survives every code page.
            return sql.SqlParam(str(value), "nvarchar")
        return None

    # predicates: (predicate or None, exact)
    def __call__(self, node: Node) -> tuple[sql.Predicate | None, bool]:
        if isinstance(node, And):
            parts = [self(item) for item in node.items]
            pushed = [p for p, _ in parts if p is not None]
            exact = all(p is not None and e for p, e in parts)
            if not pushed:
                return None, False
            return (pushed[0] if len(pushed) == 1 else sql.SqlAnd(tuple(pushed))), exact
        if isinstance(node, Or):
            parts = [self(item) for item in node.items]
            if any(p is None for p, _ in parts):
                return None, False
            return sql.SqlOr(tuple(p for p, _ in parts)), all(e for _, e in parts)  # type: ignore[misc]
        if isinstance(node, Not):
            inner, exact = self(node.operand)
            return (sql.SqlNot(inner), True) if inner is not None and exact else (None, False)
        if isinstance(node, IsNull) and isinstance(node.operand, Column):
            return sql.SqlIsNull(self.column(node.operand), node.negated), True
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, Between):
            return self.between(node)
        if isinstance(node, Like):
            return self.like(node)
        return None, False

    def compare(self, node: Compare) -> tuple[sql.Predicate | None, bool]:
        left, right = self.kind(node.left), self.kind(node.right)
        if left and right:  # column against column: same domain, exact kinds only
            if left == right and left != "text":
                return sql.SqlCompare(_ORDER[node.op], self.column(node.left), self.column(node.right)), True  # type: ignore[arg-type]
            return None, False
        column, literal, op = (node.left, node.right, node.op) if left else (node.right, node.left, _flip(node.op))
        kind = left or right
        if not kind or not isinstance(literal, Literal) or literal.kind == "null":
            return None, False
        param = self.param(literal, kind)
        if param is None:
            return None, False
        if kind == "text":
            # Only equality: SQL Server ignores case and trailing blanks, so it keeps a superset.
            return (sql.SqlCompare("=", self.column(column), param), False) if op == "=" else (None, False)  # type: ignore[arg-type]
        return sql.SqlCompare(_ORDER[op], self.column(column), param), True  # type: ignore[arg-type]

    def in_list(self, node: InList) -> tuple[sql.Predicate | None, bool]:
        kind = self.kind(node.operand)
        if kind is None:
            return None, False
        params = [self.param(v, kind) for v in node.values]
        if any(p is None for p in params):
            return None, False
        if kind == "text" and (node.negated or any(v.kind == "null" for v in node.values)):
            return None, False
        return sql.SqlIn(self.column(node.operand), tuple(params), node.negated), kind != "text"  # type: ignore[arg-type]

    def between(self, node: Between) -> tuple[sql.Predicate | None, bool]:
        kind = self.kind(node.operand)
        if kind in (None, "text") or not (isinstance(node.low, Literal) and isinstance(node.high, Literal)):
            return None, False
        low, high = self.param(node.low, kind), self.param(node.high, kind)  # type: ignore[arg-type]
        if low is None or high is None or low.text is None or high.text is None:
            return None, False
        return sql.SqlBetween(self.column(node.operand), low, high, node.negated), True  # type: ignore[arg-type]

    def like(self, node: Like) -> tuple[sql.Predicate | None, bool]:
        # SQL Server's _ counts UTF-16 code units and its collations ignore case: push only
        # patterns without _, whose matches are then a superset of Arrow's (re-filtered in Arrow).
        if self.kind(node.operand) != "text" or node.negated:
            return None, False
        pattern = _sql_like_pattern(node.pattern)
        if pattern is None:
            return None, False
        return sql.SqlLike(self.column(node.operand), pattern), False  # type: ignore[arg-type]


def _flip(op: str) -> str:
    return {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)


def _sql_like_pattern(pattern: str) -> str | None:
    """The pattern for SQL Server when it means the same there: only ``%`` wildcards, no ``_``, ``[`` or ``\\``.

    SQL Server's ``_`` counts UTF-16 code units, ``[`` opens a character class
    and escapes need an ``ESCAPE`` clause; patterns with them stay in Arrow.
    """
    return None if any(ch in pattern for ch in "_[\\") or not _ascii(pattern) else pattern


def _ascii(text: str) -> bool:
    return all(32 <= ord(ch) < 127 for ch in text)


def plan_pushdown(
    node: Node, cols: Mapping[str, Any], source_types: Mapping[str, str]
) -> tuple[sql.Predicate | None, bool]:
    """The predicate SQL Server can evaluate for ``node`` (None: nothing) and whether it is exact."""
    return _Planner(cols, source_types)(node)
