"""Result types of T-SQL string expressions, and the 8,000-byte limit of non-(max) strings.

DuckDB has one unbounded VARCHAR, so the engine must decide what SQL Server
would describe, and the TDS layer sends exactly that: a value longer than its
column's declared length breaks the client's reading of the stream. SQL
Server's rules
(https://learn.microsoft.com/en-us/sql/t-sql/data-types/precision-scale-and-length-transact-sql,
https://learn.microsoft.com/en-us/sql/t-sql/functions/concat-transact-sql,
https://learn.microsoft.com/en-us/sql/t-sql/functions/replicate-transact-sql):

* ``a + b`` and ``CONCAT``: nvarchar when any argument is national, (max) when
  any argument is (max), else the sum of the lengths, at most 8,000 bytes
  (varchar(8000) / nvarchar(4000)); a longer result is cut at that limit.
* ``REPLICATE``: the argument's type; a non-(max) argument gives at most
  8,000 bytes, so ``REPLICATE(CAST('x' AS varchar(max)), 9000)`` is how a
  value over 8,000 bytes is built.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from ..engine_api import SqlType
from . import types as T

_NATIONAL = {"nchar", "nvarchar", "ntext"}
_OTHER_AS_TEXT = 30  # characters a number or date takes when CONCAT converts it (CAST's default length)


def is_national(t: SqlType | None) -> bool:
    return t is not None and t.name in _NATIONAL


def limit(t: SqlType) -> int:
    """The largest non-(max) length of ``t``'s family, in characters: 4000 for n-types, 8000 otherwise."""
    return 4000 if is_national(t) else 8000


def concat_type(types: Sequence[SqlType | None]) -> SqlType | None:
    """Type of ``a + b + ...`` / ``CONCAT(a, b, ...)``; None when an argument's type is unknown."""
    if any(t is None for t in types):
        return None
    national = any(is_national(t) for t in types)
    name = "nvarchar" if national else "varchar"
    if any(t.length == -1 for t in types if t.name in T.STRING_TYPES):
        return SqlType(name, -1)
    total = sum((t.length or 1) if t.name in T.STRING_TYPES else _OTHER_AS_TEXT for t in types)
    return SqlType(name, min(total, 4000 if national else 8000))


def repeat_type(t: SqlType | None) -> SqlType | None:
    """REPLICATE keeps its argument's type; a non-(max) argument can grow to the 8,000-byte limit."""
    if t is None or t.name not in T.STRING_TYPES:
        return None
    if t.length == -1:
        return SqlType("nvarchar" if is_national(t) else "varchar", -1)
    return SqlType("nvarchar" if is_national(t) else "varchar", limit(t))


def capped(node: exp.Expression, t: SqlType | None) -> exp.Expression:
    """``node`` cut to SQL Server's limit when its non-(max) type is at that limit (shorter types cannot overflow)."""
    if t is None or t.length is None or t.length == -1 or t.length < limit(t):
        return node
    cut = exp.Left(this=node, expression=exp.Literal.number(limit(t)))
    cut.meta["sql_type"] = t
    return cut
