"""SQL Server types: parsing, DuckDB storage, and the contract's Arrow form.

DuckDB loses SQL Server's type details (nvarchar(50) and varchar(max) are both
VARCHAR), so the engine keeps each column's :class:`SqlType` in its own catalog
and uses this module to map it three ways:

* ``storage_type``: the DuckDB column type. Two types do not fit a DuckDB type
  exactly: ``datetime2(7)`` needs 100 ns *and* years 0001..9999 (TIMESTAMP has
  microseconds, TIMESTAMP_NS stops at 1677..2262), and ``datetimeoffset`` keeps
  its offset. Both are stored as fixed-width canonical text
  ('YYYY-MM-DD HH:MM:SS.fffffff[ +HH:MM]'), which sorts and compares like the
  value itself. datetime2(0..6) is a plain TIMESTAMP.
* ``conversion_sql``: a DuckDB expression converting any source value into the
  storage form, returning NULL (never raising) when it cannot, so the engine can
  report error 245 itself without aborting the DuckDB transaction.
* ``to_contract``: the vectorised Arrow conversion to the type table in
  ``engine_api.py``.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from ..engine_api import SqlServerError, SqlType
from . import temporal

ArrowData = pa.Array | pa.ChunkedArray

STRING_TYPES = {"char", "varchar", "nchar", "nvarchar", "text", "ntext", "sysname"}
BINARY_TYPES = {"binary", "varbinary", "image", "timestamp", "rowversion"}
INTEGER_TYPES = {"tinyint": "UTINYINT", "smallint": "SMALLINT", "int": "INTEGER", "bigint": "BIGINT"}
_FIXED = {
    "bit": "BOOLEAN",
    "real": "FLOAT",
    "float": "DOUBLE",
    "money": "DECIMAL(19,4)",
    "smallmoney": "DECIMAL(10,4)",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "smalldatetime": "TIMESTAMP",
    "uniqueidentifier": "UUID",
}
KNOWN_TYPES = (
    STRING_TYPES
    | BINARY_TYPES
    | set(INTEGER_TYPES)
    | set(_FIXED)
    | {"decimal", "numeric", "time", "datetime2", "datetimeoffset"}
)
_ALIASES = {
    "integer": "int",
    "double": "float",
    "dec": "decimal",
    "character": "char",
    "boolean": "bit",
    "uuid": "uniqueidentifier",
    "timestamp": "datetime2",
    "rowversion": "binary",
}
_TYPE_RE = re.compile(r"^\s*\[?([a-zA-Z0-9_]+)\]?\s*(?:\(\s*([^)]*)\))?\s*$")


def parse_type(text: str, nullable: bool = True) -> SqlType:
    """'nvarchar(50)' -> SqlType('nvarchar', 50); raises 2715 for unknown types."""
    match = _TYPE_RE.match(text)
    if not match:
        raise SqlServerError(2715, f"Column, parameter, or variable #1: Cannot find data type {text}.")
    name, args = match.group(1).lower(), match.group(2)
    name = _ALIASES.get(name, name)
    parts = [a.strip().lower() for a in args.split(",")] if args else []
    return make_type(name, parts, nullable)


def make_type(name: str, parts: list[str], nullable: bool = True) -> SqlType:
    """Build a SqlType from a lower-case name and its textual arguments, with SQL Server defaults."""
    if name == "sysname":
        return SqlType("nvarchar", 128, nullable=nullable)
    if name not in KNOWN_TYPES:
        raise SqlServerError(2715, f"Column, parameter, or variable #1: Cannot find data type {name}.")
    if name in ("text", "ntext", "image"):
        base = {"text": "varchar", "ntext": "nvarchar", "image": "varbinary"}[name]
        return SqlType(base, -1, nullable=nullable)
    if name in STRING_TYPES or name in ("binary", "varbinary"):
        length = -1 if parts and parts[0] == "max" else int(parts[0]) if parts else 1
        return SqlType(name, length, nullable=nullable)
    if name in ("decimal", "numeric"):
        precision = int(parts[0]) if parts else 18
        scale = int(parts[1]) if len(parts) > 1 else 0
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise SqlServerError(
                2750,
                f"Column or parameter #1: Specified column precision {precision} is greater than the maximum precision of 38.",
            )
        return SqlType(name, precision=precision, scale=scale, nullable=nullable)
    if name in ("time", "datetime2", "datetimeoffset"):
        scale = int(parts[0]) if parts else 7
        if not 0 <= scale <= 7:
            raise SqlServerError(1002, f"Line 1: Specified scale {scale} is invalid.")
        return SqlType(name, scale=scale, nullable=nullable)
    if name == "float" and parts:
        return SqlType("real" if int(parts[0]) <= 24 else "float", nullable=nullable)
    return SqlType(name, nullable=nullable)


def from_datatype(node: exp.DataType, *, cast: bool = False) -> SqlType:
    """SqlType of a sqlglot DataType parsed from T-SQL (uses its T-SQL spelling).

    ``cast``: the target of CAST/CONVERT, where a string or binary type without a length is 30 long,
    not 1 as in a declaration (https://learn.microsoft.com/en-us/sql/t-sql/functions/cast-and-convert-transact-sql).
    """
    text = node.sql("tsql")
    if node.this == exp.DataType.Type.DECIMAL:
        text = text.replace("NUMERIC", "DECIMAL", 1)
    parsed = parse_type(text)
    spelled_sysname = text.strip().lower() == "sysname"  # nvarchar(128) wherever it is named
    if (
        cast
        and "(" not in text
        and not spelled_sysname
        and (parsed.name in STRING_TYPES or parsed.name in ("binary", "varbinary"))
    ):
        return SqlType(parsed.name, 30, nullable=parsed.nullable)
    return parsed


def type_text(t: SqlType) -> str:
    """T-SQL spelling: 'nvarchar(50)', 'decimal(38,10)', 'datetime2(7)', 'varchar(max)'."""
    if t.name in STRING_TYPES or t.name in ("binary", "varbinary"):
        return f"{t.name}({'max' if t.length == -1 else t.length})"
    if t.name in ("decimal", "numeric"):
        return f"{t.name}({t.precision},{t.scale})"
    if t.name in ("time", "datetime2", "datetimeoffset"):
        return f"{t.name}({t.scale})"
    return t.name


def is_text_stored(t: SqlType) -> bool:
    """datetime2(7) and datetimeoffset are stored as canonical text (see module docstring)."""
    return temporal.is_text_stored(t)


def storage_type(t: SqlType) -> str:
    """The DuckDB column type that stores values of ``t``."""
    if t.name in INTEGER_TYPES:
        return INTEGER_TYPES[t.name]
    if t.name in _FIXED:
        return _FIXED[t.name]
    if t.name in STRING_TYPES or is_text_stored(t):
        return "VARCHAR"
    if t.name in BINARY_TYPES:
        return "BLOB"
    if t.name in ("decimal", "numeric"):
        return f"DECIMAL({t.precision},{t.scale})"
    if t.name == "time":
        return "TIME_NS"
    if t.name == "datetime2":
        return "TIMESTAMP"
    raise SqlServerError(2715, f"Cannot find data type {t.name}.")


def _datetime_ticks(x: str) -> str:
    """DuckDB SQL: ``x`` as datetime, rounded to SQL Server's 1/300 s ticks (.001 -> .000, .002 -> .003,
    .005 -> .007), kept as the whole milliseconds SQL Server shows for the tick."""
    ts = f"TRY_CAST({x} AS TIMESTAMP)"
    ticks = f"round((microsecond({ts}) % 1000000) * 300 / 1000000.0)"
    millis = f"round({ticks} * 10 / 3.0)"
    return f"(date_trunc('second', {ts}) + to_microseconds(CAST({millis} * 1000 AS BIGINT)))"


def conversion_sql(x: str, t: SqlType) -> str:
    """DuckDB SQL converting expression ``x`` to the storage form of ``t``; NULL when impossible.

    Date/time targets round to their scale (``temporal.py``); char(n)/nchar(n) are blank-padded to n
    characters (nchar: n UTF-16 code units, a character outside the BMP takes two) but never cut, so the
    length check (2628) sees the whole value.
    """
    scale = 7 if t.scale is None else t.scale
    if t.name == "datetimeoffset":
        return temporal.offset_text(x, scale)
    if is_text_stored(t):
        return temporal.text7(x)
    if t.name == "datetime2":
        return temporal.rounded_timestamp(x, scale)
    if t.name == "time":
        return temporal.rounded_time(x, scale)
    if t.name == "datetime":
        return _datetime_ticks(x)
    if t.name == "smalldatetime":
        return f"date_trunc('minute', TRY_CAST({x} AS TIMESTAMP) + INTERVAL 30 SECOND)"
    if t.name in ("char", "nchar") and t.length and t.length > 0:
        text = f"TRY_CAST({x} AS VARCHAR)"
        width = f"CAST({t.length} - {_astral_count(text)} AS INTEGER)" if t.name == "nchar" else str(t.length)
        return f"CASE WHEN length({text}) < {width} THEN rpad({text}, {width}, ' ') ELSE {text} END"
    if t.name == "binary" and t.length and t.length > 0:  # fixed width: right-padded with 0x00
        blob = f"TRY_CAST({x} AS BLOB)"
        return (
            f"CASE WHEN octet_length({blob}) < {t.length} THEN {blob} || "
            f"repeat('\\x00'::BLOB, {t.length} - octet_length({blob})) ELSE {blob} END"
        )
    if t.name in BINARY_TYPES:
        return f"TRY_CAST({x} AS BLOB)"
    return f"TRY_CAST({x} AS {storage_type(t)})"


def _astral_count(text: str) -> str:
    """DuckDB SQL: characters of ``text`` outside the BMP (each is two UTF-16 code units)."""
    return f"(length({text}) - length(regexp_replace({text}, '[\\x{{10000}}-\\x{{10FFFF}}]', '', 'g')))"


def utf16_length(array: ArrowData) -> ArrowData:
    """UTF-16 code units of each string (SQL Server's length of nchar/nvarchar values)."""
    astral = pc.count_substring_regex(array, "[\\x{10000}-\\x{10FFFF}]")
    return pc.add(pc.utf8_length(array), pc.cast(astral, pa.int32()))


def arrow_type(t: SqlType) -> pa.DataType:
    """The contract's Arrow type for ``t`` (see engine_api.py)."""
    simple = {
        "tinyint": pa.uint8(),
        "smallint": pa.int16(),
        "int": pa.int32(),
        "bigint": pa.int64(),
        "bit": pa.bool_(),
        "real": pa.float32(),
        "float": pa.float64(),
        "money": pa.decimal128(19, 4),
        "smallmoney": pa.decimal128(10, 4),
        "date": pa.date32(),
        "time": pa.time64("ns"),
        "datetime": pa.timestamp("us"),
        "smalldatetime": pa.timestamp("us"),
        "uniqueidentifier": pa.string(),
        "datetimeoffset": pa.string(),
    }
    if t.name in simple:
        return simple[t.name]
    if t.name in ("decimal", "numeric"):
        return pa.decimal128(t.precision or 18, t.scale or 0)
    if t.name in STRING_TYPES:
        return pa.string()
    if t.name in BINARY_TYPES:
        return pa.binary()
    if t.name == "datetime2":
        return pa.string() if is_text_stored(t) else pa.timestamp("us")
    return pa.string()


_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_UNIT_NAMES = {"s": "second", "ms": "millisecond", "us": "microsecond", "ns": "nanosecond"}
_DAY_NS = 86_400 * 1_000_000_000


def round_fraction(array: ArrowData, scale: int | None) -> ArrowData:
    """Round Arrow timestamps or times to ``scale`` fractional-second digits, as SQL Server stores them.

    Times wrap at midnight like SQL Server's (``23:59:59.9999999`` as time(0) is ``00:00:00``).
    """
    step_ns = 10 ** (9 - (7 if scale is None else scale))
    unit_ns = _UNIT_NS[array.type.unit]
    if step_ns <= unit_ns:
        return array
    if pa.types.is_timestamp(array.type):
        return pc.round_temporal(array, multiple=step_ns // unit_ns, unit=_UNIT_NAMES[array.type.unit])
    if not pa.types.is_time(array.type):
        return array
    ticks = pc.cast(pc.cast(array, pa.time64("ns")), pa.int64())
    rounded = pc.multiply(pc.divide(pc.add(ticks, step_ns // 2), step_ns), step_ns)  # integer division
    wrapped = pc.subtract(rounded, pc.multiply(pc.divide(rounded, _DAY_NS), _DAY_NS))
    return pc.cast(wrapped, pa.time64("ns"))


def timestamp_text(array: ArrowData, *, offset: bool) -> ArrowData:
    """Arrow timestamps (any unit, with or without time zone) as the canonical text storage form.

    'YYYY-MM-DD HH:MM:SS.fffffff' (always 7 digits), plus ' +HH:MM' when ``offset``: the
    zone's offset for a zoned timestamp (its local time), '+00:00' for a naive one.
    ns input is rounded to 100 ns first; Arrow's ``%S`` already carries the unit's fraction.
    """
    unit = array.type.unit
    if unit == "ns":
        array = pc.round_temporal(array, multiple=100, unit="nanosecond")
    text = pc.strftime(array, format="%Y-%m-%d %H:%M:%S")
    text = pc.binary_join_element_wise(text, ".0000000" if unit == "s" else "0000000", "")
    text = pc.utf8_slice_codeunits(text, 0, 27)
    if not offset:
        return text
    if array.type.tz is None:
        return pc.binary_join_element_wise(text, " +00:00", "")
    zone = pc.strftime(array, format="%z")  # '+0200'
    return pc.binary_join_element_wise(
        text, " ", pc.utf8_slice_codeunits(zone, 0, 3), ":", pc.utf8_slice_codeunits(zone, 3, 5), ""
    )


def to_contract(array: pa.Array | pa.ChunkedArray, t: SqlType) -> pa.Array | pa.ChunkedArray:
    """Convert one DuckDB result column to the contract's Arrow type (vectorised)."""
    target = arrow_type(t)
    if t.name == "uniqueidentifier":
        return pc.utf8_upper(pc.cast(array, pa.string()))
    if pa.types.is_timestamp(array.type) and target == pa.string():  # datetime2(7)/datetimeoffset computed
        return timestamp_text(array, offset=t.name == "datetimeoffset")  # as TIMESTAMP[TZ]: 7 digits always
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        array = pc.cast(array, pa.timestamp(array.type.unit))
    if pa.types.is_large_string(array.type) and target == pa.string():
        return array
    if pa.types.is_large_binary(array.type) and target == pa.binary():
        return array
    if array.type == target:
        return array
    if pa.types.is_decimal(array.type) and pa.types.is_integer(target):
        return pc.cast(array, target, safe=False)
    return pc.cast(array, target)


def storage_arrow_type(t: SqlType) -> pa.DataType:
    """Arrow type that DuckDB ingests into the storage column of ``t``."""
    if t.name == "uniqueidentifier" or is_text_stored(t):
        return pa.string()
    return arrow_type(t)


def infer_from_arrow(dtype: pa.DataType) -> SqlType:
    """A SQL Server type for an Arrow column (seeding without explicit types)."""
    if pa.types.is_boolean(dtype):
        return SqlType("bit")
    if pa.types.is_uint8(dtype):
        return SqlType("tinyint")
    for width, name in ((8, "smallint"), (16, "smallint"), (32, "int"), (64, "bigint")):
        if pa.types.is_integer(dtype) and dtype.bit_width == width:
            return SqlType(name)
    if pa.types.is_float32(dtype):
        return SqlType("real")
    if pa.types.is_floating(dtype):
        return SqlType("float")
    if pa.types.is_decimal(dtype):
        return SqlType("decimal", precision=dtype.precision, scale=dtype.scale)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return SqlType("nvarchar", -1)
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return SqlType("varbinary", -1)
    if pa.types.is_date(dtype):
        return SqlType("date")
    if pa.types.is_time(dtype):
        return SqlType("time", scale=7)
    if pa.types.is_timestamp(dtype):
        return SqlType("datetimeoffset", scale=7) if dtype.tz else SqlType("datetime2", scale=6)
    raise SqlServerError(2715, f"cannot infer a SQL Server type for Arrow type {dtype}; pass columns=")


def from_duckdb(type_name: str) -> SqlType:
    """Fallback SqlType for an expression, from DuckDB's result type name."""
    name = type_name.upper()
    dec = re.match(r"DECIMAL\((\d+),\s*(\d+)\)", name)
    if dec:
        return SqlType("decimal", precision=int(dec.group(1)), scale=int(dec.group(2)))
    table = {
        "BOOLEAN": SqlType("bit"),
        "UTINYINT": SqlType("tinyint"),
        "TINYINT": SqlType("smallint"),
        "SMALLINT": SqlType("smallint"),
        "INTEGER": SqlType("int"),
        "BIGINT": SqlType("bigint"),
        "HUGEINT": SqlType("bigint"),
        "UINTEGER": SqlType("bigint"),
        "USMALLINT": SqlType("int"),
        "UBIGINT": SqlType("decimal", precision=20, scale=0),
        "FLOAT": SqlType("real"),
        "DOUBLE": SqlType("float"),
        "DATE": SqlType("date"),
        "TIME": SqlType("time", scale=6),
        "TIME_NS": SqlType("time", scale=7),
        "TIMESTAMP": SqlType("datetime2", scale=6),
        "TIMESTAMP WITH TIME ZONE": SqlType("datetimeoffset", scale=7),
        "UUID": SqlType("uniqueidentifier"),
        "BLOB": SqlType("varbinary", -1),
        "VARCHAR": SqlType("nvarchar", 4000),
        "INTERVAL": SqlType("nvarchar", 4000),
        '"NULL"': SqlType("int"),
        "NULL": SqlType("int"),
    }
    return table.get(name, SqlType("nvarchar", 4000))


def max_length_bytes(t: SqlType) -> int:
    """sys.columns.max_length: bytes (nvarchar(50) -> 100), -1 for max."""
    if t.length == -1:
        return -1
    if t.name in ("nchar", "nvarchar"):
        return 2 * (t.length or 1)
    if t.name in STRING_TYPES or t.name in BINARY_TYPES:
        return t.length or 1
    fixed = {
        "tinyint": 1,
        "smallint": 2,
        "int": 4,
        "bigint": 8,
        "bit": 1,
        "real": 4,
        "float": 8,
        "money": 8,
        "smallmoney": 4,
        "date": 3,
        "datetime": 8,
        "smalldatetime": 4,
        "uniqueidentifier": 16,
    }
    if t.name in fixed:
        return fixed[t.name]
    if t.name in ("decimal", "numeric"):
        p = t.precision or 18
        return 5 if p <= 9 else 9 if p <= 19 else 13 if p <= 28 else 17
    scale = t.scale if t.scale is not None else 7
    base = 3 if scale <= 2 else 4 if scale <= 4 else 5
    return {"time": base, "datetime2": base + 3, "datetimeoffset": base + 5}.get(t.name, 8)
