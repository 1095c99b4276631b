"""Fidelity: the wire protocol and batch behaviour clients see, as SQL Server documents them.

Each test states one documented behaviour (the Microsoft page is in its
docstring) and runs against the double, or unchanged against a real SQL
Server when ``DTAAS_TEST_SQLSERVER`` is set.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import closing
from urllib.parse import quote

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase, SqlServerTarget

PRELOGIN, ENCRYPT_OFF, ENCRYPT_NOT_SUP = 0x12, 0x00, 0x02


@pytest.fixture()
def conn(sqlserver_db: SqlServerDatabase) -> Iterator[pyodbc.Connection]:
    with closing(sqlserver_db.connect()) as connection:
        yield connection


def _prelogin_answer(target: SqlServerTarget, encryption: int) -> int:
    """Send a PRELOGIN offering ``encryption``; return the server's ENCRYPTION option."""
    options = [
        (0x00, struct.pack(">BBHH", 16, 0, 0, 0)),
        (0x01, bytes([encryption])),
        (0x02, b"\x00"),
        (0x03, struct.pack(">I", 0)),
        (0x04, b"\x00"),
    ]
    header_len = 5 * len(options) + 1
    table, data = b"", b""
    for token, value in options:
        table += struct.pack(">BHH", token, header_len + len(data), len(value))
        data += value
    payload = table + b"\xff" + data
    packet = struct.pack(">BBHHBB", PRELOGIN, 0x01, 8 + len(payload), 0, 1, 0) + payload
    with socket.create_connection((target.host, target.port), timeout=10) as sock:
        sock.sendall(packet)
        header = sock.recv(8, socket.MSG_WAITALL)
        body = sock.recv(struct.unpack(">H", header[2:4])[0] - 8, socket.MSG_WAITALL)
    pos = 0
    while body[pos] != 0xFF:
        token, offset, length = struct.unpack_from(">BHH", body, pos)
        if token == 0x01:
            return body[offset]
        pos += 5
    raise AssertionError("the PRELOGIN answer has no ENCRYPTION option")


def test_prelogin_encryption_off_is_answered_off(sqlserver: SqlServerTarget) -> None:
    """A client offering ENCRYPT_OFF gets ENCRYPT_OFF back (login packet encrypted, then plain), not NOT_SUP;
    a client offering NOT_SUP gets NOT_SUP.

    https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/60f56408-0188-4cd5-8b90-25c6f2423868
    """
    assert _prelogin_answer(sqlserver, ENCRYPT_OFF) == ENCRYPT_OFF
    assert _prelogin_answer(sqlserver, ENCRYPT_NOT_SUP) == ENCRYPT_NOT_SUP


def test_connectorx_with_encryption_off_reads_a_table(sqlserver_db: SqlServerDatabase) -> None:
    """connectorx (tiberius) with ``encrypt=false`` offers ENCRYPT_OFF and encrypts only the login.

    https://learn.microsoft.com/en-us/sql/database-engine/configure-windows/configure-sql-server-encryption
    """
    import connectorx  # the dev extra installs it

    with closing(sqlserver_db.connect()) as connection:
        connection.execute(
            "CREATE TABLE dbo.items (id int NOT NULL PRIMARY KEY, name nvarchar(20) NULL, amount decimal(18,2) NULL)"
        )
        connection.execute("INSERT INTO dbo.items VALUES (1, N'äpfel', 1.50), (2, NULL, NULL)")
    target = sqlserver_db.target
    url = (
        f"mssql://{quote(target.user, safe='')}:{quote(target.password, safe='')}@{target.host}:{target.port}/"
        f"{sqlserver_db.name}?encrypt=false&trust_server_certificate=true"
    )
    table = connectorx.read_sql(url, "SELECT id, name, amount FROM dbo.items ORDER BY id", return_type="arrow")
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("name").to_pylist() == ["äpfel", None]
    assert [None if v is None else float(v) for v in table.column("amount").to_pylist()] == [1.5, None]


def _drain(cursor: pyodbc.Cursor) -> None:
    while cursor.nextset():
        pass


