"""T-SQL functions that sqlglot leaves as ``exp.Anonymous``, and T-SQL-specific rewrites.

sqlglot models most built-ins (LEN, REPLICATE, CHARINDEX, ...) as typed nodes
and renders them for DuckDB itself. What it leaves anonymous falls in three
groups, decided by name here:

* *constant* functions (``DB_NAME()``, ``SERVERPROPERTY(...)``, ``OBJECT_ID(...)``):
  the engine evaluates them before DuckDB runs and binds the value;
* *rewritten* functions (``DATALENGTH``, ``SYSUTCDATETIME``, ...): replaced by an
  equivalent DuckDB expression with SQL Server's semantics;
* everything else: error 195, "is not a recognized built-in function name",
  as SQL Server says for an unknown function - never a silent DuckDB meaning.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pyarrow as pa
from sqlglot import exp

from ..engine_api import ResultColumn, SqlServerError, SqlType
from . import types as T

CONSTANT_FUNCTIONS = {
    "scope_identity",
    "db_name",
    "db_id",
    "schema_name",
    "suser_sname",
    "suser_name",
    "user_name",
    "original_login",
    "system_user",
    "serverproperty",
    "object_id",
    "is_srvrolemember",
    "has_perms_by_name",
    "schema_id",
    "host_name",
    "app_name",
    "object_name",
    "type_name",
    "rowcount_big",
    "rowcount_big",
}
# names the engine itself generates in DuckDB SQL (never written by clients in T-SQL form)
_ENGINE_HELPERS = {"tsql_nz", "octet_length", "rtrim", "trunc", "length"}


def is_constant_function(name: str) -> bool:
    return name.lower() in CONSTANT_FUNCTIONS or name.lower().startswith("fn_cdc_")


def _anon(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def supplementary_chars(x: exp.Expression) -> exp.Expression:
    """Characters outside the BMP (two UTF-16 code units each)."""
    kept = _anon(
        "regexp_replace",
        x,
        exp.Literal.string("[^\\x{10000}-\\x{10FFFF}]"),
        exp.Literal.string(""),
        exp.Literal.string("g"),
    )
    return _anon("length", kept)


def datalength(arg: exp.Expression, t: SqlType | None) -> exp.Expression:
    """DATALENGTH: bytes of the stored value (UTF-16 for n-types, 1 byte a char for varchar)."""
    if t is not None and t.name in T.BINARY_TYPES:
        return _anon("octet_length", arg)
    if t is not None and t.name in ("char", "varchar", "text"):
        return _anon("length", arg)
    if t is not None and t.name not in T.STRING_TYPES:
        fixed = T.max_length_bytes(t)
        return exp.Case(
            ifs=[exp.If(this=exp.Is(this=arg, expression=exp.Null()), true=exp.Null())],
            default=exp.Literal.number(fixed),
        )
    units = exp.Add(this=_anon("length", arg), expression=supplementary_chars(arg.copy()))
    return exp.Cast(
        this=exp.Mul(this=exp.Paren(this=units), expression=exp.Literal.number(2)), to=exp.DataType.build("INTEGER")
    )


def nanosecond(arg: exp.Expression, t: SqlType | None) -> exp.Expression:
    """DATEPART(nanosecond, x): the fraction of the second in ns (100 ns steps), as int."""
    if t is not None and T.is_text_stored(t):
        digits = exp.Substring(
            this=exp.Cast(this=arg, to=exp.DataType.build("VARCHAR")),
            start=exp.Literal.number(21),
            length=exp.Literal.number(7),
        )
        return exp.Mul(this=exp.Cast(this=digits, to=exp.DataType.build("INTEGER")), expression=exp.Literal.number(100))
    micros = exp.Mod(
        this=_anon("microsecond", exp.Cast(this=arg, to=exp.DataType.build("TIMESTAMP"))),
        expression=exp.Literal.number(1_000_000),
    )
    return exp.Cast(
        this=exp.Mul(this=exp.Paren(this=micros), expression=exp.Literal.number(1000)), to=exp.DataType.build("INTEGER")
    )


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _text7(value: dt.datetime) -> str:
    """datetime2(7)'s storage text: 'YYYY-MM-DD HH:MM:SS.fffffff' (the clock has microseconds)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") + "0"


