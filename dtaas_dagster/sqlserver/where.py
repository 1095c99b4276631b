"""The WHERE clause of a filtered snapshot read: a small predicate tree rendered as T-SQL with ``?`` parameters.

filter_rows conditions that SQL Server can evaluate are pushed down here
(:mod:`dtaas_dagster.transforms.pushdown` decides which). Rules, as in
:mod:`dtaas_dagster.sqlserver.queries`:

- every value is a bound parameter, sent as text and converted by an explicit
  ``CAST(? AS <type>)`` whose type comes from :data:`PARAMETER_TYPES` (never from
  user text), so SQL Server compares in the column's domain;
- column names were resolved against the table's columns, and are bracket-quoted;
- the only SQL shapes are the node types below: comparison, ``IN``,
  ``IS [NOT] NULL``, ``LIKE``, ``BETWEEN``, ``AND``, ``OR``, ``NOT``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Union

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.bulk import BulkRead

# Types a parameter may be cast to; decimal(38,s) is built for 0 <= s <= 38.
PARAMETER_TYPES = ("bigint", "float", "bit", "date", "datetime2(7)", "nvarchar")
_DECIMAL = re.compile(r"^decimal\(38,(\d|[12]\d|3[0-8])\)$")
_COMPARISONS = ("=", "<>", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class SqlColumn:
    name: str


@dataclass(frozen=True)
class SqlParam:
    text: str | None  # None renders NULL (no parameter)
    sql_type: str


@dataclass(frozen=True)
class SqlCompare:
    op: str
    left: SqlColumn | SqlParam
    right: SqlColumn | SqlParam


@dataclass(frozen=True)
class SqlIn:
    operand: SqlColumn
    values: tuple[SqlParam, ...]
    negated: bool = False


@dataclass(frozen=True)
class SqlIsNull:
    operand: SqlColumn
    negated: bool = False


@dataclass(frozen=True)
class SqlLike:
    operand: SqlColumn
    pattern: str  # only % wildcards (no _, [ or \: the planner keeps those in Arrow)
    negated: bool = False


@dataclass(frozen=True)
class SqlBetween:
    operand: SqlColumn
    low: SqlParam
    high: SqlParam
    negated: bool = False


@dataclass(frozen=True)
class SqlAnd:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class SqlOr:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class SqlNot:
    operand: Predicate


# Union, not |: the members are forward references (strings under ``from __future__ import annotations``).
Predicate = Union[SqlCompare, SqlIn, SqlIsNull, SqlLike, SqlBetween, SqlAnd, SqlOr, SqlNot]  # noqa: UP007


def _check_type(sql_type: str) -> str:
    if sql_type not in PARAMETER_TYPES and not _DECIMAL.match(sql_type):
        raise ValueError(f"parameter type {sql_type!r} is not one of the allowed types")
    return sql_type


class _Renderer:
    def __init__(self) -> None:
        self.parameters: list[str | None] = []

    def value(self, node: SqlColumn | SqlParam) -> str:
        if isinstance(node, SqlColumn):
            return queries.quote_identifier(node.name)
        if node.text is None:
            return "NULL"
        self.parameters.append(node.text)
        sql_type = _check_type(node.sql_type)
        return "?" if sql_type == "nvarchar" else f"CAST(? AS {sql_type})"

    def __call__(self, node: Predicate) -> str:
        if isinstance(node, SqlCompare):
            if node.op not in _COMPARISONS:
                raise ValueError(f"not a comparison: {node.op!r}")
            return f"{self.value(node.left)} {node.op} {self.value(node.right)}"
        if isinstance(node, SqlIn):
            values = ", ".join(self.value(v) for v in node.values)
            return f"{self.value(node.operand)} {'NOT ' if node.negated else ''}IN ({values})"
        if isinstance(node, SqlIsNull):
            return f"{self.value(node.operand)} IS {'NOT ' if node.negated else ''}NULL"
        if isinstance(node, SqlLike):
            column = self.value(node.operand)
            self.parameters.append(node.pattern)
            return f"{column} {'NOT ' if node.negated else ''}LIKE ?"
        if isinstance(node, SqlBetween):
            return (
                f"{self.value(node.operand)} {'NOT ' if node.negated else ''}BETWEEN "
                f"{self.value(node.low)} AND {self.value(node.high)}"
            )
        if isinstance(node, (SqlAnd, SqlOr)):
            word = " AND " if isinstance(node, SqlAnd) else " OR "
            return "(" + word.join(self(item) for item in node.items) + ")"
        if isinstance(node, SqlNot):
            return f"NOT ({self(node.operand)})"
        raise TypeError(f"not a predicate: {node!r}")


def build_where(predicate: Predicate) -> tuple[str, tuple[str | None, ...]]:
    """The WHERE condition text (with ``?`` placeholders) and its parameters, in order."""
    renderer = _Renderer()
    text = renderer(predicate)
    return text, tuple(renderer.parameters)


def filtered_read(read: BulkRead, *, select_sql: str, snapshot_isolation: bool, predicate: Predicate) -> BulkRead:
    """``read`` with ``WHERE <predicate>`` on its SELECT and the parameters bound."""
    where, parameters = build_where(predicate)
    sql = queries.snapshot_batch(f"{select_sql} WHERE {where}", snapshot_isolation=snapshot_isolation)
    return dataclasses.replace(read, sql=sql, parameters=parameters)
