"""open_changes against the SQL Server fixture: what it refuses before reading a window."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster.errors import PermanentLoadError
from dtaas_dagster.sqlserver.cdc import ChangeWindow
from dtaas_dagster.sqlserver.lsn import Lsn
from dtaas_dagster.table_load import TableSpec, open_changes
from dtaas_dagster_tests.sqlserver.test_resource import resource_for
from dtaas_dagster_tests.sqlserver_fixtures import SELECT_MAX_LSN, SELECT_MIN_LSN, enable_cdc


def _window(conn: Any, create: str, captured: str) -> ChangeWindow:
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute(create)
    enable_cdc(
        conn, "dbo", "items", capture_instance="dbo_items", captured_columns=captured, supports_net_changes=False
    )
    conn.execute("INSERT INTO dbo.items (shop, sku, qty) VALUES (1, N'a', 2)")
    low = Lsn.from_bytes(bytes(conn.execute(SELECT_MIN_LSN, "dbo_items").fetchone()[0]))
    return ChangeWindow("dbo_items", low, Lsn.from_bytes(bytes(conn.execute(SELECT_MAX_LSN).fetchone()[0])))


def test_a_key_column_the_capture_instance_leaves_out_is_named_with_the_fix(sqlserver: Any, sqlserver_db: Any) -> None:
    # A table without a declared key, its key in dtaas.yaml (with a declared key, SQL Server itself
    # refuses a capture instance without the key columns: error 22943).
    with closing(sqlserver_db.connect()) as conn:
        window = _window(
            conn, "CREATE TABLE dbo.items (shop int NOT NULL, sku nvarchar(20) NOT NULL, qty int)", captured="shop, qty"
        )
    spec = TableSpec("t", "src", "lake", "dbo", "items", "cdc", primary_key=("shop", "sku"))
    with pytest.raises(PermanentLoadError) as raised:
        open_changes(
            spec,
            resource_for(sqlserver, sqlserver_db.name, "msodbc18"),
            window,
            partition_key="p",
            run_id="r",
            global_variables={},
            log=dg.build_op_context().log,
        )
    message = str(raised.value)
    assert "capture instance dbo_items of dbo.items does not capture the key column(s) sku" in message
    assert "@captured_column_list" in message and "not a column" not in message
