"""Capture lag: change rows and LSN mappings appear after a delay or a capture step, as with SQL Server's capture job.

Double-only (the controls are the double's); the same behaviour on a real server is
in test_fidelity_cdc.py, which waits for the real capture job instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_double.cdc_control import MANUAL_CAPTURE
from dtaas_dagster_tests.sqlserver_double.engine_api import SqlServerError
from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess
from dtaas_dagster_tests.sqlserver_fixtures import (
    SqlServerDatabase,
    SqlServerTarget,
    cdc_changes,
    enable_cdc,
    max_lsn,
)

pytestmark = pytest.mark.double_only


@pytest.fixture()
def lagging(double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase) -> Iterator[pyodbc.Connection]:
    """dbo.items tracked as dbo_items in a database whose capture runs only on capture steps."""
    conn = sqlserver_db.connect()
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute("CREATE TABLE dbo.items (id int NOT NULL PRIMARY KEY, qty int NULL)")
    enable_cdc(conn, "dbo", "items")
    double_only.control.set_capture_lag(MANUAL_CAPTURE, sqlserver_db.name)
    yield conn
    conn.close()


def test_manual_capture_hides_commits_until_a_capture_step(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    control, name = double_only.control, sqlserver_db.name
    before = max_lsn(lagging)
    lagging.execute("INSERT INTO dbo.items VALUES (1, 10), (2, 20)")
    lagging.execute("UPDATE dbo.items SET qty = 11 WHERE id = 1")

    status = control.capture_status(name)
    assert lagging.execute("SELECT COUNT(*) FROM dbo.items").fetchone()[0] == 2  # the data is committed
    assert max_lsn(lagging) == before  # ... but sys.fn_cdc_get_max_lsn() lags it
    assert lagging.execute("SELECT COUNT(*) FROM cdc.dbo_items_CT").fetchone()[0] == 0
    assert lagging.execute("SELECT COUNT(*) FROM cdc.lsn_time_mapping").fetchone()[0] == 0
    assert status["pending_transactions"] == 2 and status["newest_commit_lsn"] > before
    assert status["lag_seconds"] == math.inf

    result = control.capture(name)

    assert result["transactions"] == 2 and result["max_lsn"] == status["newest_commit_lsn"]
    assert max_lsn(lagging) == status["newest_commit_lsn"]
    rows = cdc_changes(lagging, "dbo_items", "all update old")
    assert [(r["__$operation"], r["id"], r["qty"]) for r in rows] == [(2, 1, 10), (2, 2, 20), (3, 1, 10), (4, 1, 11)]
    assert control.capture_status(name)["pending_transactions"] == 0


def test_capture_step_up_to_an_lsn_moves_transactions_in_commit_order(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    control, name = double_only.control, sqlserver_db.name
    commits = []
    for i in range(3):
        lagging.execute("INSERT INTO dbo.items VALUES (?, ?)", i, i)
        commits.append(control.capture_status(name)["newest_commit_lsn"])

    assert control.capture(name, up_to_lsn=commits[1])["transactions"] == 2
    assert max_lsn(lagging) == commits[1]
    assert [r["id"] for r in cdc_changes(lagging, "dbo_items")] == [0, 1]
    with pytest.raises(pyodbc.Error, match=r"\(313\)"):  # a window past the max LSN: not captured yet
        cdc_changes(lagging, "dbo_items", to_lsn=commits[2])
    control.capture(name)
    assert [r["id"] for r in cdc_changes(lagging, "dbo_items")] == [0, 1, 2]


def test_a_lag_in_seconds_captures_each_commit_after_the_delay(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    control, name = double_only.control, sqlserver_db.name
    control.set_capture_lag(0.5, name)
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1)")
    committed = control.capture_status(name)["newest_commit_lsn"]
    assert max_lsn(lagging) < committed  # right after the commit, the capture job has not run

    deadline = time.monotonic() + 30
    while max_lsn(lagging) < committed:
        assert time.monotonic() < deadline, "the capture job never captured the commit"
        time.sleep(0.05)
    assert [r["id"] for r in cdc_changes(lagging, "dbo_items")] == [1]
    assert control.capture_status(name)["lag_seconds"] == 0.5


def test_going_back_to_synchronous_capture_first_captures_what_waits(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    control, name = double_only.control, sqlserver_db.name
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1)")
    control.set_capture_lag(None, name)
    lagging.execute("INSERT INTO dbo.items VALUES (2, 2)")
    rows = cdc_changes(lagging, "dbo_items")
    assert [r["id"] for r in rows] == [1, 2] and rows[0]["__$start_lsn"] < rows[1]["__$start_lsn"]
    assert control.capture_status(name) | {"max_lsn": None, "newest_commit_lsn": None} == {
        "lag_seconds": None, "pending_transactions": 0, "max_lsn": None, "newest_commit_lsn": None}  # fmt: skip


def test_a_rolled_back_transaction_never_reaches_the_change_table(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    lagging.autocommit = False
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1)")
    lagging.rollback()
    lagging.autocommit = True
    lagging.execute("INSERT INTO dbo.items VALUES (2, 2)")
    assert double_only.control.capture(sqlserver_db.name)["transactions"] == 1
    assert [r["id"] for r in cdc_changes(lagging, "dbo_items")] == [2]


def test_idle_scans_write_a_mapping_entry_without_change_rows(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    control, name = double_only.control, sqlserver_db.name
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1)")
    control.capture(name)
    captured = max_lsn(lagging)
    lagging.execute("CREATE TABLE dbo.untracked (a int NULL)")
    lagging.execute("INSERT INTO dbo.untracked VALUES (1), (2)")  # log activity, nothing for CDC

    assert control.capture(name)["transactions"] == 0
    idle = lagging.execute(
        "SELECT start_lsn, tran_id FROM cdc.lsn_time_mapping WHERE start_lsn > ?", captured
    ).fetchall()  # fmt: skip
    assert len(idle) == 1 and bytes(idle[0][1]) == bytes(10) and max_lsn(lagging) == bytes(idle[0][0])
    assert cdc_changes(lagging, "dbo_items", from_lsn=bytes(idle[0][0])) == []  # a valid, empty window
    control.capture(name)  # no log activity since: no second idle entry
    assert lagging.execute("SELECT COUNT(*) FROM cdc.lsn_time_mapping").fetchone()[0] == 2


def test_log_scan_sessions_report_what_a_lag_monitor_reads(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1), (2, 2)")
    time.sleep(1.1)  # the capture runs at least a second after the commit
    double_only.control.capture(sqlserver_db.name)
    newest = lagging.execute(
        "SELECT session_id, tran_count, command_count, latency, last_commit_cdc_lsn, last_commit_cdc_time, end_time, "
        "empty_scan_count, scan_phase FROM sys.dm_cdc_log_scan_sessions "
        "WHERE session_id = (SELECT MAX(session_id) FROM sys.dm_cdc_log_scan_sessions)"
    ).fetchone()  # fmt: skip
    lsn = max_lsn(lagging)
    assert newest.tran_count == 1 and newest.command_count == 2 and newest.latency >= 1
    assert newest.last_commit_cdc_lsn == f"{lsn[:4].hex()}:{lsn[4:8].hex()}:{lsn[8:].hex()}"
    assert newest.end_time >= newest.last_commit_cdc_time and newest.empty_scan_count == 0
    assert newest.scan_phase == "Done"
    aggregate = lagging.execute("SELECT scan_phase, tran_count FROM sys.dm_cdc_log_scan_sessions WHERE session_id = 0")
    assert tuple(aggregate.fetchone()) == ("Aggregate", 1)


def test_a_failing_capture_is_reported_in_dm_cdc_errors_and_retried(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    control, name = double_only.control, sqlserver_db.name
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1)")
    control.fail_capture(name, times=1)
    with pytest.raises(SqlServerError) as failed:
        control.capture(name)
    assert failed.value.number == 22859
    errors = lagging.execute("SELECT session_id, error_number, error_severity, error_message FROM sys.dm_cdc_errors")
    ((session_id, number, severity, message),) = errors.fetchall()
    assert (number, severity) == (22859, 16) and "Log Scan process failed" in message
    failed_sessions = lagging.execute(
        "SELECT failed_sessions_count FROM sys.dm_cdc_log_scan_sessions WHERE session_id = ?", session_id
    ).fetchone()[0]  # fmt: skip
    assert failed_sessions == 1
    assert control.capture_status(name)["pending_transactions"] == 1  # nothing lost: the next scan takes it
    assert control.capture(name)["transactions"] == 1
    assert [r["id"] for r in cdc_changes(lagging, "dbo_items")] == [1]


def test_snapshot_reader_sees_the_captured_state_of_its_snapshot(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1)")
    double_only.control.capture(sqlserver_db.name)
    first = max_lsn(lagging)
    reader = sqlserver_db.connect(autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
    assert bytes(reader.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0]) == first
    lagging.execute("INSERT INTO dbo.items VALUES (2, 2)")
    double_only.control.capture(sqlserver_db.name)
    assert bytes(reader.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0]) == first
    reader.commit()
    assert bytes(reader.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0]) > first
    reader.close()


def test_capture_lag_is_refused_when_it_makes_no_sense(
    double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    from dtaas_dagster_tests.sqlserver_double.process import DoubleControlError

    with pytest.raises(DoubleControlError, match="capture lag -1"):
        double_only.control.set_capture_lag(-1, sqlserver_db.name)
    with pytest.raises(SqlServerError) as not_enabled:
        double_only.control.capture(sqlserver_db.name)
    assert not_enabled.value.number == 22901


def test_a_double_started_with_a_capture_lag_lags(double_only: SqlServerTarget) -> None:
    with DoubleProcess(port=0, capture_lag=MANUAL_CAPTURE) as double:
        double.create_database("lagdb", cdc=True)
        conn = SqlServerTarget(double.host, double.port, double.user, double.password, double).connect("lagdb")
        conn.execute("CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY)")
        enable_cdc(conn, "dbo", "t")
        conn.execute("INSERT INTO dbo.t VALUES (1)")
        assert max_lsn(conn) == bytes(10) and double.capture_status("lagdb")["pending_transactions"] == 1
        double.capture("lagdb")
        assert [r["id"] for r in cdc_changes(conn, "dbo_t")] == [1]
        conn.close()


def test_consecutive_empty_scans_share_one_session_row(
    lagging: pyodbc.Connection, double_only: SqlServerTarget, sqlserver_db: SqlServerDatabase
) -> None:
    lagging.execute("INSERT INTO dbo.items VALUES (1, 1)")
    double_only.control.capture(sqlserver_db.name)
    for _ in range(3):
        double_only.control.capture(sqlserver_db.name)  # nothing new in the log
    sessions = lagging.execute(
        "SELECT session_id, tran_count, empty_scan_count, latency FROM sys.dm_cdc_log_scan_sessions "
        "WHERE session_id > 0 ORDER BY session_id"
    ).fetchall()  # fmt: skip
    assert [tuple(s)[1:] for s in sessions[-2:]] == [(1, 0, sessions[-2].latency), (0, 3, 0)]
    aggregate = lagging.execute("SELECT empty_scan_count FROM sys.dm_cdc_log_scan_sessions WHERE session_id = 0")
    assert aggregate.fetchone()[0] == 3


def test_capture_lag_option_takes_seconds_or_manual() -> None:
    from dtaas_dagster_tests.sqlserver_double.__main__ import parse_args

    assert parse_args(["--capture-lag", "2.5"]).capture_lag == 2.5
    assert parse_args(["--capture-lag", "manual"]).capture_lag == math.inf
    assert parse_args([]).capture_lag is None
    for wrong in ("-1", "soon", "nan"):
        with pytest.raises(SystemExit):
            parse_args(["--capture-lag", wrong])
