"""Decoding of RPC requests (MS-TDS 2.2.6.6) and their parameter values.

Parameter values are few per request, so they are decoded value by value into
Python objects (engine_api.Param). ALL_HEADERS is parsed for the transaction
descriptor only.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from ..engine_api import Param, SqlType

PROC_IDS = {
    1: "sp_cursor",
    2: "sp_cursoropen",
    3: "sp_cursorprepare",
    4: "sp_cursorexecute",
    5: "sp_cursorprepexec",
    6: "sp_cursorunprepare",
    7: "sp_cursorfetch",
    8: "sp_cursoroption",
    9: "sp_cursorclose",
    10: "sp_executesql",
    11: "sp_prepare",
    12: "sp_execute",
    13: "sp_prepexec",
    14: "sp_prepexecrpc",
    15: "sp_unprepare",
}
BATCH_SEPARATORS = (0x80, 0xFE, 0xFF)
EPOCH_0001 = dt.date(1, 1, 1)
EPOCH_1900 = dt.datetime(1900, 1, 1)

FIXED_TYPES = {
    0x30: ("tinyint", 1),
    0x32: ("bit", 1),
    0x34: ("smallint", 2),
    0x38: ("int", 4),
    0x3A: ("smalldatetime", 4),
    0x3B: ("real", 4),
    0x3C: ("money", 8),
    0x3D: ("datetime", 8),
    0x3E: ("float", 8),
    0x7A: ("smallmoney", 4),
    0x7F: ("bigint", 8),
    0x1F: ("null", 0),
}
BYTELEN_TYPES = {
    0x24: "uniqueidentifier",
    0x26: "int",
    0x37: "decimal",
    0x3F: "numeric",
    0x68: "bit",
    0x6A: "decimal",
    0x6C: "numeric",
    0x6D: "float",
    0x6E: "money",
    0x6F: "datetime",
    0x2F: "char",
    0x27: "varchar",
    0x2D: "binary",
    0x25: "varbinary",
}
USHORT_TYPES = {0xA5: "varbinary", 0xA7: "varchar", 0xAD: "binary", 0xAF: "char", 0xE7: "nvarchar", 0xEF: "nchar"}
LONG_TYPES = {0x23: "text", 0x63: "ntext", 0x22: "image"}
SCALED_TYPES = {0x29: "time", 0x2A: "datetime2", 0x2B: "datetimeoffset"}


class Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("RPC request ends in the middle of a value")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def b_varchar(self) -> str:
        return self.take(2 * self.u8()).decode("utf-16-le")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


@dataclass
class WireType:
    """A parameter's TYPE_INFO: how its value is laid out, and the SqlType it means."""

    code: int
    sql: SqlType
    size: int = 0  # fixed size, or max length in bytes for variable types
    kind: str = "fixed"  # fixed | bytelen | ushort | plp | long | date | scaled


@dataclass
class RpcCall:
    name: str
    params: list[Param] = field(default_factory=list)


def skip_all_headers(data: bytes) -> tuple[int, int]:
    """(position after ALL_HEADERS, transaction descriptor found in it or 0)."""
    if len(data) < 4:
        return 0, 0
    total = struct.unpack_from("<I", data, 0)[0]
    if total < 4 or total > len(data):  # no ALL_HEADERS (pre-7.2 style)
        return 0, 0
    pos, descriptor = 4, 0
    while pos < total:
        length, htype = struct.unpack_from("<IH", data, pos)
        if htype == 2:
            descriptor = struct.unpack_from("<Q", data, pos + 6)[0]
        pos += max(length, 6)
    return total, descriptor


def read_type_info(r: Reader) -> WireType:
    code = r.u8()
    if code in FIXED_TYPES:
        name, size = FIXED_TYPES[code]
        return WireType(code, SqlType(name), size, "fixed")
    if code in BYTELEN_TYPES:
        size = r.u8()
        name = BYTELEN_TYPES[code]
        if name in ("decimal", "numeric"):
            precision, scale = r.u8(), r.u8()
            return WireType(code, SqlType(name, precision=precision, scale=scale), size, "bytelen")
        if name in ("char", "varchar"):
            r.take(5)
        sql = _bytelen_sql(name, size)
        return WireType(code, sql, size, "bytelen")
    if code in USHORT_TYPES:
        (size,) = r.unpack("<H")
        name = USHORT_TYPES[code]
        if name in ("varchar", "char", "nvarchar", "nchar"):
            r.take(5)
        unit = 2 if name.startswith("n") else 1
        length = -1 if size == 0xFFFF else size // unit
        return WireType(code, SqlType(name, length=length), size, "plp" if size == 0xFFFF else "ushort")
    if code in LONG_TYPES:
        (size,) = r.unpack("<i")
        name = LONG_TYPES[code]
        if name != "image":
            r.take(5)
        return WireType(code, SqlType(name, length=-1), size, "long")
    if code == 0x28:
        return WireType(code, SqlType("date"), 3, "date")
    if code in SCALED_TYPES:
        scale = r.u8()
        return WireType(code, SqlType(SCALED_TYPES[code], scale=scale), 0, "scaled")
    raise ValueError(f"RPC parameter type 0x{code:02X} is not supported by the SQL Server double")


def _bytelen_sql(name: str, size: int) -> SqlType:
    if name == "int":
        return SqlType({1: "tinyint", 2: "smallint", 4: "int", 8: "bigint"}[size])
    if name == "float":
        return SqlType("real" if size == 4 else "float")
    if name == "money":
        return SqlType("smallmoney" if size == 4 else "money")
    if name == "datetime":
        return SqlType("smalldatetime" if size == 4 else "datetime")
    if name in ("char", "varchar", "binary", "varbinary"):
        return SqlType(name, length=size)
    return SqlType(name)


