"""CDC end to end in-process: snapshot, change windows, key updates, replay equals the source."""

from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster_tests.cdc.harness import PASSWORD_ENV, Capture, CdcHarness, cdc_config, source_rows


@pytest.fixture()
def instance() -> Any:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(autouse=True)
def _password(sqlserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sqlserver.password)


POLL_1 = {"poll_seconds": 1}
# DDL on dbo.orders, then (as a DBA does after it) a second capture instance with the new column
NOTE_AND_A_NEW_CAPTURE_INSTANCE = (
    "ALTER TABLE dbo.orders ADD note nvarchar(30) NULL",
    "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL, "
    "@capture_instance = N'dbo_orders_v2'",
)


def _setup(db: Any) -> Capture:
    with closing(db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        conn.execute(
            "CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, v nvarchar(20), amount decimal(18,2), "
            "changed datetime2(7))"
        )
        conn.execute(
            "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL"
        )
    return Capture(db)


def _harness(
    sqlserver: Any,
    db: Any,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    tables: list[Any] | None = None,
    *,
    cursor: str | None = None,
    **task: Any,
) -> CdcHarness:
    """The harness of task t over ``tables`` (dbo.orders by default) into tmp_path/lake; ``task``
    goes into the task's config."""
    config = cdc_config(sqlserver, db.name, tmp_path / "lake", tables or ["dbo.orders"], **task)
    return CdcHarness(config, sqlserver, instance, tmp_path / "lake", cursor=cursor)


def _purge_all_but_the_newest(sqlserver: Any, db: Any) -> None:
    """The cleanup job (the double's purge hook) removes dbo.orders' changes up to just before the max LSN."""
    with closing(db.connect()) as conn:
        newest = bytes(conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0])
    sqlserver.control.purge_changes(db.name, "dbo_orders", bytes.fromhex(f"{int(newest.hex(), 16) - 1:020x}"))


def _exec(db: Any, *statements: str) -> None:
    with closing(db.connect()) as conn:
        for statement in statements:
            conn.execute(statement)


def test_snapshot_then_windows_replay_to_the_source(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db)
    _exec(
        sqlserver_db,
        "INSERT INTO dbo.orders VALUES (1, N'a', 1.50, '2024-01-01 00:00:00.1234567'), "
        "(2, N'b', 2.00, NULL), (3, N'c', NULL, '2024-01-03 00:00:00')",
    )
    capture.step()
    harness = _harness(sqlserver, sqlserver_db, tmp_path, instance)
    [snapshot] = harness.cycle()  # no snapshot yet: the first tick asks for one
    assert snapshot.success
    # changes after the snapshot, some not yet captured when the snapshot ran (capture lag)
    _exec(
        sqlserver_db,
        "UPDATE dbo.orders SET v = N'a2' WHERE id = 1",
        "DELETE FROM dbo.orders WHERE id = 2",
        "INSERT INTO dbo.orders VALUES (4, N'd', 4.00, '2030-05-05 05:05:05.0000005')",
    )
    assert harness.cycle() == []  # nothing captured yet: no window
    capture.step()
    [window] = harness.cycle()
    assert window.success
    _exec(
        sqlserver_db,
        "UPDATE dbo.orders SET id = id + 10 WHERE id IN (1, 3)",  # key update, split by SQL Server
        "UPDATE dbo.orders SET amount = 9.99 WHERE id = 4",
    )
    capture.step()
    [window2] = harness.cycle()
    assert window2.success
    assert harness.cycle() == []  # idle: nothing more
    replayed = harness.replayed("dbo", "orders").sort_by("id").to_pylist()
    expected = source_rows(sqlserver_db, "dbo", "orders", "id")
    assert [r["id"] for r in replayed] == [r["id"] for r in expected] == [4, 11, 13]
    for got, want in zip(replayed, expected):
        assert got["v"] == want["v"] and got["amount"] == want["amount"]


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    texts = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def _two_tables(db: Any) -> Capture:
    capture = _setup(db)
    _exec(
        db,
        "CREATE TABLE dbo.other (id int NOT NULL PRIMARY KEY, x int)",
        "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'other', @role_name = NULL",
    )
    return capture


TWO_TABLES = ["dbo.orders", "dbo.other"]


