"""Builders for the server's TDS tokens (MS-TDS 2.2.7)."""

from __future__ import annotations

import struct
from typing import Any

import pyarrow as pa

from ..engine_api import ResultColumn, SqlType
from . import typeinfo as ti
from .rowencode import encode_column, interleave

TDS74 = 0x74000004
SERVER_VERSION = (16, 0, 1000)  # SQL Server 2022 RTM

DONE_FINAL, DONE_MORE, DONE_ERROR, DONE_INXACT, DONE_COUNT, DONE_ATTN = 0, 0x1, 0x2, 0x4, 0x10, 0x20
DONE_SRVERROR = 0x100
TOKEN_DONE, TOKEN_DONEPROC, TOKEN_DONEINPROC = 0xFD, 0xFE, 0xFF

ENV_DATABASE, ENV_LANGUAGE, ENV_PACKETSIZE, ENV_COLLATION = 1, 2, 4, 7
ENV_BEGIN_TRAN, ENV_COMMIT_TRAN, ENV_ROLLBACK_TRAN = 8, 9, 10


def b_varchar(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return bytes([len(raw) // 2]) + raw


def us_varchar(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return struct.pack("<H", len(raw) // 2) + raw


def _with_len(token: int, body: bytes) -> bytes:
    return struct.pack("<BH", token, len(body)) + body


def envchange_text(kind: int, new: str, old: str) -> bytes:
    return _with_len(0xE3, bytes([kind]) + b_varchar(new) + b_varchar(old))


def envchange_bytes(kind: int, new: bytes, old: bytes) -> bytes:
    return _with_len(0xE3, bytes([kind, len(new)]) + new + bytes([len(old)]) + old)


def message(
    *, error: bool, number: int, state: int, severity: int, text: str, server: str, proc: str = "", line: int = 1
) -> bytes:
    """ERROR (0xAA) or INFO (0xAB) token."""
    body = struct.pack("<iBB", number, state, severity) + us_varchar(text) + b_varchar(server)
    body += b_varchar(proc) + struct.pack("<i", line)
    return _with_len(0xAA if error else 0xAB, body)


def loginack(program: str = "Microsoft SQL Server") -> bytes:
    major, minor, build = SERVER_VERSION
    body = bytes([1]) + struct.pack(">I", TDS74) + b_varchar(program) + struct.pack(">BBH", major, minor, build)
    return _with_len(0xAD, body)


def feature_ext_ack() -> bytes:
    """FEATUREEXTACK acknowledging no feature: the client asked, the double negotiates none."""
    return b"\xae\xff"


def done(status: int, rowcount: int | None = None, *, token: int = TOKEN_DONE, cur_cmd: int = 0) -> bytes:
    if rowcount is not None:
        status |= DONE_COUNT
    return struct.pack("<BHHQ", token, status, cur_cmd, rowcount or 0)


def return_status(value: int) -> bytes:
    return struct.pack("<Bi", 0x79, value)


def colmetadata(columns: list[ResultColumn]) -> bytes:
    parts = [struct.pack("<BH", 0x81, len(columns))]
    for col in columns:
        flags = 0x0001 if col.type.nullable else 0x0000
        parts.append(struct.pack("<IH", 0, flags | 0x0008))  # 0x0008: updateable unknown
        parts.append(ti.type_info(col.type))
        parts.append(b_varchar(col.name))
    return b"".join(parts)


def null_value(t: SqlType) -> bytes:
    """The NULL encoding of a nullable type in a ROW token or RETURNVALUE."""
    if ti.is_plp(t):
        return b"\xff" * 8
    name = t.name.lower()
    if name in ti.CHAR_TYPES or name in ti.NCHAR_TYPES or name in ti.BINARY_TYPES:
        return b"\xff\xff"
    return b"\x00"


def arrow_type(t: SqlType) -> pa.DataType:
    """The Arrow type engine_api assigns to a SQL type (for encoding single values)."""
    name = t.name.lower()
    simple = {
        "tinyint": pa.uint8(),
        "smallint": pa.int16(),
        "int": pa.int32(),
        "bigint": pa.int64(),
        "bit": pa.bool_(),
        "real": pa.float32(),
        "float": pa.float64(),
        "date": pa.date32(),
        "time": pa.time64("ns"),
        "datetime": pa.timestamp("us"),
        "smalldatetime": pa.timestamp("us"),
        "money": pa.decimal128(19, 4),
        "smallmoney": pa.decimal128(10, 4),
    }
    if name in simple:
        return simple[name]
    if name in ("decimal", "numeric"):
        return pa.decimal128(t.precision or 18, t.scale or 0)
    if name == "datetime2":
        return pa.timestamp("us")
    if name in ti.BINARY_TYPES:
        return pa.binary()
    return pa.string()


def encode_value(value: Any, t: SqlType) -> bytes:
    """One value as it appears in a ROW token (length prefix included)."""
    if value is None:
        return null_value(t)
    if t.name.lower() == "uniqueidentifier":
        value = str(value).upper()
    arr = pa.array([value], type=arrow_type(t))
    return bytes(interleave(1, encode_column(arr, t)))


def return_value(ordinal: int, name: str, t: SqlType, value: Any) -> bytes:
    """RETURNVALUE (0xAC) for an OUTPUT parameter of an RPC."""
    body = struct.pack("<H", ordinal) + b_varchar(name) + bytes([0x01]) + struct.pack("<IH", 0, 0x0001)
    return bytes([0xAC]) + body + ti.type_info(t) + encode_value(value, t)


def row(values: list[Any], types: list[SqlType]) -> bytes:
    """A ROW token built value by value: for small metadata result sets only."""
    return b"\xd1" + b"".join(encode_value(v, t) for v, t in zip(values, types))