def test_conversion_error_aborts_the_batch_and_rolls_back_the_transaction(conn: pyodbc.Connection) -> None:
    """A conversion error (245) ends the whole batch and rolls back the open transaction, even with XACT_ABORT OFF.

    https://learn.microsoft.com/en-us/sql/t-sql/statements/set-xact-abort-transact-sql
    """
    conn.execute("CREATE TABLE dbo.steps (id int NOT NULL PRIMARY KEY)")
    conn.execute("BEGIN TRANSACTION; INSERT INTO dbo.steps VALUES (1)")
    with pytest.raises(pyodbc.Error, match="245"):
        _drain(
            conn.execute("INSERT INTO dbo.steps VALUES (2); SELECT CAST('x' AS int); INSERT INTO dbo.steps VALUES (3)")
        )
    assert conn.execute("SELECT @@TRANCOUNT").fetchval() == 0
    assert conn.execute("SELECT COUNT(*) FROM dbo.steps").fetchval() == 0


def test_statement_errors_end_only_the_statement(conn: pyodbc.Connection) -> None:
    """A duplicate key (2627) or a divide by zero (8134) ends the statement; the batch and transaction go on.

    https://learn.microsoft.com/en-us/sql/t-sql/statements/set-arithabort-transact-sql
    """
    conn.execute("CREATE TABLE dbo.steps (id int NOT NULL PRIMARY KEY)")
    conn.execute("BEGIN TRANSACTION; INSERT INTO dbo.steps VALUES (1)")
    with pytest.raises(pyodbc.Error, match="2627"):
        _drain(conn.execute("INSERT INTO dbo.steps VALUES (1); INSERT INTO dbo.steps VALUES (2)"))
    with pytest.raises(pyodbc.Error, match="8134"):
        conn.execute("SELECT 1 / 0").fetchall()
    assert conn.execute("SELECT @@TRANCOUNT").fetchval() == 1
    conn.execute("COMMIT")
    assert [r[0] for r in conn.execute("SELECT id FROM dbo.steps ORDER BY id")] == [1, 2]


def test_xact_abort_on_rolls_back_on_any_runtime_error(conn: pyodbc.Connection) -> None:
    """With SET XACT_ABORT ON a duplicate key ends the batch and rolls the transaction back.

    https://learn.microsoft.com/en-us/sql/t-sql/statements/set-xact-abort-transact-sql
    """
    conn.execute("CREATE TABLE dbo.steps (id int NOT NULL PRIMARY KEY)")
    conn.execute("SET XACT_ABORT ON")
    conn.execute("BEGIN TRANSACTION; INSERT INTO dbo.steps VALUES (1)")
    with pytest.raises(pyodbc.Error, match="2627"):
        _drain(conn.execute("INSERT INTO dbo.steps VALUES (1); INSERT INTO dbo.steps VALUES (2)"))
    assert conn.execute("SELECT @@TRANCOUNT").fetchval() == 0
    assert conn.execute("SELECT COUNT(*) FROM dbo.steps").fetchval() == 0


def test_driver_follows_a_server_side_rollback(sqlserver_db: SqlServerDatabase) -> None:
    """With autocommit off, a batch-aborting error rolls the transaction back and the server says so
    (ENVCHANGE "rollback transaction"): the driver's next commit starts from a clean state.

    https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/2b3eb7e5-d43d-4d1b-bf4d-76b9e3afc791
    """
    with closing(sqlserver_db.connect()) as setup:
        setup.execute("CREATE TABLE dbo.steps (id int NOT NULL PRIMARY KEY)")
    with closing(sqlserver_db.connect(autocommit=False)) as connection:
        connection.execute("INSERT INTO dbo.steps VALUES (1)")
        with pytest.raises(pyodbc.Error, match="245"):
            connection.execute("SELECT CAST('x' AS int)").fetchall()
        connection.commit()
        connection.execute("INSERT INTO dbo.steps VALUES (5)")
        connection.commit()
    with closing(sqlserver_db.connect()) as check:
        assert [r[0] for r in check.execute("SELECT id FROM dbo.steps ORDER BY id")] == [5]
