"""Retention: cleanup as documented, the cleanup job, the purge hook, and error 313 outside the timeline."""

from __future__ import annotations

import time

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
    """Three transactions with distinct commit times (cdc.lsn_time_mapping keeps datetime's 1/300 s)."""
    lsns: list[bytes] = []
    for i in range(3):
        if lsns:
            time.sleep(0.02)  # cleanup picks the smallest LSN of a shared commit time
        conn.execute("INSERT INTO dbo.events VALUES (?, ?)", i, i * 10)
        wait_for_lsn_after(conn, lsns[-1] if lsns else None)
        # the commit LSN from the change row: on a real server the max LSN may be a later idle entry
        lsns.append(cdc_changes(conn, "dbo_events")[-1]["__$start_lsn"])
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
    assert new_min == lsns[2]  # a commit LSN, as after SQL Server's cleanup
    assert bytes(conn.execute("SELECT MIN(start_lsn) FROM cdc.lsn_time_mapping").fetchone()[0]) == lsns[2]
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


@pytest.mark.double_only
def test_purge_hook_cannot_remove_the_newest_transaction(
    double_only: SqlServerTarget, conn: pyodbc.Connection, sqlserver_db: SqlServerDatabase
) -> None:
    from dtaas_dagster_tests.sqlserver_double.engine_api import SqlServerError

    lsns = three_commits(conn)
    with pytest.raises(SqlServerError, match="keeps the newest transaction") as caught:
        double_only.control.purge_changes(sqlserver_db.name, None, lsns[2])
    assert caught.value.number == 22957
    assert len(cdc_changes(conn, "dbo_events")) == 3


def cleanup(conn: pyodbc.Connection, low_water_mark: bytes | None, threshold: int = 5000) -> None:
    conn.execute(
        "EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'dbo_events', @low_water_mark = ?, @threshold = ?",
        low_water_mark, threshold,
    )  # fmt: skip


def min_lsn(conn: pyodbc.Connection) -> bytes:
    return bytes(conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_events')").fetchone()[0])


def test_cleanup_with_a_null_low_water_mark_keeps_the_current_mark(conn: pyodbc.Connection) -> None:
    start = min_lsn(conn)
    three_commits(conn)
    cleanup(conn, None)
    assert min_lsn(conn) == start
    assert [r["id"] for r in cdc_changes(conn, "dbo_events")] == [0, 1, 2]


def test_cleanup_needs_an_lsn_of_cdc_lsn_time_mapping(conn: pyodbc.Connection) -> None:
    lsns = three_commits(conn)
    between = (int.from_bytes(lsns[1], "big") + 1).to_bytes(10, "big")
    with pytest.raises(pyodbc.Error, match=r"\(22964\)"):
        cleanup(conn, between)
    assert len(cdc_changes(conn, "dbo_events")) == 3


def test_cleanup_below_the_current_mark_is_refused_and_changes_nothing(conn: pyodbc.Connection) -> None:
    lsns = three_commits(conn)
    cleanup(conn, lsns[1])
    with pytest.raises(pyodbc.Error, match=r"\(22957\)"):
        cleanup(conn, lsns[0])
    assert min_lsn(conn) == lsns[1]
    assert [r["id"] for r in cdc_changes(conn, "dbo_events")] == [1, 2]


def test_cleanup_threshold_bounds_each_delete_but_removes_every_row_below_the_mark(conn: pyodbc.Connection) -> None:
    lsns = three_commits(conn)
    with pytest.raises(pyodbc.Error, match=r"\(22850\)"):
        cleanup(conn, lsns[2], threshold=0)
    assert min_lsn(conn) < lsns[0]  # the refused call moved nothing
    cleanup(conn, lsns[2], threshold=1)
    assert [r["id"] for r in cdc_changes(conn, "dbo_events")] == [2]
    assert conn.execute("SELECT COUNT(*) FROM cdc.dbo_events_CT").fetchone()[0] == 1


@pytest.mark.double_only
def test_cleanup_job_applies_retention_to_change_rows_and_the_lsn_time_mapping(
    double_only: SqlServerTarget, conn: pyodbc.Connection, sqlserver_db: SqlServerDatabase
) -> None:
    old = three_commits(conn)
    time.sleep(1.5)
    conn.execute("INSERT INTO dbo.events VALUES (3, 30)")
    newest = wait_for_lsn_after(conn, old[-1])

    result = double_only.control.run_cleanup(sqlserver_db.name, retention_minutes=0.01)  # 0.6 s

    # the newest entry at least 0.6 s older than the newest one is old[2]: it stays, older ones go
    assert result["low_water_mark"] == old[2] and result["deleted_rows"] == 2 and result["deleted_mappings"] == 2
    assert min_lsn(conn) == old[2]
    mapping = [bytes(r[0]) for r in conn.execute("SELECT start_lsn FROM cdc.lsn_time_mapping ORDER BY start_lsn")]
    assert mapping == [old[2], newest]
    assert [r["id"] for r in cdc_changes(conn, "dbo_events")] == [2, 3]


@pytest.mark.double_only
def test_cleanup_job_runs_on_a_timer(
    double_only: SqlServerTarget, conn: pyodbc.Connection, sqlserver_db: SqlServerDatabase
) -> None:
    old = three_commits(conn)
    time.sleep(1.5)
    conn.execute("INSERT INTO dbo.events VALUES (3, 30)")
    double_only.control.set_cleanup_job(sqlserver_db.name, retention_minutes=0.01, interval_seconds=0.1)
    try:
        deadline = time.monotonic() + 30
        while min_lsn(conn) != old[2]:
            assert time.monotonic() < deadline, "the cleanup job never ran"
            time.sleep(0.05)
    finally:
        double_only.control.set_cleanup_job(sqlserver_db.name, interval_seconds=None)
    assert [r["id"] for r in cdc_changes(conn, "dbo_events")] == [2, 3]


def test_cleanup_job_settings_through_sp_cdc_change_job(conn: pyodbc.Connection) -> None:
    def cleanup_job() -> tuple:
        jobs = {row.job_type: row for row in conn.execute("EXEC sys.sp_cdc_help_jobs").fetchall()}
        return jobs["cleanup"].retention, jobs["cleanup"].threshold

    conn.execute("EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = 60, @threshold = 100")
    assert cleanup_job() == (60, 100)
    with pytest.raises(pyodbc.Error, match=r"\(22994\)"):
        conn.execute("EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = 0")
    assert cleanup_job() == (60, 100)
