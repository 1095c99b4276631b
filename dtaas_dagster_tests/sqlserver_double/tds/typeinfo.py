"""TYPE_INFO bytes (MS-TDS 2.2.5.6) for the SqlType of each result column.

The double always sends the nullable wire types (INTN, FLTN, DECIMALN, ...):
every client reads them, and one encoding per type keeps the row encoder small.
"""

from __future__ import annotations

import struct

from ..engine_api import SqlType

# SQL_Latin1_General_CP1_CI_AS: LCID 0x0409, flags 0xD0 (ignore case/kana/width), sort id 52.
COLLATION = bytes([0x09, 0x04, 0xD0, 0x00, 0x34])

INTN, BITN, FLTN, MONEYN, DATETIMN = 0x26, 0x68, 0x6D, 0x6E, 0x6F
DECIMALN, NUMERICN, GUID = 0x6A, 0x6C, 0x24
DATEN, TIMEN, DATETIME2N, DATETIMEOFFSETN = 0x28, 0x29, 0x2A, 0x2B
BIGVARBIN, BIGVARCHR, BIGBINARY, BIGCHAR, NVARCHAR, NCHAR = 0xA5, 0xA7, 0xAD, 0xAF, 0xE7, 0xEF

INT_WIDTH = {"tinyint": 1, "smallint": 2, "int": 4, "bigint": 8}
CHAR_TYPES = {"char": BIGCHAR, "varchar": BIGVARCHR, "text": BIGVARCHR}
NCHAR_TYPES = {"nchar": NCHAR, "nvarchar": NVARCHAR, "ntext": NVARCHAR, "sysname": NVARCHAR}
BINARY_TYPES = {
    "binary": BIGBINARY,
    "varbinary": BIGVARBIN,
    "image": BIGVARBIN,
    "timestamp": BIGBINARY,
    "rowversion": BIGBINARY,
}
MAX_TYPES = {"text", "ntext", "image"}


def decimal_width(precision: int) -> int:
    """Bytes of a DECIMALN value without its length byte: sign + 4/8/12/16 magnitude bytes."""
    if precision <= 9:
        return 5
    if precision <= 19:
        return 9
    if precision <= 28:
        return 13
    return 17


def time_width(scale: int) -> int:
    """Bytes of the time part of time/datetime2/datetimeoffset at a fractional scale."""
    return 3 if scale <= 2 else 4 if scale <= 4 else 5


def is_plp(t: SqlType) -> bool:
    """True when values travel as partially length-prefixed (PLP) chunks: the (max) types."""
    name = t.name.lower()
    return name in MAX_TYPES or ((name in CHAR_TYPES or name in NCHAR_TYPES or name in BINARY_TYPES) and t.length == -1)


def _scale(t: SqlType) -> int:
    return 7 if t.scale is None else t.scale


def type_info(t: SqlType) -> bytes:
    """TYPE_INFO for one column, as sent in COLMETADATA and RETURNVALUE."""
    name = t.name.lower()
    if name in INT_WIDTH:
        return bytes([INTN, INT_WIDTH[name]])
    if name == "bit":
        return bytes([BITN, 1])
    if name in ("float", "real"):
        return bytes([FLTN, 4 if name == "real" else 8])
    if name in ("decimal", "numeric"):
        p = t.precision or 18
        s = t.scale or 0
        return bytes([DECIMALN if name == "decimal" else NUMERICN, decimal_width(p), p, s])
    if name in ("money", "smallmoney"):
        return bytes([MONEYN, 8 if name == "money" else 4])
    if name in ("datetime", "smalldatetime"):
        return bytes([DATETIMN, 8 if name == "datetime" else 4])
    if name == "date":
        return bytes([DATEN])
    if name == "time":
        return bytes([TIMEN, _scale(t)])
    if name == "datetime2":
        return bytes([DATETIME2N, _scale(t)])
    if name == "datetimeoffset":
        return bytes([DATETIMEOFFSETN, _scale(t)])
    if name == "uniqueidentifier":
        return bytes([GUID, 16])
    if name in CHAR_TYPES:
        return bytes([CHAR_TYPES[name]]) + _max_len(t, 1) + COLLATION
    if name in NCHAR_TYPES:
        return bytes([NCHAR_TYPES[name]]) + _max_len(t, 2) + COLLATION
    if name in BINARY_TYPES:
        return bytes([BINARY_TYPES[name]]) + _max_len(t, 1)
    raise ValueError(f"SQL type {t.name!r} has no TDS encoding in the double; map it to a supported type")


def _max_len(t: SqlType, unit: int) -> bytes:
    if is_plp(t):
        return b"\xff\xff"
    length = t.length if t.length and t.length > 0 else (128 if t.name == "sysname" else 1)
    return struct.pack("<H", min(length * unit, 8000))
