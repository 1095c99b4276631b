"""End to end: `dagster job execute` loads SQL Server tables into moto's S3, exactly.

Each test seeds a fresh database on the SQL Server fixture (the double, or a real
server from DTAAS_TEST_SQLSERVER), writes a dtaas.yaml, runs the task's
`<task>_full_load` job in a subprocess, and reads the partition back from S3
through its manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.destinations.files import read_partition
from dtaas_dagster.destinations.location import open_location
from dtaas_dagster_tests.all_types import (
    assert_same,
    expected_all_types,
    seed_all_types,
)
from dtaas_dagster_tests.runs import (
    dagster_home,
    materializations,
    run_job,
    run_load,
    run_log,
    s3_destination,
    source_config,
    write_config,
)

pytestmark = pytest.mark.slow


def config_for(
    sqlserver: Any,
    database: str,
    destination: dict[str, Any],
    *,
    task: str = "t",
    tables: list[Any] | None = None,
    **task_options: Any,
) -> dict[str, Any]:
    return {
        "sources": {"src": source_config(sqlserver, database)},
        "destinations": {"dst": destination},
        "tasks": {
            task: {
                "source": "src",
                "destination": "dst",
                "tables": tables or [{"name": "dbo.all_types", "datetime2": {"c_sentinel_text": "string"}}],
                "retry": {"max_retries": 0},
                **task_options,
            }
        },
    }


def read_back(destination: dict[str, Any], table_dir: str) -> tuple[pa.Table, dict[str, Any]]:
    location = open_location(
        destination["url"],
        endpoint_url=destination.get("endpoint_url"),
        region="us-east-1",
        access_key_id_env=destination.get("access_key_id_env"),
        secret_access_key_env=destination.get("secret_access_key_env"),
    )
    partitions = sorted(
        info.path
        for info in location.fs.get_file_info(__import__("pyarrow.fs").fs.FileSelector(location.path(table_dir)))
        if info.type.name == "Directory"
    )
    assert len(partitions) == 1, partitions
    with location.fs.open_input_stream(f"{partitions[0]}/_manifest.json") as handle:
        manifest = json.loads(handle.read())
    return read_partition(location.fs, partitions[0]), manifest


@pytest.fixture()
def bucket(s3_bucket: str, s3_credentials: Any) -> str:
    """A fresh bucket; the credentials' environment variables are set for us and for the job."""
    return s3_bucket


