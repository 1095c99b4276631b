"""Capture instances: two per table, schema changes, enable/disable errors, min/max LSN edge values."""

from __future__ import annotations

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase, cdc_changes, enable_cdc, wait_for_lsn_after


def sql_error_number(error: pyodbc.Error) -> str:
    """The text of a pyodbc error; SQL Server's number appears as '(22901)'."""
    return str(error)


@pytest.fixture()
def conn(sqlserver_db: SqlServerDatabase) -> pyodbc.Connection:
    conn = sqlserver_db.connect()
    conn.execute("CREATE TABLE dbo.parts (id int NOT NULL PRIMARY KEY, name nvarchar(50) NULL)")
    return conn


def test_enable_table_before_enable_db_fails_with_22901(conn: pyodbc.Connection) -> None:
    with pytest.raises(pyodbc.Error, match=r"22901"):
        enable_cdc(conn, "dbo", "parts")
    assert conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0] is None


def test_added_column_goes_only_into_a_new_capture_instance(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts")
    conn.execute("ALTER TABLE dbo.parts ADD weight decimal(9,3) NULL")
    enable_cdc(conn, "dbo", "parts", capture_instance="dbo_parts_v2")
    conn.execute("INSERT INTO dbo.parts (id, name, weight) VALUES (1, N'bolt', 0.125)")
    wait_for_lsn_after(conn, None)

    old = cdc_changes(conn, "dbo_parts")
    new = cdc_changes(conn, "dbo_parts_v2")
    assert "weight" not in old[0] and old[0]["name"] == "bolt"
    assert str(new[0]["weight"]) == "0.125" and new[0]["__$start_lsn"] == old[0]["__$start_lsn"]
    instances = conn.execute("SELECT capture_instance FROM cdc.change_tables ORDER BY capture_instance").fetchall()
    assert [r[0] for r in instances] == ["dbo_parts", "dbo_parts_v2"]
    history = conn.execute("SELECT ddl_command FROM cdc.ddl_history").fetchall()
    assert any("weight" in r[0] for r in history)


def test_third_capture_instance_is_refused_and_duplicate_name_too(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts")
    with pytest.raises(pyodbc.Error, match=r"22926"):
        enable_cdc(conn, "dbo", "parts")
    enable_cdc(conn, "dbo", "parts", capture_instance="second")
    with pytest.raises(pyodbc.Error, match=r"22962"):
        enable_cdc(conn, "dbo", "parts", capture_instance="third")


def test_net_changes_need_a_key(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute("CREATE TABLE dbo.heap (a int NULL)")
    with pytest.raises(pyodbc.Error, match=r"22939"):
        enable_cdc(conn, "dbo", "heap", supports_net_changes=True)
    enable_cdc(conn, "dbo", "heap", supports_net_changes=False)
    conn.execute("INSERT INTO dbo.heap VALUES (7)")
    wait_for_lsn_after(conn, None)
    assert [r["a"] for r in cdc_changes(conn, "dbo_heap")] == [7]


def test_captured_column_list_limits_the_change_table(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts", captured_columns="id")
    conn.execute("INSERT INTO dbo.parts VALUES (1, N'x')")
    wait_for_lsn_after(conn, None)
    assert list(cdc_changes(conn, "dbo_parts")[0])[-1] == "id"


def test_disable_table_drops_the_instance(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts")
    conn.execute("EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'parts', @capture_instance = N'all'")
    assert conn.execute("SELECT COUNT(*) FROM cdc.change_tables").fetchone()[0] == 0
    assert not conn.execute("SELECT is_tracked_by_cdc FROM sys.tables WHERE name = 'parts'").fetchone()[0]
    assert conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_parts')").fetchone()[0] == bytes(10)


def test_max_lsn_is_zero_until_the_first_change(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts")
    assert conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0] == bytes(10)
    assert conn.execute("SELECT sys.fn_cdc_get_min_lsn('no_such_instance')").fetchone()[0] == bytes(10)
    assert conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_parts')").fetchone()[0] > bytes(10)


def test_net_changes_default_follows_the_primary_key(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute("CREATE TABLE dbo.loose (a int NULL)")
    conn.execute("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'loose', @role_name = NULL")
    conn.execute("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', @role_name = NULL")
    flags = conn.execute("SELECT capture_instance, supports_net_changes FROM cdc.change_tables ORDER BY 1").fetchall()
    assert [(r[0], bool(r[1])) for r in flags] == [("dbo_loose", False), ("dbo_parts", True)]
    with pytest.raises(pyodbc.Error, match=r"201"):
        conn.execute("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts'")


def test_dropped_column_stays_in_the_change_table_as_null(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts")
    conn.execute("ALTER TABLE dbo.parts DROP COLUMN name")
    conn.execute("INSERT INTO dbo.parts (id) VALUES (5)")
    wait_for_lsn_after(conn, None)
    rows = cdc_changes(conn, "dbo_parts")
    assert [(r["id"], r["name"]) for r in rows] == [(5, None)]
