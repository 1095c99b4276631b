"""S3IOManager through real ``dagster.materialize`` runs, against moto S3 and file://."""

# No "from __future__ import annotations": Dagster reads the real annotation types.

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DynamicPartitionsDefinition,
    EnvVar,
    asset,
    materialize,
)

from dtaas_dagster.destinations.files import read_partition
from dtaas_dagster.destinations.location import open_location
from dtaas_dagster.destinations.s3 import S3IOManager
from dtaas_dagster.stream import TableStream
from dtaas_dagster_tests.destinations.s3_samples import TABLE, all_types_table
from dtaas_dagster_tests.s3_fixtures import MotoS3, S3Credentials

LOADS = DynamicPartitionsDefinition(name="loads")
SEEN: dict[str, Any] = {}


def _data_for(partition_key: str) -> pa.Table:
    shift = 0 if partition_key == "p1" else 100
    return pa.table({"id": pa.array([1 + shift, 2 + shift, 3 + shift], pa.int32()), "key": [partition_key] * 3})


@asset(key_prefix=["task1", "dbo"], name="orders", partitions_def=LOADS, io_manager_key="s3")
def orders(context: AssetExecutionContext) -> TableStream:
    data = _data_for(context.partition_key)
    return TableStream(
        table=TABLE,
        schema=data.schema,
        batches=iter(data.to_batches(max_chunksize=2)),
        partition_key=context.partition_key,
        estimated_rows=3,
        variables={
            "sourceDatabaseName": "sales",
            "sourceSchemaName": "dbo",
            "sourceTableName": "dbo.orders",
            "sourceTableShortName": "orders",
            "partitionKey": context.partition_key,
            "tenant": "acme",
        },
        source_types={"id": "int", "key": "nvarchar(20)"},
    )


@asset(partitions_def=LOADS, deps=[])
def orders_arrow(orders: pa.Table) -> int:
    SEEN["arrow"] = orders
    return orders.num_rows


@asset(partitions_def=LOADS)
def orders_pandas(orders: pd.DataFrame) -> int:
    SEEN["pandas"] = orders
    return len(orders)


@asset
def orders_all(orders: pa.Table) -> int:
    SEEN["all"] = orders
    return orders.num_rows


ORDERS = AssetKey(["task1", "dbo", "orders"])


def _materialization_metadata(result: Any, key: AssetKey) -> dict[str, Any]:
    events = [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION]
    [event] = [e for e in events if e.asset_key == key]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


@pytest.fixture()
def s3_manager(moto_s3: MotoS3, s3_bucket: str, s3_credentials: S3Credentials) -> S3IOManager:
    return S3IOManager(
        url=f"s3://{s3_bucket}/lake",
        path_template="data/$tenant/$sourceTableShortName/$partitionKey",
        endpoint_url=moto_s3.endpoint_url,
        access_key_id_env=s3_credentials.key_id_env,
        secret_access_key_env=s3_credentials.secret_env,
    )


def _run_partitions(manager: S3IOManager, instance: DagsterInstance, keys: list[str]) -> dict[str, Any]:
    instance.add_dynamic_partitions("loads", keys)
    results = {}
    for key in keys:
        result = materialize(
            [orders, orders_arrow, orders_pandas], partition_key=key, instance=instance, resources={"s3": manager}
        )
        assert result.success
        results[key] = result
    return results


