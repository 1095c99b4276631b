"""Type names used by cast_type and add_column: int, bigint, float, decimal(p,s), string, bool, date, timestamp."""

from __future__ import annotations

import re

import pyarrow as pa

TYPE_NAMES = ("int", "bigint", "float", "decimal(p,s)", "string", "bool", "date", "timestamp")
_SIMPLE = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}
_DECIMAL = re.compile(r"^decimal\(\s*(\d{1,2})\s*,\s*(\d{1,2})\s*\)$")


def parse_type_name(text: str) -> pa.DataType:
    """The Arrow type of a type name; ValueError naming the accepted names."""
    name = text.strip().lower()
    if name in _SIMPLE:
        return _SIMPLE[name]
    match = _DECIMAL.match(name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"decimal({precision},{scale}) is out of range; precision 1-38 and scale <= precision")
        return pa.decimal128(precision, scale)
    raise ValueError(f"unknown type {text!r}; use one of {', '.join(TYPE_NAMES)} (e.g. decimal(18,2))")
