"""full_load_and_cdc into Snowflake through the CDC sensor path: snapshot, windows MERGEd, target = source.

The harness ticks the task's ``t_cdc`` sensor and runs the ``t_tables`` runs it
requests (with their run config and asset checks), as the daemon would; the
destination is fakesnow's server (or a real account, see snowflake_fixtures.py).
"""

from __future__ import annotations

import datetime as dt
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster_tests.cdc.harness import PASSWORD_ENV, Capture, CdcHarness, source_rows
from dtaas_dagster_tests.runs import source_config
from dtaas_dagster_tests.snowflake_fixtures import SnowflakeSchema

pytestmark = pytest.mark.slow

KEY = dg.AssetKey(["t", "dbo", "orders"])


@pytest.fixture()
def instance() -> Any:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(autouse=True)
def _password(sqlserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sqlserver.password)


def _exec(db: Any, *statements: str) -> None:
    with closing(db.connect()) as conn:
        for statement in statements:
            conn.execute(statement)


def _target(schema: SnowflakeSchema) -> list[tuple[Any, ...]]:
    # NULL-ness is asked in SQL: fakesnow returns a NULL TIMESTAMP as 1970-01-01 (docs/snowflake.md#fakesnow)
    rows = schema.query('SELECT "ID", "V", "AMOUNT", "CHANGED", "CHANGED" IS NULL FROM "ORDERS" ORDER BY "ID"')
    return [(i, v, amount, None if null else changed) for i, v, amount, changed, null in rows]


def _source(db: Any) -> list[tuple[Any, ...]]:
    """The source rows; datetime2(7) as pyodbc gives it (rounded to the microsecond: see _same)."""
    return [(r["id"], r["v"], r["amount"], r["changed"]) for r in source_rows(db, "dbo", "orders", "id")]


def _same(target: list[tuple[Any, ...]], source: list[tuple[Any, ...]]) -> bool:
    """Equal rows; datetimes within the microsecond (pyodbc rounds the 100-ns digit, the connector truncates
    it; the exact digit is checked by test_snowflake_load.py's type round trip)."""

    def close(a: Any, b: Any) -> bool:
        if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
            return abs(a - b) <= dt.timedelta(microseconds=1)
        return bool(a == b)

    return len(target) == len(source) and all(
        len(t) == len(s) and all(close(a, b) for a, b in zip(t, s)) for t, s in zip(target, source)
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events  # type: ignore[union-attr]
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata of the run's one materialization."""
    [event] = [
        e.event_specific_data.materialization
        for e in result.all_events  # type: ignore[union-attr]
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    ]
    return {k: v.value for k, v in event.metadata.items()}


def test_full_load_and_cdc_into_snowflake_equals_the_source(
    sqlserver: Any,
    sqlserver_db: Any,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    snowflake_schema: SnowflakeSchema,
) -> None:
    _exec(
        sqlserver_db,
        "EXEC sys.sp_cdc_enable_db",
        "CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, v nvarchar(20), amount decimal(18,2), "
        "changed datetime2(7))",
        "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL",
    )
    capture = Capture(sqlserver_db)
    _exec(
        sqlserver_db,
        "INSERT INTO dbo.orders VALUES (1, N'a', 1.50, '2024-01-01 00:00:00.1234567'), "
        "(2, N'b', 2.00, NULL), (3, N'c', NULL, '2024-01-03 00:00:00')",
    )
    capture.step()
    config = {
        "sources": {"src": source_config(sqlserver, sqlserver_db.name)},
        "destinations": {"wh": snowflake_schema.destination()},
        "tasks": {
            "t": {
                "source": "src",
                "destination": "wh",
                "tables": ["dbo.orders"],
                "mode": "full_load_and_cdc",
                "retry": {"max_retries": 0},
            }
        },
    }
    harness = CdcHarness(config, sqlserver, instance, tmp_path)

    [snapshot] = harness.cycle()  # the first tick asks for the snapshot that starts CDC
    assert snapshot.success
    assert _same(_target(snowflake_schema), _source(sqlserver_db))
    loaded = _materialized(snapshot)
    assert loaded["dtaas/kind"] == "snapshot" and loaded["dtaas/cdc_start_lsn"]  # what the sensor continues from
    assert {name: c.passed for name, c in _checks(snapshot).items()} == {
        "row_count": True,
        "manifest": True,
        "column_schema_change": True,
    }

    # changes after the snapshot: an update, a delete, an insert
    _exec(
        sqlserver_db,
        "UPDATE dbo.orders SET v = N'a2' WHERE id = 1",
        "DELETE FROM dbo.orders WHERE id = 2",
        "INSERT INTO dbo.orders VALUES (4, N'd', 4.00, '2030-05-05 05:05:05.0000005')",
    )
    capture.step()
    [window] = harness.cycle()
    assert window.success
    assert _same(_target(snowflake_schema), _source(sqlserver_db))
    first_window = _materialized(window)
    assert first_window["dtaas/kind"] == "cdc" and first_window["dagster/row_count"] == 3
    assert first_window["dtaas/cdc_from_lsn"] == format(int(loaded["dtaas/cdc_start_lsn"], 16) + 1, "020x")
    assert all(c.passed for c in _checks(window).values()) and len(_checks(window)) == 3

    # a key update (split by SQL Server into delete + insert) and a plain update
    _exec(
        sqlserver_db,
        "UPDATE dbo.orders SET id = id + 10 WHERE id IN (1, 3)",
        "UPDATE dbo.orders SET amount = 9.99 WHERE id = 4",
    )
    capture.step()
    [window2] = harness.cycle()
    assert window2.success
    expected = _source(sqlserver_db)
    assert [r[0] for r in expected] == [4, 11, 13]
    assert _same(_target(snowflake_schema), expected)
    assert harness.cycle() == []  # idle

    # re-executing the first window's run: staged and counted, applied nothing; id 2 stays deleted
    first_request = window.dagster_run
    again = harness.job.get_subset(asset_selection={KEY}).execute_in_process(
        instance=instance,
        partition_key=first_request.tags["dagster/partition"],
        run_config=first_request.run_config,
        raise_on_error=False,
    )
    assert again.success
    replayed = _materialized(again)
    assert "at or below the applied LSN" in replayed["skipped"]
    assert replayed["dagster/row_count"] == 3
    assert _same(_target(snowflake_schema), expected)
    assert all(c.passed for c in _checks(again).values())

    # the checks alone (the asset's Checks tab) find the partition's load in the load log
    newest = window2.dagster_run.tags["dagster/partition"]
    checks_only = harness.job.get_subset(
        asset_selection=set(),
        asset_check_selection={dg.AssetCheckKey(KEY, "manifest"), dg.AssetCheckKey(KEY, "row_count")},
    )
    rechecked = checks_only.execute_in_process(instance=instance, partition_key=newest, raise_on_error=False)
    assert {name: c.passed for name, c in _checks(rechecked).items()} == {"manifest": True, "row_count": True}
    # ... and a target dropped since then fails the manifest check, naming the table
    snowflake_schema.query('DROP TABLE "ORDERS"')
    broken = checks_only.execute_in_process(instance=instance, partition_key=newest, raise_on_error=False)
    manifest = _checks(broken)["manifest"]
    assert not manifest.passed and "ORDERS" in (manifest.description or "")