def test_materialize_writes_partition_and_downstream_reads_arrow_and_pandas(
    s3_manager: S3IOManager, moto_s3: MotoS3, s3_bucket: str, s3_credentials: S3Credentials
) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = _run_partitions(s3_manager, instance, ["p1"])["p1"]

    assert isinstance(SEEN["arrow"], pa.Table) and SEEN["arrow"].equals(_data_for("p1"))
    assert isinstance(SEEN["pandas"], pd.DataFrame)
    assert SEEN["pandas"]["id"].tolist() == [1, 2, 3] and SEEN["pandas"]["key"].tolist() == ["p1"] * 3

    meta = _materialization_metadata(result, ORDERS)
    assert meta["dagster/row_count"] == 3 and meta["files"] == 1 and meta["source_row_estimate"] == 3
    assert meta["format"] == "parquet" and meta["compression"] == "snappy" and meta["partition_key"] == "p1"
    assert meta["manifest"] == f"s3://{s3_bucket}/lake/data/acme/orders/p1/_manifest.json"
    assert meta["bytes"] > 0 and meta["duration_s"] >= 0 and meta["rows_per_s"] >= 0
    columns = {c.name: c for c in meta["dagster/column_schema"].columns}
    assert columns["id"].type == "int32" and columns["id"].description == "SQL Server type: int"
    assert columns["key"].description == "SQL Server type: nvarchar(20)"

    keys = {o["Key"] for o in moto_s3.client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert "lake/_dtaas/task1/dbo/orders/p1.json" in keys and "lake/data/acme/orders/p1/_manifest.json" in keys
    for secret in (s3_credentials.key_id, s3_credentials.secret):
        assert all(secret not in str(v) for v in meta.values())


def test_unpartitioned_downstream_gets_all_partitions_in_key_order(tmp_path: Path) -> None:
    manager = S3IOManager(url=f"file://{tmp_path}/lake", format="csv", compression="gzip")
    with DagsterInstance.ephemeral() as instance:
        _run_partitions(manager, instance, ["p2", "p1"])
        result = materialize([orders, orders_all], selection=[orders_all], instance=instance, resources={"s3": manager})
    assert result.success
    assert SEEN["all"].column("id").to_pylist() == [1, 2, 3, 101, 102, 103]
    assert (tmp_path / "lake/sales/dbo/orders/p1/_manifest.json").exists()


def test_rerun_of_a_partition_replaces_it(tmp_path: Path) -> None:
    manager = S3IOManager(url=f"file://{tmp_path}/lake", format="jsonl")
    with DagsterInstance.ephemeral() as instance:
        _run_partitions(manager, instance, ["p1"])
        part_dir = tmp_path / "lake/sales/dbo/orders/p1"
        first_files = {p.name for p in part_dir.iterdir()}
        result = materialize([orders], partition_key="p1", instance=instance, resources={"s3": manager})
    assert result.success
    second_files = {p.name for p in part_dir.iterdir()}
    assert len(second_files) == 2 and not (first_files - {"_manifest.json"}) & second_files
    location = open_location(f"file://{tmp_path}/lake")
    assert read_partition(location.fs, str(part_dir)).equals(_data_for("p1"))


def test_loading_a_partition_that_was_never_written_fails_clearly(tmp_path: Path) -> None:
    manager = S3IOManager(url=f"file://{tmp_path}/lake")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("loads", ["p9"])
        result = materialize(
            [orders, orders_arrow],
            selection=[orders_arrow],
            partition_key="p9",
            instance=instance,
            resources={"s3": manager},
            raise_on_error=False,
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    message = (
        failure.step_failure_data.error.cause.message
        if failure.step_failure_data.error.cause
        else failure.step_failure_data.error.message
    )
    assert "partition p9 of task1/dbo/orders has no manifest" in message
    assert "never loaded or its load did not finish" in message


def test_all_types_round_trip_through_the_io_manager(tmp_path: Path) -> None:
    table = all_types_table()

    @asset(key_prefix=["task1", "dbo"], name="everything", io_manager_key="s3")
    def everything() -> TableStream:
        return TableStream(
            table=TABLE, schema=table.schema, batches=iter(table.to_batches(max_chunksize=1)), partition_key="full"
        )

    @asset
    def everything_copy(everything: pa.Table) -> int:
        SEEN["everything"] = everything
        return 0

    for fmt in ("parquet", "csv", "jsonl"):
        manager = S3IOManager(url=f"file://{tmp_path}/{fmt}", format=fmt)
        assert materialize([everything, everything_copy], resources={"s3": manager}).success
        assert SEEN["everything"].equals(table), fmt


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"format": "xml"}, "format 'xml' is not one of parquet, csv, jsonl"),
        ({"format": "csv", "compression": "snappy"}, "snappy' is for parquet only"),
        ({"file_max_mb": 0}, "file_max_mb must be positive"),
        ({"url": "/data/lake"}, "must start with s3:// or file://"),
    ],
)
def test_bad_settings_fail_when_the_definitions_load(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        S3IOManager(**{"url": "file:///data/lake", **settings})


def test_url_from_envvar_is_resolved_at_run_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTAAS_TEST_LAKE_URL", f"file://{tmp_path}/from-env")
    manager = S3IOManager(url=EnvVar("DTAAS_TEST_LAKE_URL"), format="csv")
    with DagsterInstance.ephemeral() as instance:
        _run_partitions(manager, instance, ["p1"])
    assert (tmp_path / "from-env/sales/dbo/orders/p1/_manifest.json").exists()
    assert SEEN["arrow"].equals(_data_for("p1"))


def test_partition_keys_with_unsafe_characters_round_trip(tmp_path: Path) -> None:
    manager = S3IOManager(url=f"file://{tmp_path}/lake")
    with DagsterInstance.ephemeral() as instance:
        _run_partitions(manager, instance, ["2024-01-01T10:00", "2024-01-01T10_00"])
        result = materialize([orders, orders_all], selection=[orders_all], instance=instance, resources={"s3": manager})
    assert result.success
    pointers = sorted(p.name for p in (tmp_path / "lake/_dtaas/task1/dbo/orders").iterdir())
    assert pointers == ["2024-01-01T10%3A00.json", "2024-01-01T10_00.json"]
    assert (tmp_path / "lake/sales/dbo/orders/2024-01-01T10%3A00/_manifest.json").exists()
    assert SEEN["all"].column("key").to_pylist() == ["2024-01-01T10:00"] * 3 + ["2024-01-01T10_00"] * 3
