"""SQL Server column types and the Arrow type each one is read as.

The mapping is exact: every value SQL Server can store in a supported type
survives the trip. The one type Arrow cannot hold exactly in every case is
``datetime2(7)`` (and ``datetimeoffset(7)``): 100 ns precision over years
0001-9999 fits neither ``timestamp[ns]`` (years 1677-2262) nor
``timestamp[us]`` (no 100 ns digit). For those columns a per-column
``datetime2`` option decides, never a silent loss:

- ``auto``: ``timestamp[ns]`` when the profile query shows every value within
  1677-09-21 00:12:43.145224192 .. 2262-04-11 23:47:16.854775807 (compared to
  the nanosecond: see :class:`ExactTimestamp`), else ``timestamp[us]`` when no
  value has a non-zero 100 ns digit, else (for CSV / JSON lines, which hold the
  exact text) ``string``, else (Parquet) the load stops *before anything is
  written* with an error naming every such column, its exact extremes and the
  options;
- ``timestamp_ns``: keep 100 ns; stop up front if a value is out of range;
- ``timestamp_us``: full range, the 100 ns digit is dropped (explicit opt-in);
- ``string``: ISO-8601 text with 7 fraction digits, lossless.

``datetimeoffset`` values become UTC instants (``timestamp[..., tz=UTC]``); the
original offset is not kept, the instant is. With ``string`` the text keeps it.

The task-wide option applies to the (7) columns only; a per-column option applies
to the column it names whatever its precision (``snapshot._column_options``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa

DATETIME2_OPTIONS = ("auto", "timestamp_ns", "timestamp_us", "string")

# The range timestamp[ns] holds: int64 nanoseconds around 1970-01-01, i.e.
# 1677-09-21 00:12:43.145224192 .. 2262-04-11 23:47:16.854775807. In datetime2(7)
# steps of 100 ns the first and last values inside are ...43.1452242 and ...16.8547758.
NS_MIN_EPOCH_NS = -(2**63)
NS_MAX_EPOCH_NS = 2**63 - 1
_EPOCH = dt.datetime(1970, 1, 1)

_TEXT_TYPES = {"char", "varchar", "nchar", "nvarchar", "text", "ntext", "sysname"}
_BINARY_TYPES = {"binary", "varbinary", "image", "timestamp", "rowversion"}
_FIXED = {
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
    "datetime": pa.timestamp("ms"),
    # minutes, but Parquet has no seconds unit (it would store ms and read back ms): one unit everywhere
    "smalldatetime": pa.timestamp("ms"),
    "uniqueidentifier": pa.string(),
}


class UnsupportedColumnType(ValueError):
    """A column whose SQL Server type the reader does not map."""


@dataclass(frozen=True)
class SourceColumn:
    """One column as INFORMATION_SCHEMA.COLUMNS describes it."""

    name: str
    data_type: str
    char_length: int | None = None  # characters for text types, bytes for binary; -1 = (max)
    precision: int | None = None
    scale: int | None = None
    datetime_precision: int | None = None
    nullable: bool = True

    @property
    def is_max(self) -> bool:
        return self.char_length == -1 or self.data_type in ("text", "ntext", "image")

    @property
    def is_text(self) -> bool:
        return self.data_type in _TEXT_TYPES

    @property
    def is_binary(self) -> bool:
        return self.data_type in _BINARY_TYPES

    @property
    def needs_datetime2_choice(self) -> bool:
        """datetime2(7)/datetimeoffset(7): the only types with no exact Arrow home in every case."""
        return self.data_type in ("datetime2", "datetimeoffset") and (self.datetime_precision or 0) > 6

    @property
    def type_text(self) -> str:
        """The type as one would write it in T-SQL: nvarchar(50), decimal(18,2), datetime2(7)."""
        name = self.data_type
        if self.is_text or (self.is_binary and name not in ("timestamp", "rowversion", "image")):
            if name in ("text", "ntext"):
                return name
            return f"{name}({'max' if self.char_length == -1 else self.char_length})"
        if name in ("decimal", "numeric"):
            return f"{name}({self.precision},{self.scale})"
        if name in ("datetime2", "datetimeoffset", "time"):
            return f"{name}({self.datetime_precision})"
        return name


def _temporal_unit(column: SourceColumn, choice: str) -> str:
    precision = column.datetime_precision if column.datetime_precision is not None else 7
    if precision <= 6 or choice == "timestamp_us":
        return "us"
    return "ns"


def arrow_type(column: SourceColumn, datetime2_choice: str = "timestamp_us") -> pa.DataType:
    """The Arrow type a column is read as; ``datetime2_choice`` is already resolved (not ``auto``)."""
    name = column.data_type
    if name in _FIXED:
        return _FIXED[name]
    if column.is_text:
        return pa.string()
    if column.is_binary:
        return pa.binary()
    if name in ("decimal", "numeric"):
        return pa.decimal128(column.precision or 18, column.scale or 0)
    if name == "time":
        return pa.time64("ns")
    if name == "datetime2":
        if datetime2_choice == "string":
            return pa.string()
        return pa.timestamp(_temporal_unit(column, datetime2_choice))
    if name == "datetimeoffset":
        if datetime2_choice == "string":
            return pa.string()
        return pa.timestamp(_temporal_unit(column, datetime2_choice), tz="UTC")
    raise UnsupportedColumnType(
        f"column {column.name} has type {name}, which the reader does not support; "
        f"leave it out with columns_exclude: [{column.name}]"
    )


class Datetime2PrecisionError(ValueError):
    """A datetime2(7) column whose values fit no lossless Arrow type under the chosen option."""


@dataclass(frozen=True, order=True)
class ExactTimestamp:
    """A datetime2 / datetimeoffset value to the nanosecond (``datetime`` stops at microseconds).

    ``epoch_ns`` counts nanoseconds from 1970-01-01 00:00 (UTC for datetimeoffset).
    The profile query reads ``MIN``/``MAX`` (through pyodbc, to the microsecond) and
    ``DATEPART(nanosecond, ...)`` of each, and :meth:`from_parts` joins them.
    """

    epoch_ns: int

    @classmethod
    def from_parts(cls, value: dt.datetime, nanosecond: int | None = None) -> ExactTimestamp:
        """``value`` to the second plus ``nanosecond`` (DATEPART; default: the microseconds of ``value``)."""
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        fraction = value.microsecond * 1000 if nanosecond is None else int(nanosecond)
        seconds = (value.replace(microsecond=0) - _EPOCH) // dt.timedelta(seconds=1)
        return cls(seconds * 1_000_000_000 + fraction)

    @property
    def fits_ns(self) -> bool:
        return NS_MIN_EPOCH_NS <= self.epoch_ns <= NS_MAX_EPOCH_NS

    def __str__(self) -> str:
        """``YYYY-MM-DD hh:mm:ss.fffffff``, then ``nn`` when the value is not in 100 ns steps."""
        seconds, nanos = divmod(self.epoch_ns, 1_000_000_000)
        v = _EPOCH + dt.timedelta(seconds=seconds)
        fraction = f"{nanos:09d}"
        fraction = fraction[:7] if fraction.endswith("00") else fraction
        return f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{fraction}"


NS_RANGE_TEXT = f"{ExactTimestamp(NS_MIN_EPOCH_NS)} .. {ExactTimestamp(NS_MAX_EPOCH_NS)}"


def _exact(value: dt.datetime | ExactTimestamp | None) -> ExactTimestamp | None:
    if value is None or isinstance(value, ExactTimestamp):
        return value
    return ExactTimestamp.from_parts(value)


def resolve_datetime2_choice(
    column: SourceColumn,
    option: str,
    *,
    minimum: dt.datetime | ExactTimestamp | None,
    maximum: dt.datetime | ExactTimestamp | None,
    max_sub_microsecond: int | None,
    table: str,
    text_destination: bool = False,
) -> str:
    """Turn ``auto`` into a concrete choice from the profile; check ``timestamp_ns`` fits.

    ``minimum``/``maximum`` are the column's exact extremes (a ``datetime`` counts
    to its microsecond). ``max_sub_microsecond`` is MAX(DATEPART(nanosecond, c) % 1000):
    non-zero when some value carries a 100 ns digit that ``timestamp[us]`` would drop.
    """
    if option not in DATETIME2_OPTIONS:
        raise ValueError(f"datetime2 option must be one of {', '.join(DATETIME2_OPTIONS)}, got {option!r}")
    if not column.needs_datetime2_choice or option in ("string", "timestamp_us"):
        return option if option != "auto" else "timestamp_us"
    low, high = _exact(minimum), _exact(maximum)
    if low is None or high is None or (low.fits_ns and high.fits_ns):
        return "timestamp_ns"  # no values (NULLs only), or every value fits
    if option == "auto" and not max_sub_microsecond:
        return "timestamp_us"
    if option == "auto" and text_destination:
        return "string"  # CSV / JSON lines hold the exact text; nothing to choose between
    outside = [
        f"{name} {value}{' UTC' if column.data_type == 'datetimeoffset' else ''}"
        for name, value in (("the minimum", low), ("the maximum", high))
        if not value.fits_ns
    ]
    why = (
        ""
        if option == "timestamp_ns"
        else " and some values have a 100 ns digit, which timestamp[us] would drop, so no timestamp type holds it"
    )
    raise Datetime2PrecisionError(
        f"{table}.{column.name} ({column.type_text}): {' and '.join(outside)} "
        f"{'lies' if len(outside) == 1 else 'lie'} outside what timestamp[ns] holds ({NS_RANGE_TEXT}){why}. "
        "Set datetime2 for this column to string (lossless text) or timestamp_us (drops the 100 ns digit)."
    )