def read_value(r: Reader, wt: WireType) -> object:
    if wt.kind == "fixed":
        return None if wt.size == 0 else decode_scalar(wt, r.take(wt.size))
    if wt.kind in ("bytelen", "date", "scaled"):
        n = r.u8()
        return None if n == 0 else decode_scalar(wt, r.take(n))
    if wt.kind == "ushort":
        (n,) = r.unpack("<H")
        return None if n == 0xFFFF else decode_scalar(wt, r.take(n))
    if wt.kind == "long":
        (n,) = r.unpack("<i")
        return None if n == -1 else decode_scalar(wt, r.take(n))
    (total,) = r.unpack("<Q")  # PLP
    if total == 0xFFFFFFFFFFFFFFFF:
        return None
    chunks = []
    while True:
        (n,) = r.unpack("<I")
        if n == 0:
            break
        chunks.append(r.take(n))
    return decode_scalar(wt, b"".join(chunks))


def decode_scalar(wt: WireType, raw: bytes) -> object:
    name = wt.sql.name
    if name in ("tinyint", "smallint", "int", "bigint"):
        return int.from_bytes(raw, "little", signed=name != "tinyint")
    if name == "bit":
        return raw[0] != 0
    if name in ("real", "float"):
        return struct.unpack("<f" if len(raw) == 4 else "<d", raw)[0]
    if name in ("decimal", "numeric"):
        return _exact_decimal(int.from_bytes(raw[1:], "little"), negative=raw[0] == 0, scale=wt.sql.scale or 0)
    if name in ("money", "smallmoney"):
        if len(raw) == 8:
            hi, lo = struct.unpack("<iI", raw)
            value = (hi << 32) | lo
        else:
            value = struct.unpack("<i", raw)[0]
        return _exact_decimal(abs(value), negative=value < 0, scale=4)
    if name in ("datetime", "smalldatetime"):
        return _datetime(raw)
    if name in ("nvarchar", "nchar", "ntext"):
        return raw.decode("utf-16-le")
    if name in ("varchar", "char", "text"):
        return raw.decode("cp1252", errors="replace")
    if name in ("binary", "varbinary", "image"):
        return raw
    if name == "uniqueidentifier":
        return uuid.UUID(bytes_le=raw)
    return _temporal(name, wt.sql.scale if wt.sql.scale is not None else 7, raw)


def _exact_decimal(magnitude: int, *, negative: bool, scale: int) -> Decimal:
    """Build the Decimal from its digits: arithmetic would round to the context's 28 digits."""
    return Decimal((int(negative), tuple(int(d) for d in str(magnitude)), -scale))


def _datetime(raw: bytes) -> dt.datetime:
    if len(raw) == 4:
        days, minutes = struct.unpack("<HH", raw)
        return EPOCH_1900 + dt.timedelta(days=days, minutes=minutes)
    days, ticks = struct.unpack("<iI", raw)
    micro = (ticks * 10_000 + 1) // 3  # 1/300 s -> us (SQL Server rounds .003/.007 ms)
    return EPOCH_1900 + dt.timedelta(days=days, microseconds=micro)


def _time_units(raw: bytes, scale: int) -> dt.timedelta:
    units = int.from_bytes(raw, "little")
    return (
        dt.timedelta(microseconds=units * 10**6 // 10**scale)
        if scale <= 6
        else dt.timedelta(microseconds=units // 10 ** (scale - 6))
    )


def _temporal(name: str, scale: int, raw: bytes) -> object:
    if name == "date":
        return EPOCH_0001 + dt.timedelta(days=int.from_bytes(raw, "little"))
    if name == "time":
        return (dt.datetime.min + _time_units(raw, scale)).time()
    tw = len(raw) - (3 if name == "datetime2" else 5)
    base = dt.datetime.combine(EPOCH_0001 + dt.timedelta(days=int.from_bytes(raw[tw : tw + 3], "little")), dt.time())
    value = base + _time_units(raw[:tw], scale)
    if name == "datetime2":
        return value
    offset = dt.timedelta(minutes=struct.unpack("<h", raw[tw + 3 :])[0])
    return (value + offset).replace(tzinfo=dt.timezone(offset))


def parse_rpc_batch(data: bytes) -> tuple[list[RpcCall], int]:
    """All RPC calls of one request message (TDS 7.2+ batches them with 0xFF), and the descriptor."""
    pos, descriptor = skip_all_headers(data)
    r = Reader(data, pos)
    calls: list[RpcCall] = []
    while not r.at_end():
        calls.append(_read_call(r))
        if not r.at_end() and r.data[r.pos] in BATCH_SEPARATORS:
            r.pos += 1
    return calls, descriptor


def _read_call(r: Reader) -> RpcCall:
    (name_len,) = r.unpack("<H")
    if name_len == 0xFFFF:
        (proc_id,) = r.unpack("<H")
        name = PROC_IDS.get(proc_id, f"proc#{proc_id}")
    else:
        name = r.take(2 * name_len).decode("utf-16-le")
    r.unpack("<H")  # option flags (WithRecompile, NoMetaData, ReuseMetaData)
    call = RpcCall(name)
    while not r.at_end() and r.data[r.pos] not in BATCH_SEPARATORS:
        pname = r.b_varchar()
        status = r.u8()
        wt = read_type_info(r)
        value = read_value(r, wt)
        pname = pname or f"@P{len(call.params) + 1}"
        call.params.append(Param(pname, wt.sql, value, output=bool(status & 0x01)))
    return call
