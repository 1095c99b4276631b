"""Arrow (and SQL Server) types -> Snowflake column types, and schema drift between the two.

The mapping (docs/snowflake.md#types) keeps every value exactly:

====================================  =======================  ============================
SQL Server                            Arrow (the stream)       Snowflake
====================================  =======================  ============================
bit                                   bool                     BOOLEAN
tinyint / smallint / int / bigint     uint8/int16/int32/int64  NUMBER(3|5|10|19,0)
decimal(p,s) / numeric(p,s)           decimal128(p,s)          NUMBER(p,s)
money / smallmoney                    decimal128(19|10,4)      NUMBER(19|10,4)
real / float                          float32 / float64        FLOAT
char/varchar/nchar/nvarchar(n)        string                   VARCHAR(n)
(n)varchar(max), text, ntext, xml     string                   VARCHAR
uniqueidentifier                      string                   VARCHAR(36)
binary/varbinary(n|max), image        binary                   BINARY
date                                  date32                   DATE
time(n)                               time64[ns]               TIME(9)
datetime, datetime2(n), smalldt       timestamp[ms|us|ns]      TIMESTAMP_NTZ(9)
datetimeoffset(n)                     timestamp[.., UTC]       TIMESTAMP_TZ(9)
datetime2 as string (option)          string                   VARCHAR
====================================  =======================  ============================

Why these choices: NUMBER keeps the source's precision so a later
``int -> bigint`` or ``decimal(18,2) -> decimal(20,2)`` is a widening that
``ALTER TABLE`` can apply; VARCHAR keeps the declared length (characters, as
in Snowflake) for the same reason; every timestamp is precision 9 because
Snowflake cannot change a timestamp's precision later and 9 holds
``datetime2(7)``'s 100 ns digit; BINARY has no length (Snowflake's limit is
8 MB, SQL Server's binary lengths carry no meaning for readers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from dtaas_dagster.errors import PermanentLoadError

_INT_PRECISION = {
    pa.int8(): 3,
    pa.uint8(): 3,
    pa.int16(): 5,
    pa.uint16(): 5,
    pa.int32(): 10,
    pa.uint32(): 10,
    pa.int64(): 19,
    pa.uint64(): 20,
}
# Parquet unsigned annotations are not read the same by every engine; the signed
# type one size up holds every value and lands in the same NUMBER.
_PARQUET_SIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64()}
_TEXT_LENGTH = re.compile(r"^n?(?:var)?char\((\d+)\)$")
# INFORMATION_SCHEMA.COLUMNS.DATA_TYPE spellings -> our base names
_BASE_ALIASES = {
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "CHAR": "VARCHAR",
    "CHARACTER": "VARCHAR",
    "DECIMAL": "NUMBER",
    "NUMERIC": "NUMBER",
    "INT": "NUMBER",
    "INTEGER": "NUMBER",
    "BIGINT": "NUMBER",
    "SMALLINT": "NUMBER",
    "TINYINT": "NUMBER",
    "BYTEINT": "NUMBER",
    "DOUBLE": "FLOAT",
    "DOUBLE PRECISION": "FLOAT",
    "REAL": "FLOAT",
    "FLOAT4": "FLOAT",
    "FLOAT8": "FLOAT",
    "VARBINARY": "BINARY",
    "DATETIME": "TIMESTAMP_NTZ",
    "TIMESTAMP": "TIMESTAMP_NTZ",
}


class UnsupportedSnowflakeType(PermanentLoadError):
    """An Arrow type that has no exact Snowflake column type."""


@dataclass(frozen=True)
class SnowflakeType:
    """A Snowflake column type: base name plus length or precision/scale where they matter."""

    base: str
    length: int | None = None  # VARCHAR only; None = the maximum
    precision: int | None = None  # NUMBER only
    scale: int | None = None  # NUMBER only
    fraction_digits: int | None = field(default=None, compare=False)  # TIME/TIMESTAMP, informational

    @property
    def sql(self) -> str:
        if self.base == "NUMBER":
            return f"NUMBER({self.precision},{self.scale})"
        if self.base == "VARCHAR":
            return "VARCHAR" if self.length is None else f"VARCHAR({self.length})"
        if self.base in ("TIME", "TIMESTAMP_NTZ", "TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
            return f"{self.base}({9 if self.fraction_digits is None else self.fraction_digits})"
        return self.base

    def __str__(self) -> str:
        return self.sql


VARCHAR = SnowflakeType("VARCHAR")


def text_length(source_type: str | None) -> int | None:
    """The declared character length of a SQL Server text type (None for max, text types without one, or unknown)."""
    if not source_type:
        return None
    if source_type == "uniqueidentifier":
        return 36
    match = _TEXT_LENGTH.match(source_type.strip().lower())
    return int(match.group(1)) if match else None


def snowflake_type(arrow_type: pa.DataType, source_type: str | None = None, *, column: str = "?") -> SnowflakeType:
    """The Snowflake column type that holds every value of ``arrow_type`` exactly."""
    if pa.types.is_boolean(arrow_type):
        return SnowflakeType("BOOLEAN")
    if arrow_type in _INT_PRECISION:
        return SnowflakeType("NUMBER", precision=_INT_PRECISION[arrow_type], scale=0)
    if pa.types.is_decimal128(arrow_type):
        return SnowflakeType("NUMBER", precision=arrow_type.precision, scale=arrow_type.scale)
    if pa.types.is_floating(arrow_type):
        return SnowflakeType("FLOAT")
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return SnowflakeType("VARCHAR", length=text_length(source_type))
    if (
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_fixed_size_binary(arrow_type)
    ):
        return SnowflakeType("BINARY")
    if pa.types.is_date32(arrow_type) or pa.types.is_date64(arrow_type):
        return SnowflakeType("DATE")
    if pa.types.is_time(arrow_type):
        return SnowflakeType("TIME", fraction_digits=9)
    if pa.types.is_timestamp(arrow_type):
        return SnowflakeType("TIMESTAMP_TZ" if arrow_type.tz else "TIMESTAMP_NTZ", fraction_digits=9)
    raise UnsupportedSnowflakeType(
        f"column {column!r} has Arrow type {arrow_type} (SQL Server {source_type or 'unknown'}), which has no exact "
        "Snowflake type in dtaas; exclude it with columns_exclude or cast it at the source"
    )


def parquet_type(arrow_type: pa.DataType) -> pa.DataType:
    """The Arrow type written to the staged Parquet file for a column of ``arrow_type``."""
    return _PARQUET_SIGNED.get(arrow_type, arrow_type)


def from_information_schema(
    data_type: str, length: int | None, precision: int | None, scale: int | None
) -> SnowflakeType:
    """A column type as INFORMATION_SCHEMA.COLUMNS reports it."""
    base = data_type.strip().upper()
    base = _BASE_ALIASES.get(base, base)
    if base == "NUMBER":
        return SnowflakeType("NUMBER", precision=int(precision if precision is not None else 38), scale=int(scale or 0))
    if base == "VARCHAR":
        # Snowflake reports the maximum (16777216 or more) for an unbounded VARCHAR
        return SnowflakeType("VARCHAR", length=None if length is None or length >= 16_777_216 else int(length))
    return SnowflakeType(base)


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class TypeChange:
    column: str
    old: SnowflakeType
    new: SnowflakeType

    def __str__(self) -> str:
        return f"{self.column}: {self.old.sql} -> {self.new.sql}"


@dataclass(frozen=True)
class Drift:
    """How the columns a load brings differ from the target table's."""

    added: tuple[tuple[str, SnowflakeType], ...] = ()  # in the load, not in the target
    widened: tuple[TypeChange, ...] = ()  # ALTER TABLE can widen these
    incompatible: tuple[TypeChange, ...] = ()  # no ALTER can make the target hold the new type
    missing: tuple[str, ...] = ()  # in the target, not in the load (loaded as NULL)

    @property
    def any(self) -> bool:
        return bool(self.added or self.widened or self.incompatible or self.missing)

    def lines(self) -> list[str]:
        return (
            [f"new column {name} {kind.sql}" for name, kind in self.added]
            + [f"wider type {change}" for change in self.widened]
            + [f"changed type {change}" for change in self.incompatible]
            + [f"column {name} no longer in the source" for name in self.missing]
        )


