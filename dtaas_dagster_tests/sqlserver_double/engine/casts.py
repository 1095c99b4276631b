"""CAST / CONVERT / TRY_CAST / TRY_CONVERT with SQL Server's results
(https://learn.microsoft.com/en-us/sql/t-sql/functions/cast-and-convert-transact-sql).

* A string or binary target without a length is 30 long (``CAST(12345 AS varchar)``
  is ``'12345'``), and a longer result is cut to the target length.
* A date/time written as a string follows the style (``datestyles.py``);
  without one, style 0 for datetime/smalldatetime and 121 for the others.
* A date/time target rounds to its scale and keeps the 7th fraction digit of
  its input (``temporal.py``); input SQL Server cannot read is error 241
  (NULL for TRY_). A style on a string-to-date conversion says how to read
  the input (101 ``mm/dd/yyyy``, 103 ``dd/mm/yyyy``, 112 ``yyyymmdd``, ...).
* float/real/decimal/money to an integer type truncates toward zero.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from ..engine_api import SqlServerError, SqlType, not_supported
from . import types as T
from .datestyles import styled_text
from .temporal import is_temporal, substitute

TypeOf = Callable[[exp.Expression], SqlType | None]
INT_NAMES = {"tinyint", "smallint", "int", "bigint"}
_APPROXIMATE = {"float", "real", "decimal", "numeric", "money", "smallmoney"}
DATE_CONVERSION_FAILED = "Conversion failed when converting date and/or time from character string."
# styles that say how to read a string as a date (ISO styles need no help)
_INPUT_FORMATS = {
    1: "%m/%d/%y",
    101: "%m/%d/%Y",
    2: "%y.%m.%d",
    102: "%Y.%m.%d",
    3: "%d/%m/%y",
    103: "%d/%m/%Y",
    4: "%d.%m.%y",
    104: "%d.%m.%Y",
    5: "%d-%m-%y",
    105: "%d-%m-%Y",
    10: "%m-%d-%y",
    110: "%m-%d-%Y",
    11: "%y/%m/%d",
    111: "%Y/%m/%d",
    12: "%y%m%d",
    112: "%Y%m%d",
}
_ISO_STYLES = {0, 100, 20, 120, 21, 25, 121, 23, 126, 127}


def _typed(node: exp.Expression, t: SqlType) -> exp.Expression:
    node.meta["sql_type"] = t
    return node


def rewrite(
    node: exp.Expression, type_of: TypeOf, *, style: int | None = None, style_given: bool = False
) -> exp.Expression:
    """DuckDB form of ``CAST(x AS type)`` (a Cast/TryCast node); CONVERT passes its style."""
    try:
        target = T.from_datatype(node.args["to"], cast=True)
    except SqlServerError:
        return node
    safe = isinstance(node, exp.TryCast)
    inner = node.this.copy()
    source = type_of(node.this)
    if target.name in T.STRING_TYPES and is_temporal(source):
        return _typed(_sized(styled_text(inner, source, style), target), target)
    if (
        style_given
        and style is not None
        and not (is_temporal(target) and source is not None and source.name in T.STRING_TYPES)
    ):
        raise not_supported(
            f"CONVERT with style {style} from {source.name if source else 'this value'} to {T.type_text(target)}"
        )
    if is_temporal(target):
        return _typed(_temporal(inner, target, safe, style if style_given else None), target)
    if target.name in INT_NAMES and source is not None and source.name in _APPROXIMATE:
        inner = exp.Anonymous(this="trunc", expressions=[inner])
    cast = type(node)(this=inner, to=exp.DataType.build(T.storage_type(target), dialect="duckdb"))
    return _typed(_sized(cast, target), target)


def _sized(node: exp.Expression, target: SqlType) -> exp.Expression:
    if target.name in T.STRING_TYPES and target.length and target.length > 0:
        return exp.Left(this=node, expression=exp.Literal.number(target.length))
    return node


def _temporal(inner: exp.Expression, target: SqlType, safe: bool, style: int | None) -> exp.Expression:
    source = "__x"
    if style is not None and style not in _ISO_STYLES:
        if style not in _INPUT_FORMATS:
            raise not_supported(f"CONVERT to {T.type_text(target)} with style {style}")
        source = f"try_strptime(CAST(__x AS VARCHAR), '{_INPUT_FORMATS[style]}')"
    converted = T.conversion_sql(source, target)
    if safe:
        return substitute(converted, x=inner)
    return substitute(
        f"CASE WHEN __x IS NOT NULL AND ({converted}) IS NULL "
        f"THEN error('{DATE_CONVERSION_FAILED}') ELSE {converted} END",
        x=inner,
    )
