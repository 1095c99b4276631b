"""Fault injection (server.faults) as clients see it."""

from __future__ import annotations

import pyodbc
import pytest

from dtaas_dagster_tests.double_tests.conftest_protocol import SMALL_SQL, conn_str, server, stub_engine
from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

__all__ = ["server", "stub_engine"]
pytestmark = pytest.mark.double_only


def test_drop_after_rows_cuts_the_connection(server: DoubleServer) -> None:
    server.faults.drop_after_rows(1000, matching=r"numbers")
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        assert len(conn.cursor().execute(SMALL_SQL).fetchall()) == 3  # not matching: untouched
        cursor = conn.cursor()
        with pytest.raises(pyodbc.Error) as info:
            cursor.execute("SELECT * FROM numbers")
            cursor.fetchall()
        assert "08S01" in str(info.value) or "Communication link failure" in str(info.value)
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:  # fault was used up
        assert len(conn.cursor().execute("SELECT * FROM numbers").fetchall()) == 200_000


def test_fail_statement_n_times_with_deadlock_1205(server: DoubleServer) -> None:
    server.faults.fail_statement(r"from small", times=2)
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        for _ in range(2):
            with pytest.raises(pyodbc.Error) as info:
                conn.cursor().execute(SMALL_SQL)
            assert "1205" in str(info.value) and "deadlock victim" in str(info.value)
        assert len(conn.cursor().execute(SMALL_SQL).fetchall()) == 3


def test_fail_statement_with_chosen_error(server: DoubleServer) -> None:
    server.faults.fail_statement(r"small", number=40613, message="Database 'x' is not currently available.")
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        with pytest.raises(pyodbc.Error, match="40613"):
            conn.cursor().execute(SMALL_SQL)


def test_refuse_logins_for_n_attempts(server: DoubleServer) -> None:
    server.faults.refuse_logins(attempts=2)
    for _ in range(2):
        with pytest.raises(pyodbc.Error, match="18456"):
            pyodbc.connect(conn_str(server), timeout=10)
    pyodbc.connect(conn_str(server), timeout=10).close()


def test_refuse_logins_by_closing_the_socket(server: DoubleServer) -> None:
    server.faults.refuse_logins(attempts=1, close_socket=True)
    with pytest.raises(pyodbc.Error) as info:
        pyodbc.connect(conn_str(server), timeout=10)
    assert "18456" not in str(info.value)
    pyodbc.connect(conn_str(server), timeout=10).close()


def test_latency_makes_a_query_timeout_fire(server: DoubleServer) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        conn.timeout = 1
        server.faults.add_latency(3.0)
        with pytest.raises(pyodbc.Error) as info:
            conn.cursor().execute(SMALL_SQL).fetchall()
        assert "HYT00" in str(info.value) or "timeout" in str(info.value).lower()
        server.faults.clear()
        assert len(conn.cursor().execute(SMALL_SQL).fetchall()) == 3


def test_clear_disarms_everything(server: DoubleServer) -> None:
    server.faults.fail_statement(r".*", times=5)
    server.faults.refuse_logins(attempts=5)
    server.faults.drop_after_rows(1)
    server.faults.clear()
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        assert len(conn.cursor().execute(SMALL_SQL).fetchall()) == 3
