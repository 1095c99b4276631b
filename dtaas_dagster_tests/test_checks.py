"""The step asset checks (row_count, manifest, column_schema_change) in real runs against the double.

Each test runs ``<task>_tables`` in-process (the assets, resources and IO
manager of a launched run) and reads the check evaluations Dagster recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from dtaas_dagster.checks import COLUMN_SCHEMA, MANIFEST, ROW_COUNT, row_count_result, step_check_keys
from dtaas_dagster.config import parse_config
from dtaas_dagster.factory import build_definitions
from dtaas_dagster.manifest import MANIFEST_NAME
from dtaas_dagster_tests.runs import PASSWORD_ENV, s3_destination, source_config

KEY1 = "2026-03-04T050607Z-full-rtest01"
KEY2 = "2026-03-05T050607Z-full-rtest02"
ORDERS = dg.AssetKey(["t", "dbo", "orders"])


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(autouse=True)
def _password(sqlserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sqlserver.password)


def _defs(
    sqlserver: Any, db: Any, lake: Path, destination: dict[str, Any] | None = None, **task: Any
) -> dg.Definitions:
    config = {
        "sources": {"src": source_config(sqlserver, db.name)},
        "destinations": {"lake": destination or {"type": "s3", "url": f"file://{lake}"}},
        "tasks": {
            "t": {"source": "src", "destination": "lake", "tables": ["dbo.orders"], "retry": {"max_retries": 0}, **task}
        },
    }
    return build_definitions(parse_config(config))


def _load(defs: dg.Definitions, instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("t_loads", [key])
    return defs.resolve_job_def("t_tables").execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _seed(db: Any, rows: int) -> None:
    table = pa.table({"id": pa.array(range(rows), pa.int32()), "v": pa.array([f"v{i}" for i in range(rows)])})
    db.seed_table("dbo", "orders", table, columns={"id": "int", "v": "nvarchar(20)"}, primary_key=["id"])


def test_a_load_records_passing_checks_with_the_counts(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, 1_234)
    result = _load(_defs(sqlserver, sqlserver_db, tmp_path / "lake", batch={"rows": 500}), instance, KEY1)
    assert result.success
    checks = _checks(result)
    assert set(checks) == {ROW_COUNT, MANIFEST, COLUMN_SCHEMA}
    assert all(c.passed and c.asset_key == ORDERS for c in checks.values())
    counted = checks[ROW_COUNT].metadata
    assert counted["rows_sent_by_sql_server"].value == counted["rows_written"].value == 1_234
    assert checks[MANIFEST].metadata["rows"].value == 1_234 and checks[MANIFEST].metadata["files"].value == 1
    assert checks[MANIFEST].metadata["manifest"].value.endswith(MANIFEST_NAME)
    assert "no previous partition" in (checks[COLUMN_SCHEMA].description or "")
    # the checks are recorded against this partition's materialization
    record = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(ORDERS, ROW_COUNT), limit=1)[
        0
    ]
    materialization = instance.fetch_materializations(ORDERS, limit=1).records[0]
    assert (
        record.event.dagster_event.event_specific_data.target_materialization_data.storage_id
        == materialization.storage_id
    )


def test_a_deleted_file_fails_the_manifest_check_when_the_checks_run_again(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, 50)
    defs = _defs(sqlserver, sqlserver_db, tmp_path / "lake")
    assert _load(defs, instance, KEY1).success
    recheck = defs.resolve_job_def("t_tables").get_subset(
        asset_selection=set(), asset_check_selection=set(step_check_keys([ORDERS]))
    )
    again = _checks(recheck.execute_in_process(instance=instance))
    assert again[MANIFEST].passed and again[ROW_COUNT].passed and again[COLUMN_SCHEMA].passed
    assert again[ROW_COUNT].metadata["rows_written"].value == 50
    [part] = list((tmp_path / "lake").rglob("part-*"))
    part.unlink()
    failed = _checks(recheck.execute_in_process(instance=instance, raise_on_error=False))
    assert not failed[MANIFEST].passed and failed[MANIFEST].severity == dg.AssetCheckSeverity.ERROR
    assert part.name in (failed[MANIFEST].description or "") and "missing" in (failed[MANIFEST].description or "")
    assert failed[MANIFEST].metadata["partition"].value == KEY1
    assert not failed[ROW_COUNT].passed and "cannot be counted" in (failed[ROW_COUNT].description or "")


def test_on_s3_the_manifest_check_links_the_manifest_and_fails_on_a_deleted_object(
    sqlserver: Any,
    sqlserver_db: Any,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    moto_s3: Any,
    s3_bucket: str,
    s3_credentials: Any,
) -> None:
    _seed(sqlserver_db, 30)
    defs = _defs(sqlserver, sqlserver_db, tmp_path, destination=s3_destination(s3_bucket, moto_s3.endpoint_url))
    checks = _checks(_load(defs, instance, KEY1))
    assert checks[MANIFEST].passed
    assert checks[MANIFEST].metadata["manifest"].value.startswith(f"s3://{s3_bucket}/")
    [part] = [
        o["Key"]
        for o in moto_s3.client.list_objects_v2(Bucket=s3_bucket)["Contents"]
        if o["Key"].rsplit("/", 1)[-1].startswith("part-")
    ]
    moto_s3.client.delete_object(Bucket=s3_bucket, Key=part)
    recheck = defs.resolve_job_def("t_tables").get_subset(
        asset_selection=set(), asset_check_selection={dg.AssetCheckKey(ORDERS, MANIFEST)}
    )
    rechecked = recheck.execute_in_process(instance=instance, raise_on_error=False)
    assert not rechecked.success  # the checks are blocking: a failed one fails its run
    [evaluation] = rechecked.get_asset_check_evaluations()
    assert not evaluation.passed and part.rsplit("/", 1)[-1] in (evaluation.description or "")


def test_a_truncated_parquet_file_fails_the_manifest_check(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, 50)
    defs = _defs(sqlserver, sqlserver_db, tmp_path / "lake")
    assert _load(defs, instance, KEY1).success
    [part] = list((tmp_path / "lake").rglob("part-*"))
    body = part.read_bytes()
    part.write_bytes(body[:10] + b"\0" * (len(body) - 10))  # same size, footer gone
    recheck = defs.resolve_job_def("t_tables").get_subset(
        asset_selection=set(), asset_check_selection={dg.AssetCheckKey(ORDERS, MANIFEST)}
    )
    rechecked = recheck.execute_in_process(instance=instance, raise_on_error=False)
    assert not rechecked.success
    [evaluation] = rechecked.get_asset_check_evaluations()
    assert not evaluation.passed and "not a readable Parquet file" in (evaluation.description or "")
    # the run's failure says which check failed and why (not only Dagster's "blocking check failed")
    [failure] = [e for e in rechecked.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message if failure.step_failure_data.error else ""
    assert "dbo.orders" in message and "check manifest failed" in message and "not a readable Parquet file" in message


@pytest.mark.double_only
def test_a_read_cut_short_fails_the_row_count_check(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, 4_000)
    defs = _defs(sqlserver, sqlserver_db, tmp_path / "lake", batch={"rows": 500})
    sqlserver.control.drop_after_rows(1_500, matching=r"FROM \[dbo\]\.\[orders\]", times=1)
    try:
        result = _load(defs, instance, KEY1)
    finally:
        sqlserver.control.clear_faults()
    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == ROW_COUNT and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    received = evaluation.metadata["rows_received"].value
    assert 1_000 <= received < 4_000 and "rows_sent_by_sql_server" not in evaluation.metadata
    assert "Nothing was written" in (evaluation.description or "")


def _add_column(db: Any) -> None:
    with closing(db.connect()) as conn:
        conn.execute("ALTER TABLE dbo.orders ADD note nvarchar(10) NULL")


def test_a_new_column_warns_through_the_schema_check(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, 10)
    defs = _defs(sqlserver, sqlserver_db, tmp_path / "lake")
    assert _load(defs, instance, KEY1).success
    same = _checks(_load(defs, instance, KEY2))[COLUMN_SCHEMA]
    assert same.passed and "unchanged" in (same.description or "")
    _add_column(sqlserver_db)
    result = _load(defs, instance, "2026-03-06T050607Z-full-rtest03")
    assert result.success  # schema_drift: evolve writes the new column
    changed = _checks(result)[COLUMN_SCHEMA]
    assert not changed.passed and changed.severity == dg.AssetCheckSeverity.WARN
    assert changed.metadata["added"].value == ["note"] and changed.metadata["removed"].value == []
    assert "added note (nvarchar(10))" in (changed.description or "")


def test_schema_drift_fail_fails_the_schema_check_with_error_severity(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, 10)
    defs = _defs(sqlserver, sqlserver_db, tmp_path / "lake", schema_drift="fail")
    assert _load(defs, instance, KEY1).success
    _add_column(sqlserver_db)
    result = _load(defs, instance, KEY2)
    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == COLUMN_SCHEMA and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR and "stopped the load" in (evaluation.description or "")


def test_the_tables_job_evaluates_only_the_step_checks(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    defs = _defs(sqlserver, sqlserver_db, tmp_path / "lake", mode="full_load_and_cdc")
    job = defs.resolve_job_def("t_tables")
    assert set(job.asset_layer.asset_graph.asset_check_keys) == set(step_check_keys([ORDERS]))
    cdc_job = defs.resolve_job_def("t_cdc_checks")
    assert {k.name for k in cdc_job.asset_layer.asset_graph.asset_check_keys} == {"cdc_lag", "cdc_retention_headroom"}


def test_step_checks_chooses_the_checks_a_load_evaluates(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, 10)
    only_rows = _defs(sqlserver, sqlserver_db, tmp_path / "lake", step_checks=["row_count"])
    result = _load(only_rows, instance, KEY1)
    assert result.success and set(_checks(result)) == {ROW_COUNT}
    none = _defs(sqlserver, sqlserver_db, tmp_path / "lake", step_checks=[])
    assert not list(none.resolve_job_def("t_tables").asset_layer.asset_graph.asset_check_keys)
    result = _load(none, instance, KEY2)
    assert result.success and not _checks(result)
    assert len(instance.fetch_materializations(ORDERS, limit=5).records) == 2  # both loads materialized


def test_an_unknown_step_check_is_refused_with_the_names_allowed(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="row_count") as raised:
        _defs(sqlserver, sqlserver_db, tmp_path / "lake", step_checks=["rows"])
    assert "step_checks" in str(raised.value)
    with pytest.raises(Exception, match=r"step_checks\[1\].*row_count is listed twice") as raised:
        _defs(sqlserver, sqlserver_db, tmp_path / "lake", step_checks=["row_count", "row_count"])


def test_the_row_count_text_names_only_the_reasons_rows_were_left_out() -> None:
    snapshot = row_count_result(ORDERS, partition="p", written=7, sent=10, left_out=3)
    assert snapshot.passed and "(3 left out on purpose: filtered rows)" in (snapshot.description or "")
    window = row_count_result(ORDERS, partition="p", written=7, sent=10, left_out=3, changes=True)
    assert "(3 left out on purpose: update before-images, filtered rows)" in (window.description or "")
    short = row_count_result(ORDERS, partition="p", written=6, sent=10, left_out=3)
    assert not short.passed and (short.description or "").endswith("; 7 expected")


@pytest.mark.double_only
def test_a_step_retry_checks_the_tables_an_earlier_attempt_loaded_again(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # One step, two tables: dbo.orders loads, dbo.lines loses its connection once. The retry loads
    # only dbo.lines, and evaluates dbo.orders' checks again (a check may fail after a load, e.g. a
    # store hiccup while verifying, and the retry is there for that too).
    _seed(sqlserver_db, 50)
    lines = pa.table({"id": pa.array(range(3_000), pa.int32())})
    sqlserver_db.seed_table("dbo", "lines", lines, columns={"id": "int"}, primary_key=["id"])
    defs = _defs(
        sqlserver,
        sqlserver_db,
        tmp_path / "lake",
        tables=["dbo.orders", "dbo.lines"],
        tables_per_step=2,
        batch={"rows": 500},
        retry={"max_retries": 1, "delay_seconds": 0.1, "jitter": "none"},
    )
    sqlserver.control.drop_after_rows(1_000, matching=r"FROM \[dbo\]\.\[lines\].*ROWCOUNT_BIG", times=1)
    try:
        result = _load(defs, instance, KEY1)
    finally:
        sqlserver.control.clear_faults()
    assert result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1
    by_table: dict[str, list[tuple[str, bool]]] = {}
    for evaluation in result.get_asset_check_evaluations():
        by_table.setdefault(evaluation.asset_key.path[-1], []).append((evaluation.check_name, evaluation.passed))
    assert by_table["orders"].count((ROW_COUNT, True)) == 2 and by_table["orders"].count((MANIFEST, True)) == 2
    assert by_table["lines"].count((ROW_COUNT, False)) == 1 and by_table["lines"].count((ROW_COUNT, True)) == 1
    materialized = [e.asset_key.path[-1] for e in result.get_asset_materialization_events()]
    assert sorted(materialized) == ["lines", "orders"]  # orders was not loaded twice
