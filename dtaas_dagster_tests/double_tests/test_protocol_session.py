"""Login, encryption, errors, transactions, cancel and other clients against the protocol layer."""

from __future__ import annotations

import pyodbc
import pytest

from dtaas_dagster_tests.double_tests.conftest_protocol import (
    FAILING_SQL,
    PASSWORD,
    SMALL_SQL,
    TYPES_SQL,
    StubEngine,
    conn_str,
    server,
    stub_engine,
)
from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

__all__ = ["server", "stub_engine"]
SQL_DATABASE_NAME = 16


@pytest.mark.parametrize("driver", ["msodbc18", "freetds"])
def test_wrong_password_is_login_failed_18456(server: DoubleServer, driver: str) -> None:
    with pytest.raises(pyodbc.Error) as info:
        pyodbc.connect(conn_str(server, driver, password="wrong"), timeout=10)
    assert "18456" in str(info.value)
    assert "Login failed for user 'sa'." in str(info.value)


def test_database_from_login_opens_the_session(server: DoubleServer, stub_engine: StubEngine) -> None:
    with pyodbc.connect(conn_str(server, database="sales"), autocommit=True, timeout=10) as conn:
        assert conn.getinfo(SQL_DATABASE_NAME) == "sales"
        conn.cursor().execute("USE other")
        assert conn.getinfo(SQL_DATABASE_NAME) == "other"
    assert stub_engine.sessions[-1].database == "other"


def test_unknown_database_fails_the_login(server: DoubleServer) -> None:
    with pytest.raises(pyodbc.Error, match="4060"):
        pyodbc.connect(conn_str(server, database="no_such_db"), timeout=10)


@pytest.mark.parametrize(
    "encrypt, mode", [("no", "login-only"), ("optional", "login-only"), ("yes", "full"), ("mandatory", "full")]
)
def test_driver18_encryption_modes(server: DoubleServer, encrypt: str, mode: str) -> None:
    with pyodbc.connect(conn_str(server, encrypt=encrypt), autocommit=True, timeout=10) as conn:
        rows = conn.cursor().execute("SELECT * FROM numbers").fetchall()
    assert len(rows) == 200_000
    assert {m for _app, kind, m in server.traffic if kind == "encryption"} == {mode}


@pytest.mark.parametrize("extra, size", [("", "4096"), ("PacketSize=32767", "32767"), ("PacketSize=8192", "8192")])
def test_packet_size_from_login_is_used(server: DoubleServer, extra: str, size: str) -> None:
    with pyodbc.connect(conn_str(server, extra=extra), autocommit=True, timeout=10) as conn:
        assert len(conn.cursor().execute("SELECT * FROM numbers").fetchall()) == 200_000
    assert {m for _app, kind, m in server.traffic if kind == "packet_size"} == {size}


def test_no_encryption_when_the_server_is_configured_without_it(stub_engine: StubEngine) -> None:
    with DoubleServer(stub_engine, login_encryption=False) as srv:
        with pyodbc.connect(conn_str(srv, encrypt="no"), autocommit=True, timeout=10) as conn:
            assert conn.cursor().execute(SMALL_SQL).fetchone().i == 1
        assert {m for _app, kind, m in srv.traffic if kind == "encryption"} == {"none"}


def test_freetds_with_required_encryption(server: DoubleServer) -> None:
    with pyodbc.connect(conn_str(server, "freetds") + ";Encryption=require", autocommit=True, timeout=10) as conn:
        assert conn.cursor().execute(SMALL_SQL).fetchone().i == 1
    assert {m for _app, kind, m in server.traffic if kind == "encryption"} == {"full"}


def test_statement_error_becomes_sql_server_error(server: DoubleServer) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        with pytest.raises(pyodbc.Error) as info:
            conn.cursor().execute("RAISE 2627")
        assert "2627" in str(info.value) and "stub error 2627" in str(info.value)
        assert conn.cursor().execute(SMALL_SQL).fetchone() is not None  # connection still usable


