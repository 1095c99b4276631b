"""String comparisons as SQL Server makes them: trailing blanks do not count.

SQL Server pads the shorter string with blanks before comparing, so
``'U ' = 'U'`` is true, for char/nchar and varchar/nvarchar alike
(https://learn.microsoft.com/en-us/sql/t-sql/language-elements/string-comparison-assignment).
Catalog columns such as ``sys.objects.type`` are char(2) (``'U '``), and
clients compare them with ``'U'``: SQLAlchemy's reflection does exactly that.
DuckDB compares strings byte for byte, so each string operand of ``=``,
``<>``, ``<``, ``<=``, ``>``, ``>=``, ``IN (list)`` and ``BETWEEN`` is wrapped in
``rtrim`` (DuckDB's rtrim removes blanks only, like the padding rule).

``LIKE`` is different: blanks at the end of the *pattern* count, those at the
end of the matched value do not
(https://learn.microsoft.com/en-us/sql/t-sql/language-elements/like-transact-sql),
so ``c LIKE p`` becomes ``c LIKE p OR rtrim(c) LIKE p``.

Case is already ignored by DuckDB's ``nocase`` default collation (the engine's
SQL_Latin1_General_CP1_CI_AS). Key checks trim too (``dml.check_keys``); GROUP BY
and DISTINCT still treat ``'a'`` and ``'a '`` as different values (see the
README's known differences).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from ..engine_api import SqlType
from . import types as T

TypeOf = Callable[[exp.Expression], SqlType | None]
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def _is_string(t: SqlType | None) -> bool:
    return t is not None and t.name in T.STRING_TYPES


def _rtrim(node: exp.Expression) -> exp.Expression:
    trimmed = exp.Anonymous(this="rtrim", expressions=[node.copy()])
    if "sql_type" in node.meta:
        trimmed.meta["sql_type"] = node.meta["sql_type"]
    return trimmed


def _trim_strings(operands: list[exp.Expression], type_of: TypeOf) -> list[exp.Expression] | None:
    """The operands with string ones trimmed, when at least one is a string and none is a known non-string."""
    types = [type_of(o) for o in operands]
    if not any(_is_string(t) for t in types) or any(t is not None and not _is_string(t) for t in types):
        return None
    return [_rtrim(o) if _is_string(t) else o.copy() for o, t in zip(operands, types)]


def ignore_trailing_blanks(node: exp.Expression, type_of: TypeOf) -> exp.Expression | None:
    """The comparison with SQL Server's blank padding, or None when it compares no strings."""
    if isinstance(node, COMPARISONS):
        trimmed = _trim_strings([node.this, node.expression], type_of)
        return None if trimmed is None else type(node)(this=trimmed[0], expression=trimmed[1])
    if isinstance(node, exp.Between):
        trimmed = _trim_strings([node.this, node.args["low"], node.args["high"]], type_of)
        return None if trimmed is None else exp.Between(this=trimmed[0], low=trimmed[1], high=trimmed[2])
    if isinstance(node, exp.In) and node.expressions and not node.args.get("query"):
        trimmed = _trim_strings([node.this, *node.expressions], type_of)
        return None if trimmed is None else exp.In(this=trimmed[0], expressions=trimmed[1:])
    if isinstance(node, exp.Like) and _is_string(type_of(node.this)) and not node.args.get("escape"):
        plain = node.copy()
        trimmed = exp.Like(this=_rtrim(node.this), expression=node.expression.copy())
        return exp.Paren(this=exp.Or(this=plain, expression=trimmed))
    return None
