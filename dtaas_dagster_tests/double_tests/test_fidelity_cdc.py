"""CDC fidelity: what SQL Server documents, checked on the double and, unchanged, on a real SQL Server.

Each test states one documented behaviour and the Microsoft Learn page it comes
from (relative to :data:`DOCS`). It runs through the ``sqlserver``/``sqlserver_db``
fixtures with pyodbc and ODBC Driver 18, against the double by default and
against the server in ``DTAAS_TEST_SQLSERVER`` when that is set (SQL Server Agent
must run the CDC capture job there).

Capture is asynchronous on SQL Server. So that the double is tested the same
way, every database here captures with a manual lag on the double: changes
reach the change tables only at :meth:`CaptureJob.settle`, which on the double
is a capture step and on a real server waits for the capture job. Checks that
need the double's control over timing are marked where they are made.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_double.cdc_control import MANUAL_CAPTURE
from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase, cdc_changes, enable_cdc, max_lsn

DOCS = "https://learn.microsoft.com/sql/relational-databases/"
MESSAGES = DOCS + "errors-events/database-engine-events-and-errors-22000-to-22999"


class CaptureJob:
    """The capture job of the test database: a capture step on the double, a wait on a real server."""

    def __init__(self, db: SqlServerDatabase) -> None:
        self.db = db

    def settle(self, conn: pyodbc.Connection, capture_instance: str, change_rows: int, timeout: float = 60) -> bytes:
        """Return the max LSN once ``capture_instance`` shows ``change_rows`` rows ('all update old')."""
        if self.db.target.is_double:
            self.db.target.control.capture(self.db.name)
        deadline = time.monotonic() + timeout
        while len(cdc_changes(conn, capture_instance, "all update old")) < change_rows:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{capture_instance} never showed {change_rows} change rows; is the capture job running?"
                )
            time.sleep(0.5)
        lsn = max_lsn(conn)
        assert lsn is not None
        return lsn


@pytest.fixture()
def job(sqlserver_db: SqlServerDatabase) -> CaptureJob:
    with closing(sqlserver_db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
    if sqlserver_db.target.is_double:
        sqlserver_db.target.control.set_capture_lag(MANUAL_CAPTURE, sqlserver_db.name)
    return CaptureJob(sqlserver_db)


@pytest.fixture()
def conn(job: CaptureJob, sqlserver_db: SqlServerDatabase) -> Iterator[pyodbc.Connection]:
    """dbo.items (id PK, name, qty) tracked as dbo_items in a CDC-enabled database."""
    conn = sqlserver_db.connect()
    conn.execute("CREATE TABLE dbo.items (id int NOT NULL PRIMARY KEY, name nvarchar(50) NULL, qty int NULL)")
    enable_cdc(conn, "dbo", "items")
    yield conn
    conn.close()


def test_changes_are_captured_after_commit_and_max_lsn_is_the_newest_mapping_entry(
    conn: pyodbc.Connection, job: CaptureJob, sqlserver_db: SqlServerDatabase
) -> None:
    """track-changes/about-change-data-capture-sql-server: "there is a built in latency between the time that a
    change is committed to a source table and the time that the change appears within its associated change
    table"; "The maximum LSN value that is found in cdc.lsn_time_mapping represents the high water mark"."""
    before = max_lsn(conn)
    conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    if sqlserver_db.target.is_double:  # only the double can hold the capture job back
        assert max_lsn(conn) == before and conn.execute("SELECT COUNT(*) FROM cdc.dbo_items_CT").fetchone()[0] == 0
    high = job.settle(conn, "dbo_items", 1)
    assert high > before
    assert bytes(conn.execute("SELECT MAX(start_lsn) FROM cdc.lsn_time_mapping").fetchone()[0]) == high
    starts = conn.execute("SELECT DISTINCT __$start_lsn FROM cdc.dbo_items_CT").fetchall()
    mapped = conn.execute("SELECT COUNT(*) FROM cdc.lsn_time_mapping WHERE start_lsn = ?", starts[0][0]).fetchone()[0]
    assert len(starts) == 1 and mapped == 1


