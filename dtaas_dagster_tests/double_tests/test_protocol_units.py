"""Unit tests of protocol pieces that need no client."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from dtaas_dagster_tests.sqlserver_double.engine_api import SqlType
from dtaas_dagster_tests.sqlserver_double.tds.login7 import decode_password
from dtaas_dagster_tests.sqlserver_double.tds.prelogin import (
    ENCRYPT_NOT_SUP,
    ENCRYPT_OFF,
    ENCRYPT_ON,
    OPT_ENCRYPTION,
    build_prelogin,
    choose_encryption,
    parse_prelogin,
)
from dtaas_dagster_tests.sqlserver_double.tds.requests import DATATYPE_INFO_BATCH
from dtaas_dagster_tests.sqlserver_double.tds.rowencode import encode_column, interleave
from dtaas_dagster_tests.sqlserver_double.tds.temporal import _normalise


def _obfuscate(password: str) -> bytes:
    out = []
    for b in password.encode("utf-16-le"):
        swapped = ((b << 4) & 0xF0) | (b >> 4)
        out.append(swapped ^ 0xA5)
    return bytes(out)


def test_login7_password_is_deobfuscated() -> None:
    assert decode_password(_obfuscate("Pässw0rd!")) == "Pässw0rd!"


def test_prelogin_answer_round_trips() -> None:
    options = parse_prelogin(build_prelogin(ENCRYPT_ON))
    assert options[OPT_ENCRYPTION] == bytes([ENCRYPT_ON])
    assert options[0][:2] == bytes([16, 0])  # SQL Server 2022 version


def test_encryption_choice() -> None:
    assert choose_encryption(ENCRYPT_ON, login_encryption=False) == ENCRYPT_ON
    assert choose_encryption(ENCRYPT_OFF, login_encryption=False) == ENCRYPT_NOT_SUP
    assert choose_encryption(ENCRYPT_OFF, login_encryption=True) == ENCRYPT_OFF
    assert choose_encryption(ENCRYPT_NOT_SUP, login_encryption=True) == ENCRYPT_NOT_SUP


def test_negative_decimal_is_sign_and_magnitude() -> None:
    arr = pa.array([Decimal("-1.05"), Decimal("1.05")], pa.decimal128(9, 2))
    encoded = bytes(interleave(2, encode_column(arr, SqlType("decimal", precision=9, scale=2))))
    assert encoded == bytes([5, 0, 105, 0, 0, 0, 5, 1, 105, 0, 0, 0])


def test_nvarchar_lengths_count_utf16_code_units() -> None:
    arr = pa.array(["a😀", "é"])
    encoded = bytes(interleave(2, encode_column(arr, SqlType("nvarchar", length=10))))
    assert encoded == (b"\x06\x00" + "a😀".encode("utf-16-le") + b"\x02\x00" + "é".encode("utf-16-le"))


def test_datetime_strings_with_short_fractions_are_accepted() -> None:
    assert _normalise(pa.array(["2024-01-01 01:02:03.45", "2024-01-01 01:02:03"]), 27).to_pylist() == [
        "2024-01-01 01:02:03.4500000",
        "2024-01-01 01:02:03.0000000",
    ]
    assert _normalise(pa.array(["2024-01-01 01:02:03.456789 -08:00"]), 34).to_pylist() == [
        "2024-01-01 01:02:03.4567890 -08:00"
    ]


def test_type_info_batch_forms_are_recognised() -> None:
    for sql in [
        "sp_datatype_info_100 93,3",
        "EXEC sys.sp_datatype_info_100 @data_type = -9, @odbcver = 3",
        "exec [sys].[sp_datatype_info_100]",
    ]:
        assert DATATYPE_INFO_BATCH.match(sql), sql
    assert not DATATYPE_INFO_BATCH.match("SELECT * FROM sp_datatype_info_100")


def test_reading_a_message_never_consumes_the_bytes_behind_it() -> None:
    """TLS: the client's encrypted LOGIN7 may arrive in the same segment as its last handshake packet."""
    import socket

    from dtaas_dagster_tests.sqlserver_double.tds.packets import PRELOGIN, PacketIO, RawTransport

    server_sock, client_sock = socket.socketpair()
    try:
        io = PacketIO(RawTransport(server_sock))
        first = io.frame(PRELOGIN, b"A" * 5000, last=False)  # split over two packets
        second = io.frame(PRELOGIN, b"B" * 10, last=True, packet_id=2)
        client_sock.sendall(first + second + b"\x17\x03\x03 tls record behind the message")
        ptype, _status, payload = io.read_message()
        assert ptype == PRELOGIN and payload == b"A" * 5000 + b"B" * 10
        assert bytes(io.transport.buffer) == b"\x17\x03\x03 tls record behind the message"
    finally:
        server_sock.close()
        client_sock.close()


def test_reply_writer_splits_into_full_packets_with_one_eom() -> None:
    import socket

    from dtaas_dagster_tests.sqlserver_double.tds.packets import HEADER, MessageWriter, PacketIO, RawTransport

    server_sock, client_sock = socket.socketpair()
    try:
        io = PacketIO(RawTransport(server_sock), packet_size=512)
        writer = MessageWriter(io)
        pieces = [b"a" * 10, b"b" * 2000, b"c" * 504, b"d" * 3]
        for piece in pieces:
            writer.write(piece)
        writer.finish()
        reader = PacketIO(RawTransport(client_sock), packet_size=512)
        packets = []
        while not packets or not packets[-1][1] & 0x01:
            packets.append(reader.read_packet())
    finally:
        server_sock.close()
        client_sock.close()
    assert b"".join(p[2] for p in packets) == b"".join(pieces)
    assert all(len(p[2]) == 504 for p in packets[:-1]) and 0 < len(packets[-1][2]) <= 504
    assert [p[1] & 0x01 for p in packets] == [0] * (len(packets) - 1) + [1]
    assert HEADER.size == 8


def test_a_value_longer_than_its_declared_column_is_refused_not_sent() -> None:
    """nvarchar(3) holds 3 UTF-16 code units: 'a😀b' (4 units) would desynchronise the client's reader."""
    import pytest

    from dtaas_dagster_tests.sqlserver_double.tds.rowencode import encode_rows

    fits = pa.record_batch([pa.array(["a😀", "abc"])], names=["v"])
    assert len(encode_rows(fits, [SqlType("nvarchar", 3)])) > 0
    too_long = pa.record_batch([pa.array(["abc", "a😀b"])], names=["v"])
    with pytest.raises(ValueError, match="nvarchar value of 8 bytes does not fit the declared nvarchar"):
        encode_rows(too_long, [SqlType("nvarchar", 3)])
    with pytest.raises(ValueError, match="varchar value of 9001 bytes"):
        encode_rows(pa.record_batch([pa.array(["x" * 9001])], names=["v"]), [SqlType("varchar", 8000)])
