"""SqlServerResource against the SQL Server fixture, with Driver 18 and with FreeTDS.

Catalog reads go through pyodbc, the bulk read through arrow-odbc; both drivers
must give the same exact Arrow data.
"""

import datetime
from contextlib import closing
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.sqlserver.bulk import MIN_BATCH_ROWS, batch_rows_for
from dtaas_dagster.sqlserver.errors import SqlServerLoginFailed, SqlServerTableNotFound
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.sqlserver.snapshot import (
    SnapshotOptions,
    SnapshotPlan,
    convert_batch,
    plan_snapshot,
    profile_columns,
    snapshot_read,
)
from dtaas_dagster_tests.all_types import assert_same, expected_all_types, seed_all_types

DRIVERS = ["msodbc18", "freetds"]


def resource_for(sqlserver: Any, database: str, driver: str, password: str | None = None) -> SqlServerResource:
    return SqlServerResource(
        source_name="src",
        host=sqlserver.host,
        port=sqlserver.port,
        database=database,
        user=sqlserver.user,
        password=sqlserver.password if password is None else password,
        password_env="SRC_PW",
        driver=driver,
        encrypt="no",
        trust_server_certificate=True,
        login_timeout_seconds=5,
    )


@pytest.mark.parametrize("driver", DRIVERS)
def test_catalog_server_info_tables_and_schema(driver: str, sqlserver: Any, sqlserver_db: Any) -> None:
    seed_all_types(sqlserver_db)
    sqlserver_db.seed_table(
        "sales", "orders", pa.table({"order_id": pa.array([1, 2, 3], pa.int64())}), primary_key=["order_id"]
    )
    resource = resource_for(sqlserver, sqlserver_db.name, driver)
    info = resource.server_info()
    assert info.database == sqlserver_db.name and info.snapshot_isolation
    tables = {(t.schema, t.name): t.row_estimate for t in resource.list_tables()}
    assert tables == {("dbo", "all_types"): 3, ("sales", "orders"): 3}
    description = resource.describe_table("dbo", "all_types")
    assert description.primary_key == ("id",)
    by_name = {c.name: c for c in description.columns}
    assert by_name["id"].nullable is False and by_name["c_int"].nullable is True
    assert by_name["c_nvarchar"].type_text == "nvarchar(50)"
    assert by_name["c_nvarchar_max"].type_text == "nvarchar(max)"
    assert by_name["c_decimal"].type_text == "decimal(38,10)"
    assert by_name["c_datetime2_7"].type_text == "datetime2(7)"
    assert by_name["c_real"].type_text == "real"


def plan_for(resource: SqlServerResource, table: str, options: SnapshotOptions) -> SnapshotPlan:
    facts = resource.table_facts("dbo", table, profile_columns=lambda d: profile_columns(d, options))
    return plan_snapshot(facts, options)


@pytest.mark.parametrize("driver", DRIVERS)
def test_snapshot_read_is_exact_with_each_driver(driver: str, sqlserver: Any, sqlserver_db: Any) -> None:
    seed_all_types(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, driver)
    plan = plan_for(resource, "all_types", SnapshotOptions(datetime2_overrides={"c_sentinel_text": "string"}))
    assert plan.snapshot_isolation
    batches = [convert_batch(b, plan) for b in resource.read_arrow(snapshot_read(plan), batch_rows=2)]
    assert [b.num_rows for b in batches] == [2, 1]
    table = pa.Table.from_batches(batches, schema=plan.target_schema).sort_by("id")
    assert_same(table, expected_all_types())


