"""PRELOGIN (MS-TDS 2.2.6.5): option table parsing and the server's answer."""

from __future__ import annotations

import struct

from .tokens import SERVER_VERSION

OPT_VERSION, OPT_ENCRYPTION, OPT_INSTOPT, OPT_THREADID, OPT_MARS, OPT_FEDAUTH = 0, 1, 2, 3, 4, 6
ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_NOT_SUP, ENCRYPT_REQ = 0, 1, 2, 3


def parse_prelogin(payload: bytes) -> dict[int, bytes]:
    """Option token -> option data."""
    options: dict[int, bytes] = {}
    pos = 0
    while pos < len(payload) and payload[pos] != 0xFF:
        token, offset, length = struct.unpack_from(">BHH", payload, pos)
        options[token] = payload[offset : offset + length]
        pos += 5
    return options


def choose_encryption(client: int, *, login_encryption: bool) -> int:
    """The server's ENCRYPTION answer.

    ON/REQ from the client -> ON (full TLS). OFF -> OFF (login-only TLS), as SQL
    Server answers (MS-TDS 2.2.6.5), or NOT_SUP (no TLS at all) when the server is
    configured without login encryption. NOT_SUP -> NOT_SUP.
    """
    if client in (ENCRYPT_ON, ENCRYPT_REQ):
        return ENCRYPT_ON
    if client == ENCRYPT_OFF and login_encryption:
        return ENCRYPT_OFF
    return ENCRYPT_NOT_SUP


def build_prelogin(encryption: int, *, fedauth_echo: bool = False) -> bytes:
    major, minor, build = SERVER_VERSION
    options = [
        (OPT_VERSION, struct.pack(">BBHH", major, minor, build, 0)),
        (OPT_ENCRYPTION, bytes([encryption])),
        (OPT_INSTOPT, b"\x00"),
        (OPT_THREADID, b""),
        (OPT_MARS, b"\x00"),
    ]
    if fedauth_echo:
        options.append((OPT_FEDAUTH, b"\x00"))
    header_len = 5 * len(options) + 1
    header, data = bytearray(), bytearray()
    for token, value in options:
        header += struct.pack(">BHH", token, header_len + len(data), len(value))
        data += value
    return bytes(header) + b"\xff" + bytes(data)
