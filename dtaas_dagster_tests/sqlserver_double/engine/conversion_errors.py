"""The error SQL Server raises when a value does not convert to a column's type.

The engine converts with TRY_CAST (NULL on failure) so that a failed
statement leaves DuckDB's transaction usable; this module then names the
failure as SQL Server would, from the raw value and DuckDB's type of it:

* a number too large for decimal/numeric/money: 8115 "Arithmetic overflow
  error converting numeric to data type numeric"
  (https://learn.microsoft.com/en-us/sql/t-sql/data-types/decimal-and-numeric-transact-sql);
* an integer too large for tinyint/smallint/int: 220, or 8115 when the
  source is a decimal or a bigint constant; a string holding such an integer: 248;
* a string that is no number, into decimal/float: 8114; that is no date: 241; anything else: 245.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from ..engine_api import SqlServerError, SqlType
from . import types as T

_INTEGERS = {"tinyint", "smallint", "int", "bigint"}
_EXACT = {"decimal", "numeric", "money", "smallmoney"}
_DUCK_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}


def _number(raw: str | None) -> Decimal | None:
    try:
        return Decimal(raw.strip()) if raw is not None else None
    except InvalidOperation:
        return None


def conversion_error(raw: str | None, source_type: str, target: SqlType) -> SqlServerError:
    """The SQL Server error for ``raw`` (DuckDB type ``source_type``) not converting to ``target``."""
    from_string = source_type.upper() == "VARCHAR"
    value = _number(raw)
    if value is not None and target.name in _INTEGERS:
        if from_string:
            return SqlServerError(
                248, f"The conversion of the varchar value '{raw}' overflowed an {target.name} column."
            )
        if source_type.upper() in _DUCK_INTEGERS and abs(value) < 2**31:
            return SqlServerError(220, f"Arithmetic overflow error for data type {target.name}, value = {raw}.")
        return SqlServerError(8115, f"Arithmetic overflow error converting expression to data type {target.name}.")
    if value is None and from_string and target.name in ("decimal", "numeric", "float", "real"):
        kind = "float" if target.name in ("float", "real") else "numeric"
        return SqlServerError(8114, f"Error converting data type varchar to {kind}.")
    if value is not None and target.name in _EXACT:
        kind = "money" if "money" in target.name else "numeric"
        return SqlServerError(
            8115, f"Arithmetic overflow error converting {'varchar' if from_string else 'numeric'} to data type {kind}."
        )
    if from_string and target.name in ("date", "time", "datetime", "smalldatetime", "datetime2", "datetimeoffset"):
        return SqlServerError(241, "Conversion failed when converting date and/or time from character string.")
    return SqlServerError(
        245, f"Conversion failed when converting the value '{raw}' to data type {T.type_text(target)}."
    )


def overflow_from_duckdb(text: str) -> SqlServerError | None:
    """8115 for DuckDB's "value is out of range" cast errors (CAST(123456.7 AS decimal(5,2)))."""
    if "out of range" not in text:
        return None
    if re.search(r"to type DECIMAL", text):
        return SqlServerError(8115, "Arithmetic overflow error converting numeric to data type numeric.")
    found = re.search(r"destination type (\w+)", text)
    target = _DUCK_TARGETS.get(found.group(1).upper(), "int") if found else "int"
    return SqlServerError(8115, f"Arithmetic overflow error converting expression to data type {target}.")


_DUCK_TARGETS = {"UINT8": "tinyint", "INT8": "tinyint", "INT16": "smallint", "INT32": "int", "INT64": "bigint"}
