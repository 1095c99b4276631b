"""Date and time values with SQL Server's precision, on DuckDB.

Storage (see ``types.py``): datetime, smalldatetime and datetime2(0..6) are
TIMESTAMP (microseconds); datetime2(7) and datetimeoffset(n) are canonical
text ``'YYYY-MM-DD HH:MM:SS.fffffff[ +HH:MM]'``; time(n) is TIME_NS.

*Conversions* (INSERT, UPDATE, CAST) round to the target's fractional
scale, as SQL Server does (``'12:00:00.1235'`` into datetime2(3) is
``12:00:00.124``; https://learn.microsoft.com/en-us/sql/t-sql/data-types/datetime2-transact-sql).
DuckDB's casts truncate, and they drop a 7th digit before anything could
round it, so the SQL built here first reads any input as 7-digit text and
rounds the 100-ns ticks in integer arithmetic.

*Expressions*: DuckDB's date functions want TIMESTAMP, so a text-stored
operand is read as TIMESTAMP for DATEPART/DATEDIFF (microseconds are what
they can see), while DATEADD on it keeps the 7th digit and the offset by
adding to the first 26 characters and putting the rest back. Where a text
value meets a TIMESTAMP one (ISNULL, COALESCE, comparisons), the TIMESTAMP
side is written as 7-digit text so nothing is truncated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlglot
from sqlglot import exp

from ..engine_api import SqlServerError, SqlType

TypeOf = Callable[[exp.Expression], SqlType | None]
DAY_NS = 86_400_000_000_000
_SEVENTH = r"'\.\d{6}(\d)'"
_TEMPORAL = {"date", "time", "datetime", "smalldatetime", "datetime2", "datetimeoffset"}


def is_text_stored(t: SqlType | None) -> bool:
    """datetime2(7) and datetimeoffset are stored as canonical text."""
    if t is None:
        return False
    return (t.name == "datetime2" and (t.scale if t.scale is not None else 7) > 6) or t.name == "datetimeoffset"


def is_temporal(t: SqlType | None) -> bool:
    return t is not None and t.name in _TEMPORAL


# -- conversion SQL (strings in, DuckDB SQL out; ``x`` is an expression) --------------------------
def text7(x: str) -> str:
    """Canonical 27-character text of a timestamp-like value, keeping a 7th fraction digit of text input."""
    seventh = f"regexp_extract(CAST({x} AS VARCHAR), {_SEVENTH}, 1)"
    return (
        f"(strftime(TRY_CAST({x} AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f') || "
        f"CASE WHEN {seventh} = '' THEN '0' ELSE {seventh} END)"
    )


def rounded_timestamp(x: str, scale: int) -> str:
    """TIMESTAMP of ``x`` rounded (half up) to ``scale`` fractional digits, 0 <= scale <= 6."""
    text = text7(x)
    step = 10 ** (7 - scale)
    ticks = f"CAST(substr({text}, 21, 7) AS BIGINT)"
    return (
        f"(CAST(substr({text}, 1, 19) AS TIMESTAMP) + "
        f"to_microseconds(CAST(({ticks} + {step // 2}) // {step} * {step} // 10 AS BIGINT)))"
    )


def rounded_text7(x: str, scale: int) -> str:
    """7-digit text of ``x`` rounded to ``scale`` digits (the 7-digit form for datetimeoffset(n))."""
    if scale >= 7:
        return text7(x)
    return f"(strftime({rounded_timestamp(x, scale)}, '%Y-%m-%d %H:%M:%S.%f') || '0')"


def rounded_time(x: str, scale: int) -> str:
    """TIME_NS of ``x`` (a time, or the time of day of a datetime) rounded to ``scale``, wrapping at midnight."""
    text = (
        rf"regexp_replace(regexp_replace(CAST({x} AS VARCHAR), '^\d{{4}}-\d\d-\d\d[ T]', ''), "
        r"'\s*([+-]\d\d:\d\d|Z)$', '')"
    )
    step = 10 ** (9 - scale)
    ns = f"((epoch_ns(TRY_CAST({text} AS TIME_NS)) + {step // 2}) // {step} * {step} % {DAY_NS})"
    return (
        f"TRY_CAST(printf('%02d:%02d:%02d.%09d', {ns} // 3600000000000, {ns} // 60000000000 % 60, "
        f"{ns} // 1000000000 % 60, {ns} % 1000000000) AS TIME_NS)"
    )


def offset_text(x: str, scale: int) -> str:
    """datetimeoffset storage text: local time rounded to ``scale``, then ' +HH:MM' (+00:00 when absent)."""
    local = f"regexp_replace(CAST({x} AS VARCHAR), '\\s*([+-]\\d\\d:?\\d\\d|Z)$', '')"
    offset = f"regexp_extract(CAST({x} AS VARCHAR), '([+-]\\d\\d:\\d\\d)$', 1)"
    return f"({rounded_text7(local, scale)} || ' ' || CASE WHEN {offset} = '' THEN '+00:00' ELSE {offset} END)"


def datetime_text(value: dt.datetime, *, offset: bool) -> str:
    """A Python datetime (a bound parameter) in the text storage form of datetime2(7)/datetimeoffset."""
    text = value.strftime("%Y-%m-%d %H:%M:%S.%f") + "0"
    if not offset:
        return text
    zone = value.strftime("%z") or "+0000"
    return f"{text} {zone[:3]}:{zone[3:5]}"


# -- expression rewrites (sqlglot nodes) ------------------------------------------------------------
def substitute(template: str, **nodes: exp.Expression) -> exp.Expression:
    """Parse DuckDB SQL whose columns ``__name`` stand for the given (already translated) nodes."""
    tree = sqlglot.parse_one(template, read="duckdb")
    return tree.transform(
        lambda n: (
            nodes[n.name[2:]].copy()
            if isinstance(n, exp.Column) and n.name.startswith("__") and n.name[2:] in nodes
            else n
        )
    )


def as_timestamp(node: exp.Expression, t: SqlType | None) -> exp.Expression:
    """A TIMESTAMP DuckDB can compute with: text-stored values lose their 100-ns digit (and offset)."""
    if is_text_stored(t):
        return substitute("CAST(substr(__x, 1, 26) AS TIMESTAMP)", x=node)
    return node


def as_text7(node: exp.Expression, t: SqlType | None) -> exp.Expression:
    """The 7-digit text of a temporal operand (text-stored values are already in that form)."""
    if is_text_stored(t):
        return node
    return substitute(text7("__x"), x=node)


def dateadd(node: exp.DateAdd, type_of: TypeOf) -> exp.Expression | None:
    """DATEADD on a text-stored value: add to its first 26 characters, keep the 100-ns digit and offset."""
    t = type_of(node.this)
    if not is_text_stored(t):
        return None
    unit = node.text("unit").lower()
    if unit in ("nanosecond", "ns", "nano"):
        raise SqlServerError(102, "not supported by the SQL Server double: DATEADD(nanosecond, ...) on datetime2(7)")
    moved = exp.DateAdd(this=as_timestamp(node.this, t), expression=node.expression.copy(), unit=node.args["unit"])
    result = substitute("strftime(__moved, '%Y-%m-%d %H:%M:%S.%f') || substr(__x, 27)", moved=moved, x=node.this)
    result.meta["sql_type"] = t
    return result


def dateadd_type(t: SqlType | None, unit: str) -> SqlType | None:
    """DATEADD returns its date's type; a string date is read as datetime."""
    if t is None:
        return None
    if t.name in ("varchar", "nvarchar", "char", "nchar"):
        return SqlType("datetime")
    if t.name == "date" and unit.lower() not in _DATE_UNITS:
        return None  # SQL Server refuses it (9810); DuckDB answers a TIMESTAMP
    return t if is_temporal(t) else None


