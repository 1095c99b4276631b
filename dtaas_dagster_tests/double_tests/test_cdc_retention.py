"""Retention: purged change rows, the moved min LSN, and error 313 for windows outside the timeline."""

from __future__ import annotations

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_fixtures import (
    SqlServerDatabase,
    SqlServerTarget,
    cdc_changes,
    enable_cdc,
    wait_for_lsn_after,
)

ERROR_313 = r"An insufficient number of arguments were supplied for the procedure or function cdc\.fn_cdc_get_all_changes_ \.\.\."


@pytest.fixture()
def conn(sqlserver_db: SqlServerDatabase) -> pyodbc.Connection:
    conn = sqlserver_db.connect()
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute("CREATE TABLE dbo.events (id int NOT NULL PRIMARY KEY, v int NULL)")
    enable_cdc(conn, "dbo", "events")
    return conn


def three_commits(conn: pyodbc.Connection) -> list[bytes]:
    lsns: list[bytes] = []
    for i in range(3):
        conn.execute("INSERT INTO dbo.events VALUES (?, ?)", i, i * 10)
        lsns.append(wait_for_lsn_after(conn, lsns[-1] if lsns else None))
    return lsns


@pytest.mark.double_only
def test_purge_hook_moves_min_lsn_and_old_windows_raise_313(
    double_only: SqlServerTarget, conn: pyodbc.Connection, sqlserver_db: SqlServerDatabase
) -> None:
    old_min = bytes(conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_events')").fetchone()[0])
    lsns = three_commits(conn)

    deleted = double_only.control.purge_changes(sqlserver_db.name, "dbo_events", lsns[1])

    assert deleted == 2
    new_min = bytes(conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_events')").fetchone()[0])
    assert lsns[1] < new_min <= lsns[2]
    assert [r["id"] for r in cdc_changes(conn, "dbo_events")] == [2]
    with pytest.raises(pyodbc.Error, match=ERROR_313) as caught:
        cdc_changes(conn, "dbo_events", from_lsn=old_min)
    assert "(313)" in str(caught.value)


def test_cleanup_change_table_procedure_sets_the_low_water_mark(conn: pyodbc.Connection) -> None:
    lsns = three_commits(conn)
    conn.execute(
        "EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'dbo_events', @low_water_mark = ?, @threshold = 5000",
        lsns[1],
    )
    assert bytes(conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_events')").fetchone()[0]) == lsns[1]
    assert [r["id"] for r in cdc_changes(conn, "dbo_events")] == [1, 2]


def test_windows_outside_the_timeline_raise_313(conn: pyodbc.Connection) -> None:
    lsns = three_commits(conn)
    beyond = (int.from_bytes(lsns[-1], "big") + 1).to_bytes(10, "big")
    with pytest.raises(pyodbc.Error, match=ERROR_313):
        cdc_changes(conn, "dbo_events", to_lsn=beyond)
    with pytest.raises(pyodbc.Error, match=ERROR_313):
        cdc_changes(conn, "dbo_events", from_lsn=lsns[2], to_lsn=lsns[1])
    with pytest.raises(pyodbc.Error, match=ERROR_313):
        cdc_changes(conn, "dbo_events", row_filter="everything")
    assert len(cdc_changes(conn, "dbo_events", from_lsn=lsns[1], to_lsn=lsns[1])) == 1