def widening(old: SnowflakeType, new: SnowflakeType) -> str:
    """'same' when ``old`` already holds every value of ``new``, 'widen' when ALTER can make it, else 'incompatible'."""
    if old.base != new.base:
        same_family = {old.base, new.base} <= {"TIMESTAMP_NTZ", "TIMESTAMP_LTZ"}
        return "same" if same_family else "incompatible"
    if old.base == "VARCHAR":
        if old.length is None or (new.length is not None and new.length <= old.length):
            return "same"
        return "widen"
    if old.base == "NUMBER":
        assert old.precision is not None and new.precision is not None
        if new.scale != old.scale:
            # Snowflake cannot change a NUMBER's scale; the integer digits decide whether values fit
            fits = (new.scale or 0) <= (old.scale or 0) and new.precision - (new.scale or 0) <= old.precision - (
                old.scale or 0
            )
            return "same" if fits else "incompatible"
        return "same" if new.precision <= old.precision else "widen"
    return "same"


def plan_drift(
    existing: dict[str, SnowflakeType],
    wanted: list[tuple[str, SnowflakeType]],
    *,
    system_columns: frozenset[str] = frozenset(),
) -> Drift:
    """Compare the target's columns (``existing``, by name) with the ones a load brings (``wanted``, in order)."""
    added, widened, incompatible = [], [], []
    for name, new in wanted:
        old = existing.get(name)
        if old is None:
            added.append((name, new))
            continue
        verdict = widening(old, new)
        if verdict == "widen":
            widened.append(TypeChange(name, old, new))
        elif verdict == "incompatible":
            incompatible.append(TypeChange(name, old, new))
    wanted_names = {name for name, _ in wanted}
    missing = [name for name in existing if name not in wanted_names and name not in system_columns]
    return Drift(tuple(added), tuple(widened), tuple(incompatible), tuple(missing))