_DATE_UNITS = {
    "year",
    "yy",
    "yyyy",
    "quarter",
    "qq",
    "q",
    "month",
    "mm",
    "m",
    "dayofyear",
    "dy",
    "y",
    "day",
    "dd",
    "d",
    "week",
    "wk",
    "ww",
    "weekday",
    "dw",
    "w",
}


def timestamp_operands(node: exp.Expression, type_of: TypeOf) -> exp.Expression | None:
    """DATEPART/YEAR/MONTH/DAY/DATEDIFF/EOMONTH of a text-stored value: read it as TIMESTAMP."""
    holders = [n for n in (node.args.get("this"), node.args.get("expression")) if isinstance(n, exp.Expression)]
    changed = False
    for holder in holders:
        inner = holder.this if isinstance(holder, (exp.TimeStrToTime, exp.TsOrDsToDate)) else holder
        t = type_of(inner)
        if is_text_stored(t):
            inner.replace(as_timestamp(inner, t))
            changed = True
    return node if changed else None


def common_type(node: exp.Coalesce, type_of: TypeOf) -> SqlType | None:
    """ISNULL: the first argument's type; COALESCE: a text-stored type wins over TIMESTAMP-stored ones."""
    args = [node.this, *node.expressions]
    types = [type_of(a) for a in args]
    if node.args.get("is_null"):
        return types[0]
    return next((t for t in types if is_text_stored(t)), None) or types[0]


def coalesce(node: exp.Coalesce, type_of: TypeOf) -> exp.Expression | None:
    """ISNULL/COALESCE mixing datetime2(7)/datetimeoffset text with TIMESTAMP values: one storage form."""
    args = [node.this, *node.expressions]
    types = [type_of(a) for a in args]
    if not any(is_text_stored(t) for t in types) or not all(is_temporal(t) or t is None for t in types):
        return None
    result = common_type(node, type_of)
    if is_text_stored(result):
        converted = [as_text7(a, t) if is_temporal(t) else a.copy() for a, t in zip(args, types)]
    else:
        converted = [as_timestamp(a, t) for a, t in zip(args, types)]
    new = exp.Coalesce(this=converted[0], expressions=converted[1:])
    new.meta["sql_type"] = result
    return new


def comparison(node: exp.Expression, type_of: TypeOf) -> exp.Expression | None:
    """``d7 = @p`` / ``d7 >= '2024-01-01'``: compare 7-digit text with 7-digit text."""
    left, right = node.this, node.expression
    lt, rt = type_of(left), type_of(right)
    if is_text_stored(lt) == is_text_stored(rt) or "datetimeoffset" in (
        getattr(lt, "name", ""),
        getattr(rt, "name", ""),
    ):
        return None
    other, other_type = (right, rt) if is_text_stored(lt) else (left, lt)
    if not (
        is_temporal(other_type)
        or (other_type is not None and other_type.name in ("varchar", "nvarchar", "char", "nchar"))
    ):
        return None
    text = as_text7(other, None)
    return type(node)(this=text if other is left else left.copy(), expression=text if other is right else right.copy())
