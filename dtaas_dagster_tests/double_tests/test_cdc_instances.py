"""Capture instances: two per table, schema changes, enable/disable errors, min/max LSN edge values."""

from __future__ import annotations

from contextlib import closing

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
    conn.execute(
        "EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'parts', @capture_instance = N'all'"
    )
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


def test_altering_a_captured_columns_type_reaches_the_change_table(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute("ALTER TABLE dbo.parts ADD weight int NULL")
    enable_cdc(conn, "dbo", "parts")
    conn.execute("INSERT INTO dbo.parts VALUES (1, N'a', 7)")
    conn.execute("ALTER TABLE dbo.parts ALTER COLUMN weight bigint NULL")
    conn.execute("INSERT INTO dbo.parts VALUES (2, N'b', 5000000000)")
    wait_for_lsn_after(conn, None)

    assert [(r["id"], r["weight"]) for r in cdc_changes(conn, "dbo_parts")] == [(1, 7), (2, 5000000000)]
    column_type = conn.execute("SELECT column_type FROM cdc.captured_columns WHERE column_name = 'weight'").fetchone()[
        0
    ]
    assert column_type == "bigint"
    history = conn.execute("SELECT required_column_update, ddl_command FROM cdc.ddl_history").fetchall()
    assert [(bool(r[0]), "ALTER COLUMN" in r[1].upper()) for r in history] == [(True, True)]


def test_dropping_a_tracked_table_removes_its_capture_instances(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts")
    enable_cdc(conn, "dbo", "parts", capture_instance="parts_v2")
    conn.execute("CREATE TABLE dbo.other (id int NOT NULL PRIMARY KEY)")
    enable_cdc(conn, "dbo", "other")
    conn.execute("INSERT INTO dbo.parts VALUES (1, N'a')")

    conn.execute("DROP TABLE dbo.parts")

    assert [r[0] for r in conn.execute("SELECT capture_instance FROM cdc.change_tables")] == ["dbo_other"]
    assert conn.execute("SELECT COUNT(*) FROM cdc.captured_columns WHERE column_name = 'name'").fetchone()[0] == 0
    assert conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_parts')").fetchone()[0] == bytes(10)
    with pytest.raises(pyodbc.Error, match=r"\(208\)"):
        conn.execute("SELECT * FROM cdc.dbo_parts_CT")
    names = [r[0] for r in conn.execute("SELECT name FROM sys.tables WHERE name LIKE '%parts%'")]
    assert names == []
    conn.execute("DROP TABLE IF EXISTS dbo.parts")
    conn.execute("CREATE TABLE dbo.a (x int NULL)")
    conn.execute("CREATE TABLE dbo.b (x int NULL)")
    conn.execute("DROP TABLE dbo.a, dbo.b")
    assert conn.execute("SELECT COUNT(*) FROM sys.tables WHERE name IN ('a', 'b')").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("statement", "number"),
    [
        ("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', @role_name = N''", 22907),
        ("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', @role_name = NULL, "
         f"@capture_instance = N'{'c' * 101}'", 22927),
        ("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'nope', @role_name = NULL", 22931),
        ("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', @role_name = NULL, "
         "@captured_column_list = N'id, nope'", 22942),
        ("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', @role_name = NULL, "
         "@captured_column_list = N'name'", 22943),
        ("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', @role_name = NULL, "
         "@index_name = N'nope'", 22928),
        ("EXEC sys.sp_cdc_enable_table @source_schema = NULL, @source_name = N'parts', @role_name = NULL", 22963),
        ("EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'parts', @capture_instance = N'nope'",
         22960),
        ("EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'nope', @low_water_mark = NULL", 22981),
        ("EXEC sys.sp_cdc_help_change_data_capture @source_schema = N'dbo'", 22972),
    ],
)  # fmt: skip
def test_cdc_procedures_use_sql_servers_error_numbers(conn: pyodbc.Connection, statement: str, number: int) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    with pytest.raises(pyodbc.Error, match=rf"\({number}\)"):
        conn.execute(statement)
    assert conn.execute("SELECT COUNT(*) FROM cdc.change_tables").fetchone()[0] == 0


def test_capture_instance_names_up_to_100_characters_are_accepted(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts", capture_instance="c" * 100)
    assert conn.execute("SELECT LEN(capture_instance) FROM cdc.change_tables").fetchone()[0] == 100


def test_enabling_cdc_in_a_system_database_or_on_the_cdc_schema_is_refused(
    conn: pyodbc.Connection, sqlserver_db: SqlServerDatabase
) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    with pytest.raises(pyodbc.Error, match=r"\(22974\)"):
        conn.execute("EXEC sys.sp_cdc_enable_table @source_schema = N'cdc', @source_name = N'change_tables', "
                     "@role_name = NULL")  # fmt: skip
    with closing(sqlserver_db.target.connect("master")) as master, pytest.raises(pyodbc.Error, match=r"\(22989\)"):
        master.execute("EXEC sys.sp_cdc_enable_db")


def test_has_column_changed_with_an_unknown_column_is_a_clear_error(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    enable_cdc(conn, "dbo", "parts")
    assert conn.execute("SELECT sys.fn_cdc_has_column_changed('dbo_parts', 'name', 0x02)").fetchone()[0] is True
    with pytest.raises(pyodbc.Error, match=r"does not capture.*\(102\)"):
        conn.execute("SELECT sys.fn_cdc_has_column_changed('dbo_parts', 'nope', 0x02)")


def test_help_change_data_capture_describes_each_capture_instance(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute("CREATE TABLE dbo.other (k int NOT NULL PRIMARY KEY)")
    enable_cdc(conn, "dbo", "parts")
    enable_cdc(conn, "dbo", "other", supports_net_changes=False)
    cursor = conn.execute("EXEC sys.sp_cdc_help_change_data_capture @source_schema = N'dbo', @source_name = N'parts'")
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert columns == ["source_schema", "source_table", "capture_instance", "object_id", "source_object_id",
                       "start_lsn", "end_lsn", "supports_net_changes", "has_drop_pending", "role_name", "index_name",
                       "filegroup_name", "create_date", "index_column_list", "captured_column_list"]  # fmt: skip
    assert len(rows) == 1
    row = rows[0]
    assert (row.source_table, row.capture_instance, row.supports_net_changes) == ("parts", "dbo_parts", True)
    assert (row.index_column_list, row.captured_column_list) == ("[id]", "[id], [name]")
    assert bytes(row.start_lsn) == conn.execute("SELECT sys.fn_cdc_get_min_lsn('dbo_parts')").fetchone()[0]
    every = conn.execute("EXEC sys.sp_cdc_help_change_data_capture").fetchall()
    assert sorted(r.capture_instance for r in every) == ["dbo_other", "dbo_parts"]


def test_partition_switch_is_always_on_for_tables_that_are_not_partitioned(conn: pyodbc.Connection) -> None:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    cursor = conn.execute("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', "
                          "@role_name = NULL, @allow_partition_switch = 0")  # fmt: skip
    warnings = [text for _, text in cursor.messages]
    assert any("allow_partition_switch parameter must be 1" in text for text in warnings)
    assert conn.execute("SELECT partition_switch FROM cdc.change_tables").fetchone()[0] is True
