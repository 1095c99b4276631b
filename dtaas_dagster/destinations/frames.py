"""Loaded partitions as pandas DataFrames, exactly (for downstream assets annotated ``pd.DataFrame``).

pyarrow's default ``to_pandas`` is not exact for our types: an integer column
with a NULL becomes float64 (9007199254740993 turns into 9007199254740992), and
a ``time(7)`` value with a 100 ns digit raises ``ArrowInvalid`` (``datetime.time``
stops at microseconds). So every column gets a dtype that holds every value its
Arrow type can, and the dtype depends on the column's type only, never on
whether this partition happens to contain a NULL:

=====================================  =========================================  ==========
Arrow type (SQL Server type)           pandas dtype                                NULL
=====================================  =========================================  ==========
int8/16/32/64, uint8 (tinyint..bigint)  ``Int8/16/32/64``, ``UInt8`` (nullable)     ``pd.NA``
bool (bit)                             ``boolean`` (nullable)                      ``pd.NA``
float32/64 (real, float)               ``Float32/64`` (nullable)                   ``pd.NA``
string (char, varchar, text, guid, ..)  ``string[pyarrow]``                         ``pd.NA``
decimal128 (decimal, numeric, money)    ``object``: ``decimal.Decimal``            ``None``
binary (binary, varbinary, image, ..)   ``object``: ``bytes``                      ``None``
date32 (date)                          ``object``: ``datetime.date``               ``None``
time64[ns] (time)                      ``timedelta64[ns]``: time since midnight    ``NaT``
timestamp[ms/us/ns] (datetime, ..)      ``datetime64[ms/us/ns]``, same unit         ``NaT``
timestamp[.., UTC] (datetimeoffset)     ``datetime64[.., UTC]``                     ``NaT``
=====================================  =========================================  ==========

Timestamps keep their unit (pandas 2 has ``datetime64[us]``), so year 0001 and
9999 survive in microsecond columns. ``time`` becomes a ``Timedelta`` because
``pd.Timedelta`` holds nanoseconds and ``datetime.time`` does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pandas as pd


def _nullable_dtypes() -> dict[pa.DataType, Any]:
    import pandas as pd

    return {
        pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
        pa.float32(): pd.Float32Dtype(), pa.float64(): pd.Float64Dtype(),
        pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow"),
    }  # fmt: skip


def _time_as_duration(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """time64 -> duration of the same unit: the time since midnight, which pandas holds to the ns."""
    unit = column.type.unit
    return pc.cast(pc.cast(column, pa.int64()), pa.duration(unit))


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """``table`` as a DataFrame whose every value is exact (the mapping is in the module docstring)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_time(field.type):
            table = table.set_column(index, field.name, _time_as_duration(table.column(index)))
    dtypes = _nullable_dtypes()
    return table.to_pandas(types_mapper=dtypes.get)