def test_datetime2_that_fits_no_type_stops_before_reading(sqlserver: Any, sqlserver_db: Any) -> None:
    seed_all_types(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with pytest.raises(
        ValueError, match=r"c_sentinel_text \(datetime2\(7\)\).*Set datetime2 for this column to string"
    ):
        plan_for(resource, "all_types", SnapshotOptions())


def test_missing_table_and_wrong_password_are_named(sqlserver: Any, sqlserver_db: Any) -> None:
    seed_all_types(sqlserver_db)
    with pytest.raises(SqlServerTableNotFound, match="did you mean dbo.all_types"):
        resource_for(sqlserver, sqlserver_db.name, "msodbc18").describe_table("dbo", "All_Typs")
    with pytest.raises(SqlServerLoginFailed, match="SRC_PW") as raised:
        resource_for(sqlserver, sqlserver_db.name, "freetds", password="wrong-Passw0rd-77").server_info()
    assert "wrong-Passw0rd-77" not in str(raised.value)


def test_a_batch_fits_the_row_estimate_and_a_stale_estimate_only_means_more_batches(
    sqlserver: Any, sqlserver_db: Any
) -> None:
    assert batch_rows_for(50_000, 1_000) == MIN_BATCH_ROWS  # small table: small buffers
    assert batch_rows_for(50_000, 20_000) == 22_000  # the estimate plus 10%
    assert batch_rows_for(50_000, 900_000) == 50_000  # never more than configured
    assert batch_rows_for(None, 1_000) == MIN_BATCH_ROWS  # sized by MB: rows still capped
    assert batch_rows_for(50_000, None) == 50_000 and batch_rows_for(None, None) is None
    rows = 25_000
    sqlserver_db.seed_table(
        "dbo", "grown", pa.table({"id": pa.array(range(rows), pa.int32())}), columns={"id": "int"}, primary_key=["id"]
    )
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    plan = plan_for(resource, "grown", SnapshotOptions())
    # as if the catalog still said 100 rows: 10,000-row batches, every row, the count checked
    batches = list(resource.read_arrow(snapshot_read(plan), batch_rows=batch_rows_for(50_000, 100)))
    assert [b.num_rows for b in batches] == [10_000, 10_000, 5_000]
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(rows))


@pytest.mark.parametrize("driver", DRIVERS)
def test_change_facts_come_in_one_batch_with_each_driver(driver: str, sqlserver: Any, sqlserver_db: Any) -> None:
    from dtaas_dagster.sqlserver.cdc import CdcNotEnabled, ChangeWindow
    from dtaas_dagster.sqlserver.lsn import Lsn
    from dtaas_dagster_tests.sqlserver_fixtures import SELECT_MAX_LSN, SELECT_MIN_LSN, enable_cdc

    with closing(sqlserver_db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        conn.execute(
            "CREATE TABLE dbo.items (shop int NOT NULL, sku nvarchar(20) NOT NULL, qty int, "
            "note nvarchar(max), at datetime2(7), CONSTRAINT pk_items PRIMARY KEY (sku, shop))"
        )
        enable_cdc(conn, "dbo", "items", capture_instance="dbo_items_v1", captured_columns="shop, sku, qty, at")
        conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 2, N'n', '2026-01-01T00:00:00.1234567')")
        low = Lsn.from_bytes(bytes(conn.execute(SELECT_MIN_LSN, "dbo_items_v1").fetchone()[0]))
        high = Lsn.from_bytes(bytes(conn.execute(SELECT_MAX_LSN).fetchone()[0]))
    resource = resource_for(sqlserver, sqlserver_db.name, driver)
    facts = resource.change_facts(ChangeWindow("dbo_items_v1", low, high), source=("dbo", "items"))
    assert facts.description.primary_key == ("sku", "shop")  # the source table's key, in key order
    assert [c.name for c in facts.description.columns] == ["shop", "sku", "qty", "at"]  # captured only
    assert [c.type_text for c in facts.description.columns] == ["int", "nvarchar(20)", "int", "datetime2(7)"]
    assert facts.cdc_min_lsn == low and facts.options.cdc_enabled
    # the datetime2(7) column's profile comes after the batch, on the same cursor
    profiled = resource.change_facts(
        ChangeWindow("dbo_items_v1", low, high), profile_columns=lambda d: profile_columns(d, SnapshotOptions())
    )
    inserted = datetime.datetime(2026, 1, 1, 0, 0, 0, 123456)  # '...00.1234567' to the microsecond
    assert profiled.profile[:2] == (inserted, inserted)  # the column's min and max in the window
    without_source = resource.change_facts(ChangeWindow("dbo_items_v1", low, high))
    assert without_source.description.primary_key == () and without_source.cdc_min_lsn == low
    with pytest.raises(CdcNotEnabled, match=r"capture instance dbo_items_v2 does not exist"):
        resource.change_facts(ChangeWindow("dbo_items_v2", low, high), source=("dbo", "items"))