def _sysutcdatetime(args: list[exp.Expression]) -> exp.Expression:
    """datetime2(7): the contract's 7-digit text form."""
    return exp.Literal.string(_text7(_utc_now()))


def _sysdatetime(args: list[exp.Expression]) -> exp.Expression:
    """datetime2(7) of the server's local clock."""
    return exp.Literal.string(_text7(dt.datetime.now()))


def _sysdatetimeoffset(args: list[exp.Expression]) -> exp.Expression:
    """datetimeoffset(7): local time and the server's UTC offset, '... +HH:MM' as stored."""
    now = dt.datetime.now().astimezone()
    offset = now.strftime("%z")
    return exp.Literal.string(f"{_text7(now.replace(tzinfo=None))} {offset[:3]}:{offset[3:]}")


def _getutcdate(args: list[exp.Expression]) -> exp.Expression:
    now = exp.Literal.string(_utc_now().isoformat(sep=" "))
    return exp.Cast(this=now, to=exp.DataType.build("TIMESTAMP"))


def _parsename(args: list[exp.Expression]) -> exp.Expression:
    """PARSENAME(name, part): part 1 object, 2 schema, 3 database, 4 server; brackets removed."""
    if len(args) != 2:
        raise SqlServerError(174, "The parsename function requires 2 argument(s).")
    unbracketed = _anon(
        "replace",
        _anon("replace", args[0], exp.Literal.string("["), exp.Literal.string("")),
        exp.Literal.string("]"),
        exp.Literal.string(""),
    )
    parts = _anon("list_reverse", _anon("string_split", unbracketed, exp.Literal.string(".")))
    return _anon("list_extract", parts, args[1])


_REWRITES: dict[str, Callable[[list[exp.Expression]], exp.Expression]] = {
    "parsename": _parsename,
    "sysutcdatetime": _sysutcdatetime,
    "sysdatetime": _sysdatetime,
    "sysdatetimeoffset": _sysdatetimeoffset,
    "getutcdate": _getutcdate,
}
RESULT_TYPES: dict[str, SqlType] = {
    "parsename": SqlType("nvarchar", 128),
    "sysutcdatetime": SqlType("datetime2", scale=7),
    "sysdatetime": SqlType("datetime2", scale=7),
    "sysdatetimeoffset": SqlType("datetimeoffset", scale=7),
    "getutcdate": SqlType("datetime"),
}


def rewrite_anonymous(node: exp.Anonymous, type_of: Callable[[exp.Expression], SqlType | None]) -> exp.Expression:
    """DuckDB form of a non-constant anonymous T-SQL function; 195 for unknown names."""
    name = node.name.lower()
    if name == "datalength":
        if len(node.expressions) != 1:
            raise SqlServerError(174, "The datalength function requires 1 argument(s).")
        return datalength(node.expressions[0].copy(), type_of(node.expressions[0]))
    if name in _REWRITES:
        return _REWRITES[name]([a.copy() for a in node.expressions])
    if name in _ENGINE_HELPERS:
        return node
    raise SqlServerError(195, f"'{node.name}' is not a recognized built-in function name.")


def anonymous_type(node: exp.Anonymous, type_of: Callable[[exp.Expression], SqlType | None]) -> SqlType | None:
    """T-SQL result type of an anonymous function (DATALENGTH is bigint for (max) arguments)."""
    name = node.name.lower()
    if name == "datalength" and node.expressions:
        arg = type_of(node.expressions[0])
        return SqlType("bigint") if arg is not None and arg.length == -1 else SqlType("int")
    return RESULT_TYPES.get(name)


def no_extended_properties() -> tuple[list[ResultColumn], pa.Table]:
    """fn_listextendedproperty(...): the double has none, so SQL Server's empty result."""
    spec = [
        ("objtype", SqlType("nvarchar", 128)),
        ("objname", SqlType("nvarchar", 128)),
        ("name", SqlType("nvarchar", 128)),
        ("value", SqlType("nvarchar", 4000)),
    ]
    columns = [ResultColumn(n, t) for n, t in spec]
    return columns, pa.table({n: pa.array([], pa.string()) for n, _ in spec})