def _two_tables_snapshotted(
    sqlserver: Any, db: Any, tmp_path: Path, instance: dg.DagsterInstance, **task: Any
) -> tuple[Capture, CdcHarness]:
    """dbo.orders and dbo.other with a row each, snapshotted by the first cycle; one step for both
    (``task``: more of the task's config)."""
    capture = _two_tables(db)
    _exec(db, "INSERT INTO dbo.orders VALUES (1, N'a', 1, NULL)", "INSERT INTO dbo.other VALUES (1, 1)")
    capture.step()
    harness = _harness(sqlserver, db, tmp_path, instance, TWO_TABLES, parallel_tables=1, **task)
    assert all(r.success for r in harness.cycle())  # the snapshots
    return capture, harness


@pytest.mark.double_only
def test_a_retention_gap_fails_that_table_clearly_holds_back_no_other_and_a_snapshot_resumes_it(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture, harness = _two_tables_snapshotted(sqlserver, sqlserver_db, tmp_path, instance)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (2, N'b', 2, NULL)", "INSERT INTO dbo.other VALUES (2, 2)")
    capture.step()
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (3, N'c', 3, NULL)")  # keeps a newer transaction
    capture.step()
    # the cleanup job purges dbo.orders' changes before they were read
    _purge_all_but_the_newest(sqlserver, sqlserver_db)
    [run] = harness.cycle()
    assert not run.success
    text = _failure_text(run)
    assert "CDC retention gap on dbo.orders" in text and "t_full_load" in text and "now starts at" in text
    loaded = {e.asset_key.path[-1] for e in run.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    assert loaded == {"other"}  # the other table was not held back
    assert harness.cycle() == []  # blocked: no new doomed run, the tick says why
    # the remedy: a new snapshot of the table; CDC continues after it
    snapshot_key = "2099-01-01T000000Z-full-rfix01"
    instance.add_dynamic_partitions("t_loads", [snapshot_key])
    fix = harness.job.execute_in_process(
        instance=instance, partition_key=snapshot_key, asset_selection=[dg.AssetKey(["t", "dbo", "orders"])]
    )
    assert fix.success
    _exec(sqlserver_db, "UPDATE dbo.orders SET v = N'after' WHERE id = 1")
    capture.step()
    assert all(r.success for r in harness.cycle())
    replayed = harness.replayed("dbo", "orders").sort_by("id").to_pylist()
    assert [(r["id"], r["v"]) for r in replayed] == [(1, "after"), (2, "b"), (3, "c")]


@pytest.mark.double_only
def test_a_change_run_reads_its_tables_catalog_facts_in_one_batch(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture, harness = _two_tables_snapshotted(sqlserver, sqlserver_db, tmp_path, instance)
    _exec(sqlserver_db, "UPDATE dbo.orders SET v = N'b' WHERE id = 1", "INSERT INTO dbo.other VALUES (2, 2)")
    capture.step()
    # a window's own catalog batch fails (it says "capture_instance = @P<n>"); the step's read-ahead does not
    sqlserver.control.fail_statement(r"ct\.capture_instance = @P\d+", times=100)
    try:
        [run] = harness.cycle()
    finally:
        sqlserver.control.clear_faults()
    assert run.success, _failure_text(run)
    loaded = {e.asset_key.path[-1] for e in run.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    assert loaded == {"orders", "other"}
    assert [(r["id"], r["v"]) for r in harness.replayed("dbo", "orders").to_pylist()] == [(1, "b")]
    assert sorted(r["id"] for r in harness.replayed("dbo", "other").to_pylist()) == [1, 2]


def test_a_new_capture_instance_after_ddl_is_followed_with_the_new_schema(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, N'a', 1, NULL)")
    capture.step()
    harness = _harness(sqlserver, sqlserver_db, tmp_path, instance)
    assert all(r.success for r in harness.cycle())
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (2, N'b', 2, NULL)")  # before the DDL: old instance
    _exec(
        sqlserver_db,
        *NOTE_AND_A_NEW_CAPTURE_INSTANCE,
        "INSERT INTO dbo.orders VALUES (3, N'c', 3, NULL, N'with note')",
        "UPDATE dbo.orders SET note = N'noted' WHERE id = 1",
    )
    capture.step()
    for _ in range(3):
        for result in harness.cycle():
            assert result.success, _failure_text(result)
    replayed = {r["id"]: r for r in harness.replayed("dbo", "orders").to_pylist()}
    assert sorted(replayed) == [1, 2, 3]
    assert replayed[3]["note"] == "with note" and replayed[1]["note"] == "noted"
    windows = [
        e for r in harness.results for e in r.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    ]
    instances = [e.event_specific_data.materialization.metadata.get("dtaas/cdc_capture_instance") for e in windows]
    assert [i.value for i in instances if i is not None][-2:] == ["dbo_orders", "dbo_orders_v2"]
    changed = [e.event_specific_data.materialization.metadata.get("dtaas/schema_change") for e in windows]
    assert [c.value for c in changed if c is not None] == [{"added": ["note"], "removed": [], "retyped": []}]


def test_schema_drift_fail_holds_the_table_with_the_differences_until_the_policy_changes(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, N'a', 1, NULL)")
    capture.step()
    harness = _harness(sqlserver, sqlserver_db, tmp_path, instance, schema_drift="fail", cdc=POLL_1)
    assert all(r.success for r in harness.cycle())
    _exec(
        sqlserver_db,
        *NOTE_AND_A_NEW_CAPTURE_INSTANCE,
        "INSERT INTO dbo.orders VALUES (3, N'c', 3, NULL, N'n')",
    )
    capture.step()
    results = harness.cycle() + harness.cycle()
    failed = [r for r in results if not r.success]
    assert failed and "columns changed since the previous load (added note (nvarchar(30)))" in _failure_text(failed[0])
    assert "schema_drift: fail" in _failure_text(failed[0])
    # held, not asked again after a backoff: a retry cannot fix it (poll 1 s: it would come 2 s later)
    assert harness.cycle() == []  # settles the failed run
    time.sleep(2.5)
    assert harness.cycle() == []
    # the fix: schema_drift: evolve; the table is asked for again from the same LSN, nothing lost
    fixed = _harness(
        sqlserver, sqlserver_db, tmp_path, instance, schema_drift="evolve", cdc=POLL_1, cursor=harness.cursor
    )
    [run] = fixed.cycle()
    assert run.success, _failure_text(run)
    replayed = fixed.replayed("dbo", "orders").sort_by("id").to_pylist()
    assert [(r["id"], r.get("note")) for r in replayed] == [(1, None), (3, "n")]


@pytest.mark.double_only
def test_a_held_table_is_not_released_by_a_run_of_its_request_that_did_not_load_it(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A person re-executes only the other table of a run where one table is held: the held table
    must not count as loaded (its window would be skipped). Found by a hostile review."""
    capture, harness = _two_tables_snapshotted(
        sqlserver, sqlserver_db, tmp_path, instance, schema_drift="fail", cdc=POLL_1
    )
    _exec(
        sqlserver_db,
        *NOTE_AND_A_NEW_CAPTURE_INSTANCE,
        "INSERT INTO dbo.orders VALUES (3, N'c', 3, NULL, N'n')",
        "INSERT INTO dbo.other VALUES (2, 2)",
    )
    capture.step()
    requests = []
    for i in range(3):  # the old instance's last window, then the new one's (fails for orders: held)
        if i == 1:  # dbo.other changes too: its window is in the same run as orders' failing one
            _exec(sqlserver_db, "INSERT INTO dbo.other VALUES (3, 3)")
            capture.step()
        result = harness.tick()
        requests += result.run_requests
        for request in result.run_requests:
            harness.run(request)
        time.sleep(1.2)
    held = {name: s for name, s in json.loads(harness.cursor or "{}")["tables"].items() if s["held"]}
    assert list(held) == ["t/dbo/orders"]
    [request] = [r for r in requests if r.run_key == held["t/dbo/orders"]["pending"]["run_key"]]
    # a re-execution of dbo.other alone from that run (the UI copies the run's tags): it succeeds
    subset = harness.job.get_subset(asset_selection={dg.AssetKey(["t", "dbo", "other"])})
    again = subset.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags={**request.tags, "dagster/sensor_name": "t_cdc"},
        raise_on_error=False,
    )
    assert again.success, _failure_text(again)
    harness.tick()
    assert json.loads(harness.cursor or "{}")["tables"]["t/dbo/orders"]["held"]  # still held
    fixed = _harness(
        sqlserver,
        sqlserver_db,
        tmp_path,
        instance,
        TWO_TABLES,
        parallel_tables=1,
        schema_drift="evolve",
        cdc=POLL_1,
        cursor=harness.cursor,
    )
    assert all(r.success for r in fixed.cycle())
    assert sorted(r["id"] for r in fixed.replayed("dbo", "orders").to_pylist()) == [1, 3]


@pytest.mark.double_only
def test_a_table_removed_from_the_task_with_a_request_pending_does_not_stop_the_others(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The cursor keeps a removed table's state, with its last request; the sensor must not look it
    up (every tick failed with a KeyError: found by a hostile review)."""
    capture, harness = _two_tables_snapshotted(sqlserver, sqlserver_db, tmp_path, instance, cdc=POLL_1)
    _exec(sqlserver_db, "UPDATE dbo.orders SET v = N'b' WHERE id = 1", "INSERT INTO dbo.other VALUES (2, 2)")
    capture.step()
    [request] = harness.tick().run_requests  # both tables pending in the cursor
    assert harness.run(request).success
    # dbo.orders is removed from the task (the code location reloaded); the cursor still holds its request
    smaller = _harness(
        sqlserver, sqlserver_db, tmp_path, instance, ["dbo.other"], parallel_tables=1, cdc=POLL_1, cursor=harness.cursor
    )
    _exec(sqlserver_db, "INSERT INTO dbo.other VALUES (3, 3)")
    capture.step()
    for _ in range(3):
        assert all(r.success for r in smaller.cycle())
        time.sleep(1.1)
    assert sorted(r["id"] for r in smaller.replayed("dbo", "other").to_pylist()) == [1, 2, 3]


@pytest.mark.double_only
def test_a_gap_the_run_finds_is_planned_again_under_resnapshot_not_held(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The cleanup job purges a window after the sensor planned it: the run fails (a retention gap),
    and with on_retention_gap: resnapshot the table gets a new snapshot, as when the sensor sees
    the gap itself. Found by a hostile review (the table was held)."""
    capture = _setup(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, N'a', 1, NULL)")
    capture.step()
    harness = _harness(
        sqlserver, sqlserver_db, tmp_path, instance, cdc={"poll_seconds": 1, "on_retention_gap": "resnapshot"}
    )
    assert all(r.success for r in harness.cycle())
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (2, N'b', 2, NULL)")
    capture.step()
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (3, N'c', 3, NULL)")
    capture.step()
    [request] = harness.tick().run_requests  # planned before the purge
    _purge_all_but_the_newest(sqlserver, sqlserver_db)
    run = harness.run(request)
    assert not run.success and "CDC retention gap on dbo.orders" in _failure_text(run)
    triggers = []
    for _ in range(4):
        time.sleep(1.5)  # past the backoff (poll 1 s)
        for later in harness.tick().run_requests:
            triggers.append(later.tags.get("dtaas/trigger"))
            assert harness.run(later).success
        if triggers:
            break
    assert triggers == ["cdc_snapshot"]
    assert sorted(r["id"] for r in harness.replayed("dbo", "orders").to_pylist()) == [1, 2, 3]


@pytest.mark.double_only
def test_on_retention_gap_resnapshot_takes_a_new_snapshot_of_that_table_and_continues(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, N'a', 1, NULL)")
    capture.step()
    harness = _harness(sqlserver, sqlserver_db, tmp_path, instance, cdc={"on_retention_gap": "resnapshot"})
    assert all(r.success for r in harness.cycle())
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (2, N'b', 2, NULL)")
    capture.step()
    _exec(sqlserver_db, "UPDATE dbo.orders SET v = N'c' WHERE id = 1")
    capture.step()
    _purge_all_but_the_newest(sqlserver, sqlserver_db)
    [snapshot] = harness.cycle()  # the gap: a snapshot of that table, not a doomed window
    assert snapshot.success and "-full-cdc" in snapshot.dagster_run.tags["dagster/partition"]
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (3, N'd', 3, NULL)")
    capture.step()
    assert all(r.success for r in harness.cycle() + harness.cycle())
    replayed = harness.replayed("dbo", "orders").sort_by("id").to_pylist()
    assert [(r["id"], r["v"]) for r in replayed] == [(1, "c"), (2, "b"), (3, "d")]


def test_schema_drift_ignore_keeps_the_previous_columns(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, N'a', 1, NULL)")
    capture.step()
    harness = _harness(sqlserver, sqlserver_db, tmp_path, instance, schema_drift="ignore")
    assert all(r.success for r in harness.cycle())
    _exec(
        sqlserver_db,
        *NOTE_AND_A_NEW_CAPTURE_INSTANCE,
        "INSERT INTO dbo.orders VALUES (3, N'c', 3, NULL, N'n')",
    )
    capture.step()
    results = harness.cycle() + harness.cycle()
    assert results and all(r.success for r in results)
    replayed = harness.replayed("dbo", "orders").sort_by("id")
    assert "note" not in replayed.column_names and replayed.column("id").to_pylist() == [1, 3]


def test_update_before_images_and_a_datetime2_7_window_are_exact(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db)
    tables = [{"name": "dbo.orders", "datetime2": {"changed": "string"}}]
    harness = _harness(
        sqlserver,
        sqlserver_db,
        tmp_path,
        instance,
        tables,
        mode="cdc",
        cdc={"start": "earliest", "update_before_images": True},
    )
    _exec(
        sqlserver_db,
        "INSERT INTO dbo.orders VALUES (1, N'a', 1.25, '2024-01-01 00:00:00.1234567')",
        "UPDATE dbo.orders SET v = N'b', changed = '9999-12-31 23:59:59.9999999' WHERE id = 1",
    )
    capture.step()
    [run] = harness.cycle()
    assert run.success
    import pyarrow.parquet as pq

    [manifest] = list((tmp_path / "lake").rglob("_manifest.json"))
    path = manifest.parent / __import__("json").loads(manifest.read_text())["files"][0]["path"]
    rows = pq.read_table(path)
    assert rows.column("_dtaas_op").to_pylist() == ["insert", "update_before", "update"]
    # text columns get a Parquet dictionary, except _dtaas_seqval (a distinct value for nearly every row)
    chunks = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {chunks.column(i).path_in_schema: chunks.column(i).encodings for i in range(chunks.num_columns)}
    assert "RLE_DICTIONARY" in encodings["_dtaas_op"] and "RLE_DICTIONARY" in encodings["_dtaas_lsn"]
    assert "RLE_DICTIONARY" not in encodings["_dtaas_seqval"]
    assert rows.column("v").to_pylist() == ["a", "a", "b"]
    lsns = rows.column("_dtaas_lsn").to_pylist()
    assert all(len(x) == 20 and x == x.lower() for x in lsns) and lsns == sorted(lsns)
    # a value no timestamp holds (year 9999 with a 100-ns digit) stays exact as text (datetime2: string)
    assert rows.column("changed").to_pylist() == [
        "2024-01-01 00:00:00.1234567",
        "2024-01-01 00:00:00.1234567",
        "9999-12-31 23:59:59.9999999",
    ]


def test_min_window_seconds_coalesces_changes_and_a_tick_a_few_ms_early_still_ends_the_wait(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dtaas_dagster.cdc import sensor as sensor_module

    capture = _setup(sqlserver_db)
    config = cdc_config(
        sqlserver,
        sqlserver_db.name,
        tmp_path / "lake",
        ["dbo.orders"],
        mode="cdc",
        cdc={"start": "earliest", "poll_seconds": 5, "min_window_seconds": 10},
    )
    harness = CdcHarness(config, sqlserver, instance, tmp_path / "lake")
    import time
    from types import SimpleNamespace

    clock = [time.time()]  # the sensor's own clock (its module's time.time): ticks on the daemon's 5 s loop
    monkeypatch.setattr(sensor_module, "time", SimpleNamespace(time=lambda: clock[0], monotonic=time.monotonic))

    def changed_then_tick(row: int, at: float) -> list[dg.ExecuteInProcessResult]:
        _exec(sqlserver_db, f"INSERT INTO dbo.orders (id, v) VALUES ({row}, N'r{row}')")
        capture.step()
        clock[0] = at
        return harness.cycle()

    start = clock[0]
    assert [r.success for r in changed_then_tick(1, start)] == [True]  # the first window
    assert changed_then_tick(2, start + 5.0) == []  # 5 s after it: coalesced into the next one
    # 10 s after the first window, but 20 ms early (the daemon's loop): the wait is over
    [run] = changed_then_tick(3, start + 9.98)
    assert run.success
    [event] = run.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 2  # rows 2 and 3: one window
