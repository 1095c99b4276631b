"""Describing a step's tables ahead, in bulk (sqlserver/facts_session.py), against the SQL Server fixture.

A session must give exactly the facts the one-table path gives, read far fewer
statements, never use a description older than MAX_AGE_SECONDS, and leave the
one-table path's errors as they were. The same for change windows (their
catalog facts read ahead with their capture instances).
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from dtaas_dagster.errors import PermanentLoadError
from dtaas_dagster.sqlserver import facts_session
from dtaas_dagster.sqlserver.cdc import CdcNotEnabled, ChangeWindow
from dtaas_dagster.sqlserver.errors import SqlServerError, SqlServerTableNotFound
from dtaas_dagster.sqlserver.facts_session import FactsSession
from dtaas_dagster.sqlserver.lsn import Lsn
from dtaas_dagster.sqlserver.resource import SqlServerResource, _database_options
from dtaas_dagster.sqlserver.snapshot import SnapshotOptions, profile_columns
from dtaas_dagster.table_load import TableSpec, open_changes
from dtaas_dagster_tests.all_types import seed_all_types
from dtaas_dagster_tests.sqlserver.test_resource import resource_for
from dtaas_dagster_tests.sqlserver_fixtures import SELECT_MIN_LSN, enable_cdc, wait_for_lsn_after

# The one-table describe statement (queries.TABLE_COLUMNS; the driver sends ? as @P<n>);
# the bulk one says "TABLE_NAME IN (".
ONE_TABLE_DESCRIBE = r"c\.TABLE_NAME = (\?|@P\d+)"


def _seed(db: Any) -> list[tuple[str, str]]:
    """Tables of two schemas: keyed and not, one needing the profile query, one spelled in mixed case."""
    seed_all_types(db)  # datetime2(7) and (max) columns: the plan needs the profile query
    db.seed_table(
        "dbo",
        "Orders",
        pa.table({"id": pa.array([1, 2], pa.int32()), "note": pa.array(["a", None])}),
        columns={"id": "int", "note": "nvarchar(20)"},
        primary_key=["id"],
    )
    db.seed_table("dbo", "heap", pa.table({"v": pa.array([1.5, 2.5, 3.5])}), columns={"v": "float"})
    db.seed_table(
        "sales",
        "lines",
        pa.table({"a": pa.array([1], pa.int64()), "b": pa.array([2], pa.int64())}),
        columns={"a": "bigint", "b": "bigint"},
        primary_key=["b", "a"],
    )
    # "orders" in the spelling a config might use; SQL Server compares names ignoring case
    return [("dbo", "all_types"), ("dbo", "orders"), ("dbo", "heap"), ("sales", "lines")]


def _facts(resource: SqlServerResource, schema: str, table: str) -> Any:
    options = SnapshotOptions(datetime2_overrides={"c_sentinel_text": "string"} if table == "all_types" else {})
    return resource.table_facts(schema, table, profile_columns=lambda d: profile_columns(d, options))


def test_a_session_gives_the_same_facts_as_one_table_at_a_time(sqlserver: Any, sqlserver_db: Any) -> None:
    tables = _seed(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    alone = {table: _facts(resource, *table) for table in tables}
    with resource.facts_session(tables) as session:
        together = {table: _facts(resource, *table) for table in tables}
    assert together == alone
    assert session.bulk_reads == 2  # one per schema
    assert alone[("dbo", "all_types")].profile  # the profile query still ran, per table
    assert alone[("sales", "lines")].description.primary_key == ("b", "a")
    assert alone[("dbo", "heap")].description.primary_key == () and alone[("dbo", "heap")].description.row_estimate == 3


@pytest.mark.double_only
def test_inside_a_session_no_table_is_described_alone(sqlserver: Any, sqlserver_db: Any) -> None:
    tables = _seed(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    sqlserver.control.fail_statement(ONE_TABLE_DESCRIBE, times=100)  # any one-table describe fails
    try:
        with resource.facts_session(tables):
            described = [_facts(resource, *table).description for table in tables]
        with pytest.raises(Exception, match="deadlock"):
            _facts(resource, "dbo", "heap")  # the check itself: outside a session, the fault bites
    finally:
        sqlserver.control.clear_faults()
    assert [d.table.name for d in described] == ["all_types", "orders", "heap", "lines"]
    assert [c.name for c in described[1].columns] == ["id", "note"]


def test_a_description_is_used_once_and_never_older_than_max_age(sqlserver: Any, sqlserver_db: Any) -> None:
    tables = [("dbo", name) for name in ("t1", "t2", "t3")]
    for _, name in tables:
        sqlserver_db.seed_table("dbo", name, pa.table({"id": pa.array([1], pa.int32())}), columns={"id": "int"})
    now = [100.0]
    session = FactsSession(
        database=sqlserver_db.name, tables=tables, read_options=_database_options, clock=lambda: now[0]
    )
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with resource.connect() as connection:
        cursor = connection.cursor()
        first = session.read_ahead(cursor, "dbo", "t1")
        assert first is not None and session.bulk_reads == 1
        assert session.take("dbo", "t1") is None  # taken once
        now[0] += facts_session.MAX_AGE_SECONDS - 1
        assert session.take("dbo", "t2") is not None
        with sqlserver_db.connect() as other:
            other.execute("ALTER TABLE dbo.t3 ADD added int NULL")
        now[0] += 2  # t3's description is now older than MAX_AGE_SECONDS
        assert session.take("dbo", "t3") is None
        fresh = session.read_ahead(cursor, "dbo", "t3")
    assert session.bulk_reads == 2
    assert fresh is not None and [c.name for c in fresh[0].columns] == ["id", "added"]


def test_a_table_the_catalog_lacks_gets_the_one_table_error(sqlserver: Any, sqlserver_db: Any) -> None:
    seed_all_types(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with resource.facts_session([("dbo", "all_typs"), ("dbo", "all_types")]):
        with pytest.raises(SqlServerTableNotFound, match="did you mean dbo.all_types"):
            resource.table_facts("dbo", "all_typs")
        assert resource.table_facts("dbo", "all_types", profile_columns=lambda d: ()).description.columns
    # a table the session was not opened for is described alone, as before
    with resource.facts_session([("dbo", "other")]) as session:
        assert resource.table_facts("dbo", "all_types").description.primary_key == ("id",)
        assert session.bulk_reads == 0


# -- change windows ------------------------------------------------------------------------------------
# The one-window change-facts batch names its capture instance with "="; the bulk one says "IN (".
ONE_WINDOW_FACTS = r"ct\.capture_instance = (\?|@P\d+)"
LONG_INSTANCE = "dbo_history_kept_for_the_auditors_" + "x" * 60  # 94 characters (SQL Server allows 100)


def _cdc_tables(db: Any) -> dict[tuple[str, str], ChangeWindow]:
    """CDC on four tables of two schemas, one change each; their windows (from min to max LSN).

    dbo.items: composite key in key order unlike column order, a datetime2(7) column (the plan
    profiles it) and a capture instance that leaves a column out; dbo.plain: one int key;
    dbo.Mixed: spelled in mixed case; dbo.history: a capture instance name far longer than the
    others, after them (a batch's UNION of names must not take the first one's length);
    sales.lines: another schema.
    """
    with closing(db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        conn.execute("CREATE SCHEMA sales")
        conn.execute(
            "CREATE TABLE dbo.items (shop int NOT NULL, sku nvarchar(20) NOT NULL, qty int, note nvarchar(max), "
            "at datetime2(7), CONSTRAINT pk_items PRIMARY KEY (sku, shop))"
        )
        conn.execute("CREATE TABLE dbo.plain (id int NOT NULL PRIMARY KEY, v float)")
        conn.execute("CREATE TABLE dbo.Mixed (Id bigint NOT NULL PRIMARY KEY, Name nvarchar(10))")
        conn.execute("CREATE TABLE dbo.history (id int NOT NULL PRIMARY KEY)")
        conn.execute("CREATE TABLE sales.lines (a bigint NOT NULL, b bigint NOT NULL, PRIMARY KEY (b, a))")
        enable_cdc(conn, "dbo", "items", capture_instance="dbo_items_v1", captured_columns="shop, sku, qty, at")
        enable_cdc(conn, "dbo", "plain", capture_instance="dbo_plain")
        enable_cdc(conn, "dbo", "Mixed", capture_instance="dbo_Mixed")
        enable_cdc(conn, "dbo", "history", capture_instance=LONG_INSTANCE)
        enable_cdc(conn, "sales", "lines", capture_instance="sales_lines")
        conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 2, N'n', '2026-01-01T00:00:00.1234567')")
        conn.execute("INSERT INTO dbo.plain VALUES (1, 1.5)")
        conn.execute("INSERT INTO dbo.Mixed VALUES (1, N'x')")
        conn.execute("INSERT INTO dbo.history VALUES (1)")
        conn.execute("INSERT INTO sales.lines VALUES (1, 2)")
        high = Lsn.from_bytes(wait_for_lsn_after(conn, None))
        windows = {}
        for (schema, table), instance in {
            ("dbo", "items"): "dbo_items_v1",
            ("dbo", "plain"): "dbo_plain",
            ("dbo", "mixed"): "dbo_Mixed",  # the spelling a config might use
            ("dbo", "history"): LONG_INSTANCE,
            ("sales", "lines"): "sales_lines",
        }.items():
            low = Lsn.from_bytes(bytes(conn.execute(SELECT_MIN_LSN, instance).fetchone()[0]))
            windows[(schema, table)] = ChangeWindow(instance, low, high)
    return windows


def _change_facts(resource: SqlServerResource, key: tuple[str, str], window: ChangeWindow) -> Any:
    return resource.change_facts(window, profile_columns=lambda d: profile_columns(d, SnapshotOptions()), source=key)


def _instances(windows: dict[tuple[str, str], ChangeWindow]) -> dict[tuple[str, str], str]:
    return {key: window.capture_instance for key, window in windows.items()}


def test_a_session_gives_change_windows_the_facts_of_one_window_alone(sqlserver: Any, sqlserver_db: Any) -> None:
    windows = _cdc_tables(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    alone = {key: _change_facts(resource, key, window) for key, window in windows.items()}
    with resource.facts_session(list(windows), capture_instances=_instances(windows)) as session:
        together = {key: _change_facts(resource, key, window) for key, window in windows.items()}
    assert together == alone
    assert session.bulk_reads == 2  # one per schema
    items = together[("dbo", "items")]
    assert items.description.primary_key == ("sku", "shop")  # the source table's key, in key order
    assert [c.name for c in items.description.columns] == ["shop", "sku", "qty", "at"]  # captured only
    assert items.profile  # the datetime2(7) column's profile still ran, per window
    assert items.cdc_min_lsn == windows[("dbo", "items")].from_lsn
    assert together[("dbo", "mixed")].description.primary_key == ("Id",)
    assert together[("dbo", "history")].cdc_min_lsn == windows[("dbo", "history")].from_lsn
    assert together[("sales", "lines")].description.primary_key == ("b", "a")


@pytest.mark.double_only
def test_inside_a_session_no_change_window_is_read_alone(sqlserver: Any, sqlserver_db: Any) -> None:
    windows = _cdc_tables(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    sqlserver.control.fail_statement(ONE_WINDOW_FACTS, times=100)  # any one-window batch fails
    try:
        with resource.facts_session(list(windows), capture_instances=_instances(windows)):
            described = [_change_facts(resource, key, window).description for key, window in windows.items()]
        with pytest.raises(Exception, match="deadlock"):  # the check itself: outside a session, the fault bites
            _change_facts(resource, ("dbo", "plain"), windows[("dbo", "plain")])
    finally:
        sqlserver.control.clear_faults()
    assert [[c.name for c in d.columns] for d in described] == [["shop", "sku", "qty", "at"], ["id", "v"],
                                                                  ["Id", "Name"], ["id"], ["a", "b"]]  # fmt: skip


def test_change_facts_read_ahead_are_for_their_instance_only_and_never_stale(sqlserver: Any, sqlserver_db: Any) -> None:
    windows = _cdc_tables(sqlserver_db)
    dbo = {key: window for key, window in windows.items() if key[0] == "dbo"}
    now = [100.0]
    session = FactsSession(
        database=sqlserver_db.name,
        tables=list(dbo),
        read_options=_database_options,
        capture_instances=_instances(dbo),
        clock=lambda: now[0],
    )
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with resource.connect() as connection:
        cursor = connection.cursor()
        first = session.read_changes_ahead(cursor, "dbo", "items", "dbo_items_v1")
        assert first is not None and first.captured == ("shop", "sku", "qty", "at") and session.bulk_reads == 1
        # the same window may take them again (schema_drift: ignore plans a window twice), no new batch
        assert session.read_changes_ahead(cursor, "dbo", "items", "dbo_items_v1") == first
        assert session.take_changes("dbo", "items", "dbo_items_v1") == first and session.bulk_reads == 1
        # a window on another capture instance than the session was opened with is read alone
        assert session.read_changes_ahead(cursor, "dbo", "items", "dbo_items_v2") is None
        assert session.take_changes("dbo", "plain", "dbo_other") is None
        now[0] += facts_session.MAX_AGE_SECONDS + 1  # dbo.mixed's facts are now too old
        assert session.take_changes("dbo", "mixed", "dbo_Mixed") is None
        fresh = session.read_changes_ahead(cursor, "dbo", "mixed", "dbo_Mixed")
    assert fresh is not None and fresh.primary_key == ("Id",) and session.bulk_reads == 2


def test_a_missing_capture_instance_gets_the_one_window_error_inside_a_session(
    sqlserver: Any, sqlserver_db: Any
) -> None:
    windows = _cdc_tables(sqlserver_db)
    gone = ChangeWindow("dbo_plain_v9", windows[("dbo", "plain")].from_lsn, windows[("dbo", "plain")].to_lsn)
    windows[("dbo", "plain")] = gone
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with resource.facts_session(list(windows), capture_instances=_instances(windows)) as session:
        assert _change_facts(resource, ("dbo", "items"), windows[("dbo", "items")]).description.columns
        with pytest.raises(CdcNotEnabled, match=r"capture instance dbo_plain_v9 does not exist"):
            _change_facts(resource, ("dbo", "plain"), gone)
        assert _change_facts(resource, ("dbo", "mixed"), windows[("dbo", "mixed")]).description.columns
        assert session.bulk_reads == 1  # the missing instance was read alone, without a second batch


def test_a_cleanup_after_the_read_ahead_fails_the_read_and_writes_nothing(sqlserver: Any, sqlserver_db: Any) -> None:
    """A min LSN read ahead may be stale (facts_session.py): the change function itself refuses the
    purged window (error 313), and the facts read again name the retention gap."""
    windows = _cdc_tables(sqlserver_db)
    key = ("dbo", "plain")
    with closing(sqlserver_db.connect()) as conn:
        conn.execute("INSERT INTO dbo.plain VALUES (2, 2.5)")
        newest = Lsn.from_bytes(wait_for_lsn_after(conn, windows[key].to_lsn.to_bytes()))
    window = ChangeWindow("dbo_plain", windows[key].from_lsn, newest)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    spec = TableSpec("t", "src", "lake", "dbo", "plain", "cdc")

    def open_window() -> Any:
        return open_changes(
            spec, resource, window, partition_key="p", run_id="r", global_variables={}, log=dg.build_op_context().log
        )

    items = ("dbo", "items")
    with resource.facts_session([items, key], capture_instances={items: "dbo_items_v1", key: "dbo_plain"}) as session:
        _change_facts(resource, items, windows[items])  # reads dbo.plain's facts ahead too
        assert session.bulk_reads == 1
        with closing(sqlserver_db.connect()) as conn:
            conn.execute(
                "EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'dbo_plain', @low_water_mark = ?, "
                "@threshold = 5000",
                newest.to_bytes(),
            )
        stream = open_window()  # the stale min LSN: no gap seen here
        with pytest.raises(SqlServerError, match=r"refused a CDC change window \(error 313\)") as refused:
            list(stream.batches)
        assert refused.value.retryable and "Nothing was written" in str(refused.value)
    with pytest.raises(PermanentLoadError, match=r"CDC retention gap on dbo\.plain"):
        open_window()


def test_the_sensor_probe_answers_a_long_capture_instance_name_after_short_ones(
    sqlserver: Any, sqlserver_db: Any
) -> None:
    from dtaas_dagster.sqlserver.cdc_health import lag_probe

    windows = _cdc_tables(sqlserver_db)
    froms = {window.capture_instance: window.from_lsn for window in windows.values()}  # LONG_INSTANCE 4th
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    probe = resource.cdc_probe(froms)
    assert probe.instances[LONG_INSTANCE].min_lsn == windows[("dbo", "history")].from_lsn
    assert lag_probe(resource, froms).instances[LONG_INSTANCE].min_lsn == windows[("dbo", "history")].from_lsn