@pytest.mark.parametrize("file_format", ["parquet", "csv", "jsonl"])
def test_every_type_round_trips_through_each_format(
    file_format: str, sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    seed_all_types(sqlserver_db)
    destination = s3_destination(bucket, moto_s3.endpoint_url, format=file_format)
    # Parquet needs the per-column choice for c_sentinel_text (no timestamp type holds it);
    # CSV / JSON lines hold the exact text, so "auto" alone must give the same result.
    tables = None if file_format == "parquet" else ["dbo.all_types"]
    config_path = write_config(tmp_path, config_for(sqlserver, sqlserver_db.name, destination, tables=tables))
    outcome = run_load(task="t", config_path=config_path, home=dagster_home(tmp_path), password=sqlserver.password)
    assert outcome.ok, outcome.output[-6000:]

    table, manifest = read_back(destination, f"{sqlserver_db.name}/dbo/all_types")
    assert manifest["format"] == file_format
    assert_same(table.sort_by("id"), expected_all_types())

    # progress lines and materialization metadata
    assert "dbo.all_types: read 3 / ~3 rows (100%)" in outcome.output
    events = materializations(outcome.dagster_home, ["t", "dbo", "all_types"])
    assert len(events) == 1
    metadata = events[0].metadata
    assert metadata["dagster/row_count"].value == 3
    schema_columns = {c.name: c for c in metadata["dagster/column_schema"].value.columns}
    assert "datetime2(7)" in (schema_columns["c_datetime2_7"].description or "")
    for key in ("bytes", "files", "duration_s", "rows_per_s", "source_row_estimate"):
        assert key in metadata, key
    assert events[0].partition == manifest["partition_key"]
    assert "-full-r" in events[0].partition


def s3_listing(moto_s3: Any, bucket: str) -> dict[str, str]:
    """Every object in the bucket with its ETag: compare before and after a run."""
    listed = moto_s3.client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {obj["Key"]: obj["ETag"] for obj in listed}


def expect_failure(
    sqlserver: Any,
    tmp_path: Path,
    config: dict[str, Any],
    moto_s3: Any,
    bucket: str,
    *messages: str,
    password: str | None = None,
) -> str:
    """Run the task's full load, expect it to fail with every message, and the bucket unchanged."""
    before = s3_listing(moto_s3, bucket)
    outcome = run_load(
        task="t",
        config_path=write_config(tmp_path, config),
        home=dagster_home(tmp_path),
        password=sqlserver.password if password is None else password,
    )
    assert not outcome.ok
    for message in messages:
        assert message in outcome.output, message
    assert s3_listing(moto_s3, bucket) == before
    return outcome.output


def test_wrong_password_fails_clearly_and_writes_nothing(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    seed_all_types(sqlserver_db)
    config = config_for(sqlserver, sqlserver_db.name, s3_destination(bucket, moto_s3.endpoint_url))
    wrong = "Not-The-Password-8812"
    output = expect_failure(
        sqlserver,
        tmp_path,
        config,
        moto_s3,
        bucket,
        "login failed for user",
        "DTAAS_TEST_SOURCE_PASSWORD",
        password=wrong,
    )
    assert wrong not in output


def test_unreachable_server_fails_clearly_and_writes_nothing(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = config_for(sqlserver, sqlserver_db.name, s3_destination(bucket, moto_s3.endpoint_url))
    config["sources"]["src"]["port"] = closed_port
    expect_failure(
        sqlserver,
        tmp_path,
        config,
        moto_s3,
        bucket,
        f"cannot reach SQL Server source 'src' at {sqlserver.host}:{closed_port}",
    )


def test_missing_table_names_it_and_suggests_the_right_one(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    seed_all_types(sqlserver_db)
    config = config_for(
        sqlserver, sqlserver_db.name, s3_destination(bucket, moto_s3.endpoint_url), tables=["dbo.all_typez"]
    )
    expect_failure(
        sqlserver,
        tmp_path,
        config,
        moto_s3,
        bucket,
        "table dbo.all_typez not found in source 'src'",
        "did you mean dbo.all_types?",
    )


def test_table_without_primary_key_fails_when_mode_needs_one(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    with sqlserver_db.connect() as connection:
        connection.execute("CREATE TABLE dbo.heap (a int, b nvarchar(10))")
        connection.execute("INSERT INTO dbo.heap VALUES (1, N'x'), (2, N'y')")
    config = config_for(
        sqlserver,
        sqlserver_db.name,
        s3_destination(bucket, moto_s3.endpoint_url),
        tables=["dbo.heap"],
        mode="full_load_and_cdc",
    )
    expect_failure(
        sqlserver,
        tmp_path,
        config,
        moto_s3,
        bucket,
        "table dbo.heap in source 'src'",
        "the table has no primary key",
        "primary_key",
    )


@pytest.mark.double_only
def test_a_failed_reload_leaves_the_previous_load_as_it_was(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    rows = 5_000
    sqlserver_db.seed_table("dbo", "big", pa.table({"id": pa.array(range(rows), pa.int32())}), primary_key=["id"])
    config = config_for(
        sqlserver,
        sqlserver_db.name,
        s3_destination(bucket, moto_s3.endpoint_url),
        tables=["dbo.big"],
        batch={"rows": 500},
        file_size={"rows": 1_000},
    )
    first = run_load(
        task="t", config_path=write_config(tmp_path, config), home=dagster_home(tmp_path), password=sqlserver.password
    )
    assert first.ok, first.output[-4000:]
    key = materializations(first.dagster_home, ["t", "dbo", "big"])[0].partition
    # Re-run the same partition through <task>_tables, as a script would; its read dies after
    # 3,000 rows, when files are already written, and there are no retries.
    sqlserver.control.drop_after_rows(3_000, matching=r"FROM \[dbo\]\.\[big\]", times=1)
    before = s3_listing(moto_s3, bucket)
    try:
        second = run_job(
            job="t_tables",
            config_path=write_config(tmp_path, config),
            home=first.dagster_home,
            password=sqlserver.password,
            extra_args=["--tags", json.dumps({"dagster/partition": key})],
        )
    finally:
        sqlserver.control.clear_faults()
    assert not second.ok and "stopped after 3,000 rows" in second.output
    assert s3_listing(moto_s3, bucket) == before
    table, manifest = read_back(config["destinations"]["dst"], f"{sqlserver_db.name}/dbo/big")
    assert table.num_rows == rows and manifest["partition_key"] == key


@pytest.mark.double_only
def test_connection_dropped_mid_table_is_retried_and_the_retry_starts_clean(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    rows = 10_000
    sqlserver_db.seed_table(
        "dbo",
        "big",
        pa.table({"id": pa.array(range(rows), pa.int32()), "label": pa.array([f"row {i}" for i in range(rows)])}),
        columns={"id": "int", "label": "nvarchar(20)"},
        primary_key=["id"],
    )
    # The first full read of dbo.big loses its connection after 6,000 rows, when
    # three 2,000-row files have already been written; the retry must not keep them.
    sqlserver.control.drop_after_rows(6_000, matching=r"FROM \[dbo\]\.\[big\]", times=1)
    destination = s3_destination(bucket, moto_s3.endpoint_url)
    config = config_for(
        sqlserver,
        sqlserver_db.name,
        destination,
        tables=["dbo.big"],
        batch={"rows": 1_000},
        file_size={"rows": 2_000},
        retry={"max_retries": 2, "delay_seconds": 0.5, "backoff": "exponential", "jitter": "none"},
    )
    try:
        outcome = run_load(
            task="t",
            config_path=write_config(tmp_path, config),
            home=dagster_home(tmp_path),
            password=sqlserver.password,
        )
    finally:
        sqlserver.control.clear_faults()
    assert outcome.ok, outcome.output[-6000:]
    events = run_log(outcome.dagster_home)
    assert "STEP_UP_FOR_RETRY" in {kind for kind, _ in events}
    # the truncated first read was caught by comparing with SQL Server's own row count
    assert any("stopped after 6,000 rows" in message for _, message in events)

    table, manifest = read_back(destination, f"{sqlserver_db.name}/dbo/big")
    assert table.num_rows == rows == manifest["total_rows"]
    assert sorted(table.column("id").to_pylist()) == list(range(rows))
    listed = {entry["path"].rsplit("/", 1)[-1] for entry in manifest["files"]}
    stored = {
        obj["Key"].rsplit("/", 1)[-1]
        for obj in moto_s3.client.list_objects_v2(Bucket=bucket, Prefix="lake/")["Contents"]
        if "/part-" in obj["Key"]
    }
    assert stored == listed and len(listed) == 5