def test_a_window_past_the_max_lsn_is_error_313(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """system-functions/cdc-fn-cdc-get-all-changes-capture-instance-transact-sql: an LSN range outside the
    capture instance's validity interval is error 313 ("An insufficient number of arguments ...")."""
    conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    high = job.settle(conn, "dbo_items", 1)
    beyond = (int.from_bytes(high, "big") + 1).to_bytes(10, "big")
    with pytest.raises(pyodbc.Error, match=r"\(313\)"):
        cdc_changes(conn, "dbo_items", to_lsn=beyond)


def test_updates_log_before_and_after_images_and_masks_name_the_changed_columns(
    conn: pyodbc.Connection, job: CaptureJob
) -> None:
    """system-tables/cdc-capture-instance-ct-transact-sql: one row per insert/delete, two per update
    (3 = old values, 4 = new values); "For insert and delete operations, all the bits in the update mask are
    set. For update operations, the update mask in both the update old and update new rows will be modified
    to reflect the columns that changed"."""
    conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    conn.execute("UPDATE dbo.items SET qty = 2 WHERE id = 1")
    conn.execute("DELETE FROM dbo.items WHERE id = 1")
    job.settle(conn, "dbo_items", 4)
    rows = cdc_changes(conn, "dbo_items", "all update old")
    assert [(r["__$operation"], r["qty"]) for r in rows] == [(2, 1), (3, 1), (4, 2), (1, 2)]
    assert [r["__$update_mask"] for r in rows] == [b"\x07", b"\x04", b"\x04", b"\x07"]
    assert rows[1]["__$seqval"] == rows[2]["__$seqval"]


@pytest.mark.parametrize("statement", ["UPDATE dbo.items SET id = id + 1", "UPDATE dbo.items SET id = 4 - id"])
def test_key_updates_applied_in_order_or_as_net_changes_reproduce_the_table(
    conn: pyodbc.Connection, job: CaptureJob, statement: str
) -> None:
    """system-tables/cdc-capture-instance-ct-transact-sql: "__$start_lsn ... and __$seqval ... can be used to
    make sure that the commit order of the source changes is preserved"; net changes return each row's final
    state (system-functions/cdc-fn-cdc-get-net-changes-capture-instance-transact-sql)."""
    start = {1: ("a", 10), 2: ("b", 20), 3: ("c", 30)}
    conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 10), (2, N'b', 20), (3, N'c', 30)")
    first = job.settle(conn, "dbo_items", 3)
    window = conn.execute("SELECT sys.fn_cdc_increment_lsn(?)", first).fetchone()[0]
    conn.execute(statement)
    expected = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, name, qty FROM dbo.items").fetchall()}
    deadline = time.monotonic() + 60
    while True:  # SQL Server may collapse a delete and an insert of one key into an update: count rows loosely
        job.settle(conn, "dbo_items", 4)
        changes = cdc_changes(conn, "dbo_items", "all", from_lsn=window)
        if _replay(changes, start) == expected:
            break
        assert time.monotonic() < deadline, f"changes {changes} never replayed to {expected}"
        time.sleep(0.5)
    net = cdc_changes(conn, "dbo_items", "all", from_lsn=window, kind="net")
    assert _replay(net, start) == expected


def _replay(rows: list[dict], table: dict[int, tuple]) -> dict[int, tuple]:
    table = dict(table)
    for row in rows:
        if row["__$operation"] == 1:
            table.pop(row["id"], None)
        elif row["__$operation"] in (2, 4):
            table[row["id"]] = (row["name"], row["qty"])
    return table


