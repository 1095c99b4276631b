"""LOGIN7 (MS-TDS 2.2.6.4): the fields the double needs, and the password de-obfuscation."""

from __future__ import annotations

import struct
from dataclasses import dataclass

FIXED = struct.Struct("<IIIIII BBBB II")
F_EXTENSION = 0x10  # OptionFlags3.fExtension


@dataclass(frozen=True)
class Login:
    tds_version: int
    packet_size: int
    host: str
    user: str
    password: str
    app: str
    server: str
    library: str
    language: str
    database: str
    requested_features: bool

    def __repr__(self) -> str:  # never show the password
        return f"Login(user={self.user!r}, database={self.database!r}, app={self.app!r})"


def decode_password(raw: bytes) -> str:
    """Undo the LOGIN7 obfuscation: XOR 0xA5, then swap the nibbles of each byte."""
    plain = bytes((((b ^ 0xA5) & 0x0F) << 4) | ((b ^ 0xA5) >> 4) for b in raw)
    return plain.decode("utf-16-le")


def parse_login7(payload: bytes) -> Login:
    (_length, version, packet_size, _prog, _pid, _conn, _f1, _f2, _tf, flags3, _tz, _lcid) = FIXED.unpack_from(
        payload, 0
    )

    def field(index: int) -> bytes:
        offset, chars = struct.unpack_from("<HH", payload, 36 + 4 * index)
        return payload[offset : offset + 2 * chars]

    def text(index: int) -> str:
        return field(index).decode("utf-16-le")

    return Login(
        tds_version=version,
        packet_size=packet_size,
        host=text(0),
        user=text(1),
        password=decode_password(field(2)),
        app=text(3),
        server=text(4),
        library=text(6),
        language=text(7),
        database=text(8),
        requested_features=bool(flags3 & F_EXTENSION),
    )