def test_statement_error_continues_with_next_statement(server: DoubleServer, stub_engine: StubEngine) -> None:
    import pytds

    # pyodbc drops the statement after an error in SQLMoreResults; pytds reads on
    with pytds.connect(dsn="127.0.0.1", port=server.port, user="sa", password=PASSWORD, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute(f"{SMALL_SQL}; RAISE 547; {SMALL_SQL}")
        assert len(cursor.fetchall()) == 3
        with pytest.raises(pytds.Error, match="stub error 547"):
            cursor.nextset()
        assert cursor.nextset()
        assert len(cursor.fetchall()) == 3


def test_batch_aborting_error_skips_the_rest(server: DoubleServer, stub_engine: StubEngine) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        cursor = conn.cursor()
        cursor.execute(f"{SMALL_SQL}; RAISE 1205 ABORT; {SMALL_SQL}")
        cursor.fetchall()
        with pytest.raises(pyodbc.Error, match="1205"):
            cursor.nextset()
        assert not cursor.nextset()


@pytest.mark.parametrize("autocommit", [True, False])
def test_error_while_streaming_rows_keeps_the_connection(server: DoubleServer, autocommit: bool) -> None:
    with pyodbc.connect(conn_str(server), autocommit=autocommit, timeout=10) as conn:
        cursor = conn.cursor()
        with pytest.raises(pyodbc.Error, match="8115"):
            cursor.execute(FAILING_SQL)
            cursor.fetchall()
        if not autocommit:
            conn.rollback()
        assert len(conn.cursor().execute(SMALL_SQL).fetchall()) == 3


def test_unexpected_engine_exception_is_error_50000(server: DoubleServer) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        with pytest.raises(pyodbc.Error) as info:
            conn.cursor().execute("BOOM")
        assert "50000" in str(info.value) and "the stub engine exploded" in str(info.value)
        assert conn.cursor().execute(SMALL_SQL).fetchone() is not None


def test_transaction_manager_requests(server: DoubleServer, stub_engine: StubEngine) -> None:
    with pyodbc.connect(conn_str(server), autocommit=False, timeout=10) as conn:
        session = stub_engine.sessions[-1]
        conn.cursor().execute("INSERT INTO t VALUES (1)")
        assert session.in_transaction
        conn.commit()
        assert session.commits == 1
        conn.cursor().execute("INSERT INTO t VALUES (2)")
        conn.rollback()
        assert session.rollbacks == 1
    assert {text for _app, kind, text in server.traffic if kind == "tm"} >= {"begin", "commit", "rollback"}


def test_begin_tran_in_a_batch_sends_envchange(server: DoubleServer, stub_engine: StubEngine) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        conn.cursor().execute("BEGIN TRAN")
        assert stub_engine.sessions[-1].in_transaction
        conn.cursor().execute("COMMIT")
        assert not stub_engine.sessions[-1].in_transaction
        assert conn.cursor().execute(SMALL_SQL).fetchone() is not None


@pytest.mark.parametrize("driver", ["msodbc18", "freetds"])
def test_cancel_stops_a_streaming_result(server: DoubleServer, driver: str) -> None:
    with pyodbc.connect(conn_str(server, driver), autocommit=True, timeout=10) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT * FROM numbers")
        assert cursor.fetchone().n == 0
        cursor.cancel()
        assert len(conn.cursor().execute(SMALL_SQL).fetchall()) == 3


def test_pytds_cancel_gets_done_attn(server: DoubleServer) -> None:
    import pytds

    with pytds.connect(dsn="127.0.0.1", port=server.port, user="sa", password=PASSWORD, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT * FROM numbers")
        assert cursor.fetchone()[0] == 0
        cursor.cancel()
        cursor.execute(TYPES_SQL)
        assert len(cursor.fetchall()) == 3


def test_pymssql_smoke(server: DoubleServer) -> None:
    import pymssql

    with pymssql.connect(
        server="127.0.0.1", port=str(server.port), user="sa", password=PASSWORD, tds_version="7.4"
    ) as conn:
        cursor = conn.cursor()
        cursor.execute(TYPES_SQL)
        rows = cursor.fetchall()
        cursor.execute(SMALL_SQL)
        small = cursor.fetchall()
    assert rows[0][2] == -(2**31) and rows[1][14] == "Grüße 😀 Ω"
    assert [tuple(r) for r in small] == [(1, "a"), (2, "ü"), (3, None)]


def test_pytds_smoke(server: DoubleServer) -> None:
    import pytds

    with pytds.connect(dsn="127.0.0.1", port=server.port, user="sa", password=PASSWORD, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute(TYPES_SQL)
        rows = cursor.fetchall()
        cursor.execute("ECHO %s, %s", (42, "ünï"))
        echo = cursor.fetchone()
    assert rows[0][2] == -(2**31) and rows[1][14] == "Grüße 😀 Ω"
    assert tuple(echo) == (42, "ünï")
