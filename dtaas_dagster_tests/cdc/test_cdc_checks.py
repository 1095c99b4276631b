"""The CDC checks (cdc_lag, cdc_retention_headroom) in real runs: the harness drives the sensor and its
runs against the double, then the job ``t_cdc_checks`` (what the schedule runs) evaluates the checks."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster.cdc.checks import CDC_HEADROOM, CDC_LAG
from dtaas_dagster.cdc.lag import POSITION_KEY
from dtaas_dagster_tests.cdc.harness import PASSWORD_ENV, Capture, CdcHarness, cdc_config

ORDERS = dg.AssetKey(["t", "dbo", "orders"])
IDLE = dg.AssetKey(["t", "dbo", "idle"])


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


def _max_lsn(db: Any) -> bytes:
    with closing(db.connect()) as conn:
        return bytes(conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0])


def _setup(db: Any, *tables: str, retention_minutes: int = 1) -> Capture:
    _exec(db, "EXEC sys.sp_cdc_enable_db")
    for table in tables:
        _exec(
            db,
            f"CREATE TABLE dbo.{table} (id int NOT NULL PRIMARY KEY, v int)",
            f"EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'{table}', @role_name = NULL",
        )
    _exec(db, f"EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = {retention_minutes}")
    return Capture(db)


def _harness(
    sqlserver: Any, db: Any, lake: Path, instance: dg.DagsterInstance, tables: list[str], **cdc: Any
) -> CdcHarness:
    config = cdc_config(sqlserver, db.name, lake, tables, parallel_tables=1, cdc=cdc)
    return CdcHarness(config, sqlserver, instance, lake)


def _evaluate(harness: CdcHarness) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """Run the checks job (what the schedule t_cdc_checks runs); the evaluations by (table, check)."""
    job = harness.defs.resolve_job_def("t_cdc_checks")
    result = job.execute_in_process(instance=harness.instance)
    assert result.success
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def test_a_lagging_table_warns_then_its_load_clears_it_and_low_headroom_fails(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db, "orders")
    harness = _harness(
        sqlserver,
        sqlserver_db,
        tmp_path / "lake",
        instance,
        ["dbo.orders"],
        lag_warn_seconds=1,
        lag_fail_seconds=3600,
        headroom_warn_percent=99.9,
        headroom_fail_percent=98,
    )
    before = _evaluate(harness)  # nothing loaded yet: CDC has not started
    assert not before[("orders", CDC_LAG)].passed
    assert before[("orders", CDC_LAG)].severity == dg.AssetCheckSeverity.WARN
    assert "no snapshot loaded yet" in (before[("orders", CDC_LAG)].description or "")
    assert all(r.success for r in harness.cycle())  # the snapshot
    idle = _evaluate(harness)
    assert idle[("orders", CDC_LAG)].passed and idle[("orders", CDC_LAG)].metadata["lag_seconds"].value == 0
    assert idle[("orders", CDC_HEADROOM)].passed
    assert idle[("orders", CDC_HEADROOM)].metadata["headroom_seconds"].value == 60  # the whole 1-minute retention
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, 1)")
    capture.step()
    waiting_lsn = _max_lsn(sqlserver_db).hex()
    time.sleep(1.6)  # the change waits, unloaded (no tick): its age is at least this
    lagging = _evaluate(harness)
    lag = lagging[("orders", CDC_LAG)]
    assert not lag.passed and lag.severity == dg.AssetCheckSeverity.WARN  # past 1 s, below 3600 s
    assert lag.metadata["lag_seconds"].value >= 1.5 and lag.metadata["oldest_waiting_lsn"].value == waiting_lsn
    headroom = lagging[("orders", CDC_HEADROOM)]
    assert not headroom.passed and headroom.severity == dg.AssetCheckSeverity.ERROR  # below 98% of 60 s
    assert headroom.metadata["headroom_seconds"].value <= 60 - 1.5
    assert headroom.metadata["retention_minutes"].value == 1
    assert all(r.success for r in harness.cycle())  # the window is loaded
    caught_up = _evaluate(harness)
    assert caught_up[("orders", CDC_LAG)].passed and caught_up[("orders", CDC_HEADROOM)].passed


@pytest.mark.double_only
def test_a_purged_window_fails_both_checks(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db, "orders")
    harness = _harness(sqlserver, sqlserver_db, tmp_path / "lake", instance, ["dbo.orders"])
    assert all(r.success for r in harness.cycle())  # the snapshot
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, 1)")
    capture.step()
    first = _max_lsn(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (2, 2)")
    capture.step()
    sqlserver.control.purge_changes(sqlserver_db.name, "dbo_orders", first)  # the cleanup job ran first
    found = _evaluate(harness)
    for check in (CDC_LAG, CDC_HEADROOM):
        evaluation = found[("orders", check)]
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "retention gap" in (evaluation.description or "") and "t_full_load" in (evaluation.description or "")


@pytest.mark.double_only
def test_an_idle_table_never_lags_even_after_the_cleanup_passed_its_last_load(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db, "orders", "idle")
    harness = _harness(
        sqlserver, sqlserver_db, tmp_path / "lake", instance, ["dbo.orders", "dbo.idle"], position_report_seconds=1
    )
    assert all(r.success for r in harness.cycle())  # the snapshots
    snapshot_lsn = _max_lsn(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, 1)")
    capture.step()
    assert all(r.success for r in harness.cycle())  # settles the snapshots; a window of orders; idle moves on
    time.sleep(1.1)  # past position_report_seconds since the idle table's snapshot was settled
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (2, 2)")
    capture.step()
    loaded = _max_lsn(sqlserver_db).hex()
    result = harness.tick()
    [observation] = [e for e in result.asset_events or [] if isinstance(e, dg.AssetObservation)]
    assert observation.asset_key == IDLE and observation.metadata[POSITION_KEY].value == loaded
    assert all(harness.run(request).success for request in result.run_requests)  # the second orders window
    # the cleanup job purges up to after the idle table's snapshot: its last *load* is older than the min LSN
    sqlserver.control.purge_changes(sqlserver_db.name, None, snapshot_lsn)
    found = _evaluate(harness)
    for table in ("orders", "idle"):
        for check in (CDC_LAG, CDC_HEADROOM):
            assert found[(table, check)].passed, (table, check, found[(table, check)].description)
    assert found[("idle", CDC_LAG)].metadata["loaded_through_lsn"].value == loaded
    assert found[("idle", CDC_LAG)].metadata["lag_seconds"].value == 0
