"""TLS inside PRELOGIN, connected many times: the handshake must never fail (0x80090308)."""

from __future__ import annotations

import pyodbc
import pytest

from dtaas_dagster_tests.double_tests.conftest_protocol import SMALL_SQL, conn_str, server, stub_engine
from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

__all__ = ["server", "stub_engine"]


@pytest.mark.slow
@pytest.mark.parametrize("packet_size", [None, 32767])
def test_200_tls_connects_all_succeed(server: DoubleServer, packet_size: int | None) -> None:
    extra = f"PacketSize={packet_size}" if packet_size else ""
    failures = []
    for i in range(200):
        try:
            with pyodbc.connect(conn_str(server, encrypt="yes", extra=extra), autocommit=True, timeout=10) as conn:
                assert conn.cursor().execute(SMALL_SQL).fetchone().i == 1
        except pyodbc.Error as exc:
            failures.append((i, str(exc)))
    assert failures == []


@pytest.mark.slow
def test_100_freetds_tls_connects_all_succeed(server: DoubleServer) -> None:
    for _ in range(100):
        with pyodbc.connect(conn_str(server, "freetds") + ";Encryption=require", autocommit=True, timeout=10) as conn:
            assert conn.cursor().execute(SMALL_SQL).fetchone().i == 1