def test_unchanged_large_values_are_null_in_update_before_rows(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """system-tables/cdc-capture-instance-ct-transact-sql (Large Object Data Types): "Columns of data type
    varbinary(max), varchar(max), or nvarchar(max) are assigned a NULL value when __$operation = 3 unless the
    column changed during the update. When __$operation = 1, these columns are assigned their value at the
    time of the delete"."""
    conn.execute("CREATE TABLE dbo.docs (id int NOT NULL PRIMARY KEY, body nvarchar(max) NULL, n int NULL)")
    enable_cdc(conn, "dbo", "docs")
    conn.execute("INSERT INTO dbo.docs VALUES (1, N'text', 1)")
    conn.execute("UPDATE dbo.docs SET n = 2 WHERE id = 1")
    conn.execute("DELETE FROM dbo.docs WHERE id = 1")
    job.settle(conn, "dbo_docs", 4)
    rows = cdc_changes(conn, "dbo_docs", "all update old")
    assert [(r["__$operation"], r["body"]) for r in rows] == [(2, "text"), (3, None), (4, "text"), (1, "text")]


def test_a_captured_columns_type_change_reaches_the_change_table(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """track-changes/about-change-data-capture-sql-server (Handling Changes to Source Tables): "if an existing
    column undergoes a change in its data type, the change is propagated to the change table to ensure that
    the capture mechanism does not introduce data loss"; "If a tracked column is dropped, null values will be
    supplied for the column in the subsequent change entries". system-tables/cdc-ddl-history-transact-sql:
    required_column_update says the data type of a captured column was modified."""
    conn.execute("ALTER TABLE dbo.items ALTER COLUMN qty bigint NULL")
    conn.execute("ALTER TABLE dbo.items DROP COLUMN name")
    conn.execute("INSERT INTO dbo.items (id, qty) VALUES (1, 5000000000)")
    job.settle(conn, "dbo_items", 1)
    assert [(r["id"], r["name"], r["qty"]) for r in cdc_changes(conn, "dbo_items")] == [(1, None, 5000000000)]
    updates = [bool(r[0]) for r in conn.execute("SELECT required_column_update FROM cdc.ddl_history ORDER BY ddl_lsn")]
    assert updates == [True, False]


def _three_commits(conn: pyodbc.Connection, job: CaptureJob) -> list[bytes]:
    """The commit LSNs of three inserts (from their change rows: the max LSN may be a later idle entry)."""
    for i in range(3):
        time.sleep(0.02)  # distinct commit times: cleanup groups entries that share one
        conn.execute("INSERT INTO dbo.items VALUES (?, N'x', ?)", i, i)
        job.settle(conn, "dbo_items", i + 1)
    return [r["__$start_lsn"] for r in cdc_changes(conn, "dbo_items")]


def _cleanup(conn: pyodbc.Connection, low_water_mark: bytes | None, threshold: int = 5000) -> None:
    conn.execute("EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'dbo_items', @low_water_mark = ?, "
                 "@threshold = ?", low_water_mark, threshold)  # fmt: skip


def _min_lsn(conn: pyodbc.Connection) -> bytes:
    return bytes(conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_items')").fetchone()[0])


def test_cleanup_change_table_follows_its_documented_rules(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """system-stored-procedures/sys-sp-cdc-cleanup-change-table-transact-sql: with @low_water_mark NULL "the
    current low watermark ... is used to define the upper bound for the cleanup operation"; a non-NULL mark
    "must appear as the start_lsn value of a current entry in the cdc.lsn_time_mapping table" (22964, message
    catalog); "if the current low watermark is greater than the low watermark value specified ... Error 22957
    is thrown"; rows below the mark are deleted, "The delete threshold is used to limit the number of rows
    deleted in a single transaction"."""
    start = _min_lsn(conn)
    lsns = _three_commits(conn, job)
    _cleanup(conn, None)
    assert _min_lsn(conn) == start and len(cdc_changes(conn, "dbo_items")) == 3
    between = (int.from_bytes(lsns[1], "big") + 1).to_bytes(10, "big")
    with pytest.raises(pyodbc.Error, match=r"\(22964\)"):
        _cleanup(conn, between)
    _cleanup(conn, lsns[2], threshold=1)
    assert _min_lsn(conn) == lsns[2] and [r["id"] for r in cdc_changes(conn, "dbo_items")] == [2]
    with pytest.raises(pyodbc.Error, match=r"\(22957\)"):
        _cleanup(conn, lsns[1])
    assert _min_lsn(conn) == lsns[2]


def test_enable_table_refuses_an_empty_role_name_and_long_capture_instance_names(
    conn: pyodbc.Connection, job: CaptureJob
) -> None:
    """system-stored-procedures/sys-sp-cdc-enable-table-transact-sql: "capture_instance cannot exceed 100
    characters" (22927) and the role name, if not NULL, names a role (22907 "Parameter @role_name cannot be
    empty", message catalog)."""
    enable = (
        "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'items', @role_name = ?, "
        "@capture_instance = ?"
    )
    with pytest.raises(pyodbc.Error, match=r"\(22907\)"):
        conn.execute(enable, "", "items_role")
    with pytest.raises(pyodbc.Error, match=r"\(22927\)"):
        conn.execute(enable, None, "c" * 101)
    assert [r[0] for r in conn.execute("SELECT capture_instance FROM cdc.change_tables")] == ["dbo_items"]


def test_disable_table_names_an_unknown_capture_instance_with_22960(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """Message catalog (22000-22999): 22960 "Change data capture instance '%s' has not been enabled for the
    source table '%s.%s'"."""
    with pytest.raises(pyodbc.Error, match=r"\(22960\)"):
        conn.execute("EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'items', "
                     "@capture_instance = N'nope'")  # fmt: skip


def test_partition_switch_is_1_for_a_table_that_is_not_partitioned(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """system-tables/cdc-change-tables-transact-sql: partition_switch "Non-partitioned tables always return 1";
    sys-sp-cdc-enable-table: "If the switch is explicitly set to 0 for a nonpartitioned table, warning 22857 is
    issued to indicate that the switch setting has been ignored"."""
    conn.execute("CREATE TABLE dbo.flat (id int NOT NULL PRIMARY KEY)")
    conn.execute("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'flat', @role_name = NULL, "
                 "@allow_partition_switch = 0")  # fmt: skip
    flags = {r[0]: r[1] for r in conn.execute("SELECT capture_instance, partition_switch FROM cdc.change_tables")}
    assert flags == {"dbo_items": True, "dbo_flat": True}


def test_help_change_data_capture_reports_each_capture_instance(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """system-stored-procedures/sys-sp-cdc-help-change-data-capture-transact-sql: the result set's columns,
    one row per capture instance of the named table."""
    cursor = conn.execute("EXEC sys.sp_cdc_help_change_data_capture @source_schema = N'dbo', @source_name = N'items'")
    assert [d[0] for d in cursor.description] == [
        "source_schema", "source_table", "capture_instance", "object_id", "source_object_id", "start_lsn", "end_lsn",
        "supports_net_changes", "has_drop_pending", "role_name", "index_name", "filegroup_name", "create_date",
        "index_column_list", "captured_column_list",
    ]  # fmt: skip
    (row,) = cursor.fetchall()
    assert (row.source_schema, row.source_table, row.capture_instance, row.supports_net_changes) == (
        "dbo", "items", "dbo_items", True)  # fmt: skip
    assert bytes(row.start_lsn) == _min_lsn(conn)


def test_the_monitoring_views_have_the_documented_columns(conn: pyodbc.Connection, job: CaptureJob) -> None:
    """system-dynamic-management-views/change-data-capture-sys-dm-cdc-log-scan-sessions and
    change-data-capture-sys-dm-cdc-errors: their columns; "When session_id = 0, this value is always
    'Aggregate'" (scan_phase)."""
    conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    job.settle(conn, "dbo_items", 1)
    sessions = conn.execute("SELECT * FROM sys.dm_cdc_log_scan_sessions")
    assert [d[0] for d in sessions.description] == [
        "session_id", "start_time", "end_time", "duration", "scan_phase", "error_count", "start_lsn", "current_lsn",
        "end_lsn", "tran_count", "last_commit_lsn", "last_commit_time", "log_record_count", "schema_change_count",
        "command_count", "first_begin_cdc_lsn", "last_commit_cdc_lsn", "last_commit_cdc_time", "latency",
        "empty_scan_count", "failed_sessions_count",
    ]  # fmt: skip
    aggregate = [r for r in sessions.fetchall() if r.session_id == 0]
    assert len(aggregate) == 1 and aggregate[0].scan_phase == "Aggregate" and aggregate[0].tran_count >= 1
    errors = conn.execute("SELECT * FROM sys.dm_cdc_errors WHERE 1 = 0")
    assert [d[0] for d in errors.description] == [
        "session_id", "phase_number", "entry_time", "error_number", "error_severity", "error_state", "error_message",
        "start_lsn", "begin_lsn", "sequence_value",
    ]  # fmt: skip
