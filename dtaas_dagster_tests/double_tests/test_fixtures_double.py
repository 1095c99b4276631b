"""The shared fixtures and the process runner: connections, fresh databases, seeding, faults, shutdown."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

import pyarrow as pa
import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_double.process import DoubleControlError, DoubleProcess
from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase, SqlServerTarget, parse_odbc_string


@pytest.mark.parametrize("driver", ["msodbc18", "freetds"])
def test_sqlserver_fixture_connects_with_each_driver(sqlserver: SqlServerTarget, driver: str) -> None:
    with sqlserver.connect(driver=driver) as conn:
        assert conn.execute("SELECT DB_NAME()").fetchone()[0] == "master"
    keys = parse_odbc_string(sqlserver.connection_string("master", driver))
    assert keys["UID"] == sqlserver.user and keys["PWD"] == sqlserver.password


def test_sqlserver_db_is_fresh_and_allows_snapshot_isolation(sqlserver_db: SqlServerDatabase) -> None:
    with sqlserver_db.connect() as conn:
        assert conn.execute("SELECT DB_NAME()").fetchone()[0] == sqlserver_db.name
        state = conn.execute(
            "SELECT snapshot_isolation_state FROM sys.databases WHERE name = ?", sqlserver_db.name
        ).fetchone()[0]
        assert state == 1
        assert conn.execute("SELECT COUNT(*) FROM sys.tables").fetchone()[0] == 0


def test_seed_table_loads_typed_rows(sqlserver_db: SqlServerDatabase) -> None:
    data = pa.table({
        "id": pa.array([1, 2, 3], pa.int32()),
        "name": ["Zoë", "王芳", None],
        "price": pa.array([Decimal("1.50"), Decimal("20.00"), Decimal("0.01")], pa.decimal128(18, 2)),
        "day": pa.array([dt.date(2024, 1, 1), dt.date(2024, 2, 29), None], pa.date32()),
    })  # fmt: skip
    rows = sqlserver_db.seed_table("dbo", "seeded", data, columns={"name": "nvarchar(20)"}, primary_key=["id"])
    assert rows == 3
    with sqlserver_db.connect() as conn:
        got = conn.execute("SELECT id, name, price, day FROM dbo.seeded ORDER BY id").fetchall()
        types = conn.execute(
            "SELECT c.name, t.name FROM sys.columns c JOIN sys.types t ON c.user_type_id = t.user_type_id "
            "WHERE c.object_id = OBJECT_ID('dbo.seeded') ORDER BY c.column_id"
        ).fetchall()
    assert [tuple(r) for r in got] == [
        (1, "Zoë", Decimal("1.50"), dt.date(2024, 1, 1)),
        (2, "王芳", Decimal("20.00"), dt.date(2024, 2, 29)),
        (3, None, Decimal("0.01"), None),
    ]
    assert [tuple(r) for r in types] == [("id", "int"), ("name", "nvarchar"), ("price", "decimal"), ("day", "date")]


@pytest.mark.double_only
def test_faults_are_forwarded_to_the_double(double_only: SqlServerTarget) -> None:
    control = double_only.control
    control.fail_statement(r"SELECT\s+42", times=1, number=1205)
    try:
        with double_only.connect() as conn:
            with pytest.raises(pyodbc.Error, match="1205"):
                conn.execute("SELECT 42").fetchall()
            assert conn.execute("SELECT 42").fetchone()[0] == 42  # armed once only
        control.refuse_logins(attempts=1)
        with pytest.raises(pyodbc.Error, match="18456"):
            double_only.connect()
    finally:
        control.clear_faults()
    with double_only.connect() as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1


@pytest.mark.double_only
def test_control_errors_name_the_problem(double_only: SqlServerTarget) -> None:
    with pytest.raises(DoubleControlError, match="not a plain identifier"):
        double_only.control.create_database("bad name; DROP")
    with pytest.raises(DoubleControlError, match="no method '_lock'"):
        double_only.control.fault("_lock")


@pytest.mark.double_only
def test_control_channel_rejects_a_wrong_key(double_only: SqlServerTarget) -> None:
    assert double_only.double is not None
    address = ("127.0.0.1", double_only.double.control._address[1])
    with pytest.raises(AuthenticationError):
        Client(address, authkey=b"not the key")
    assert double_only.control.call("ping") == "pong"  # the service survives a bad client


@pytest.mark.double_only
def test_double_process_stops_on_sigterm_with_exit_code_zero() -> None:
    double = DoubleProcess(port=0, password="Other-Passw0rd!")
    with double:
        conn = pyodbc.connect(
            f"DRIVER={{FreeTDS}};SERVER=127.0.0.1;PORT={double.port};UID=sa;PWD=Other-Passw0rd!;TDS_Version=7.4",
            autocommit=True,
        )
        assert conn.execute("SELECT 1").fetchone()[0] == 1
        conn.close()
    assert double.returncode == 0  # stop() sends SIGTERM; a kill after the timeout would give -9
