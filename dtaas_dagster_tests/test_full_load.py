"""End to end: `dagster job execute` loads SQL Server tables into moto's S3, exactly.

Each test seeds a fresh database on the SQL Server fixture (the double, or a real
server from DTAAS_TEST_SQLSERVER), writes a dtaas.yaml, runs the task's
`<task>_full_load` job in a subprocess, and reads the partition back from S3
through its manifest.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.destinations.files import open_location, read_partition
from dtaas_dagster_tests.runs import (
    dagster_home,
    materializations,
    run_job,
    s3_destination,
    source_config,
    write_config,
)

pytestmark = pytest.mark.slow

D = decimal.Decimal

# name, T-SQL type, row 1 literal, row 2 literal (row 3 is all NULL), expected Arrow type, expected values
ALL_TYPES: list[tuple[str, str, str, str, pa.DataType, list[Any]]] = [
    ("c_tinyint", "tinyint", "0", "255", pa.uint8(), [0, 255]),
    ("c_smallint", "smallint", "-32768", "32767", pa.int16(), [-32768, 32767]),
    ("c_int", "int", "-2147483648", "2147483647", pa.int32(), [-2147483648, 2147483647]),
    ("c_bigint", "bigint", "-9223372036854775808", "9223372036854775807", pa.int64(),
     [-9223372036854775808, 9223372036854775807]),
    ("c_bit", "bit", "0", "1", pa.bool_(), [False, True]),
    ("c_real", "real", "1.5", "-0.25", pa.float32(), [1.5, -0.25]),
    ("c_float", "float", "1.0000000000000002", "-1e308", pa.float64(), [1.0000000000000002, -1e308]),
    ("c_decimal", "decimal(38,10)", "1234567890123456789012345678.0123456789", "-0.0000000001",
     pa.decimal128(38, 10), [D("1234567890123456789012345678.0123456789"), D("-0.0000000001")]),
    ("c_numeric", "numeric(18,2)", "0.00", "-12345.67", pa.decimal128(18, 2), [D("0.00"), D("-12345.67")]),
    ("c_money", "money", "922337203685477.5807", "-922337203685477.5808", pa.decimal128(19, 4),
     [D("922337203685477.5807"), D("-922337203685477.5808")]),
    ("c_char", "char(5)", "'ab'", "'abcde'", pa.string(), ["ab   ", "abcde"]),
    ("c_varchar", "varchar(20)", "''", "'hello'", pa.string(), ["", "hello"]),
    ("c_nchar", "nchar(3)", "N'日本'", "N'abc'", pa.string(), ["日本 ", "abc"]),
    ("c_nvarchar", "nvarchar(50)", "N'Ünïcödé ñ'", "N'日本語テキスト'", pa.string(), ["Ünïcödé ñ", "日本語テキスト"]),
    ("c_nvarchar_max", "nvarchar(max)", "?", "N''", pa.string(), ["é" * 5000, ""]),
    ("c_varchar_max", "varchar(max)", "?", "'y'", pa.string(), ["x" * 9000, "y"]),
    ("c_binary", "binary(4)", "0x00010203", "0xFFFFFFFF", pa.binary(), [b"\x00\x01\x02\x03", b"\xff" * 4]),
    ("c_varbinary", "varbinary(10)", "0x", "0xDEADBEEF", pa.binary(), [b"", b"\xde\xad\xbe\xef"]),
    ("c_varbinary_max", "varbinary(max)", "0x0102", "0x", pa.binary(), [b"\x01\x02", b""]),
    ("c_date", "date", "'0001-01-01'", "'9999-12-31'", pa.date32(), [dt.date(1, 1, 1), dt.date(9999, 12, 31)]),
    ("c_time", "time(7)", "'00:00:00'", "'23:59:59.9999999'", pa.time64("ns"), [0, 86_399_999_999_900]),
    ("c_datetime", "datetime", "'1753-01-01 00:00:00'", "'2024-02-29 12:34:56.500'", pa.timestamp("ms"),
     [dt.datetime(1753, 1, 1), dt.datetime(2024, 2, 29, 12, 34, 56, 500000)]),
    ("c_datetime2_3", "datetime2(3)", "'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999'", pa.timestamp("us"),
     [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999000)]),
    # datetime2(7) inside 1677-2262 under "auto": nanoseconds, the 100 ns digit kept
    ("c_datetime2_7", "datetime2(7)", "'2024-01-01 00:00:00.1234567'", "'1900-06-15 08:00:00.0000001'",
     pa.timestamp("ns"), [1704067200123456700, -2194703999999999900]),
    # sentinel dates without a 100 ns digit under "auto": microseconds, full range
    ("c_sentinel_us", "datetime2(7)", "'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", pa.timestamp("us"),
     [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)]),
    # sentinel dates with a 100 ns digit: the per-column option "string" keeps them exactly
    ("c_sentinel_text", "datetime2(7)", "'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.9999999'", pa.string(),
     ["0001-01-01 00:00:00.0000000", "9999-12-31 23:59:59.9999999"]),
    ("c_dto", "datetimeoffset(7)", "'2024-01-02 03:04:05.1234567 +05:30'", "'2000-01-01 00:00:00 -08:00'",
     pa.timestamp("ns", tz="UTC"), [1704144845123456700, 946713600000000000]),
    ("c_guid", "uniqueidentifier", "'6F9619FF-8B86-D011-B42D-00C04FC964FF'", "'00000000-0000-0000-0000-000000000000'",
     pa.string(), ["6F9619FF-8B86-D011-B42D-00C04FC964FF", "00000000-0000-0000-0000-000000000000"]),
]


def seed_all_types(database: Any) -> None:
    columns = ", ".join(f"[{name}] {sql_type} NULL" for name, sql_type, *_ in ALL_TYPES)
    with database.connect() as connection:
        cursor = connection.cursor()
        cursor.execute(f"CREATE TABLE dbo.all_types (id int NOT NULL PRIMARY KEY, {columns})")
        names = ", ".join(f"[{name}]" for name, *_ in ALL_TYPES)
        for row_id, index in ((1, 2), (2, 3)):
            values = ", ".join(spec[index] for spec in ALL_TYPES)
            # long (max) values go in as bound parameters, in column order
            params = [spec[5][index - 2] for spec in ALL_TYPES if spec[index] == "?"]
            cursor.execute(f"INSERT INTO dbo.all_types (id, {names}) VALUES ({row_id}, {values})", *params)
        cursor.execute("INSERT INTO dbo.all_types (id) VALUES (3)")


def expected_all_types() -> pa.Table:
    arrays = {"id": pa.array([1, 2, 3], pa.int32())}
    for name, _sql, _a, _b, arrow_type, values in ALL_TYPES:
        storage = pa.int64() if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns" else None
        if pa.types.is_time64(arrow_type):
            storage = pa.int64()
        array = pa.array([*values, None], storage or arrow_type)
        arrays[name] = array.cast(arrow_type) if storage is not None else array
    return pa.table(arrays)


def config_for(sqlserver: Any, database: str, destination: dict[str, Any], *, task: str = "t",
               tables: list[Any] | None = None, **task_options: Any) -> dict[str, Any]:
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
        destination["url"], endpoint_url=destination.get("endpoint_url"), region="us-east-1",
        access_key_id_env=destination.get("access_key_id_env"),
        secret_access_key_env=destination.get("secret_access_key_env"),
    )
    partitions = sorted(info.path for info in location.fs.get_file_info(
        __import__("pyarrow.fs").fs.FileSelector(location.path(table_dir))) if info.type.name == "Directory")
    assert len(partitions) == 1, partitions
    with location.fs.open_input_stream(f"{partitions[0]}/_manifest.json") as handle:
        manifest = json.loads(handle.read())
    return read_partition(location.fs, partitions[0]), manifest


def assert_same(actual: pa.Table, expected: pa.Table) -> None:
    """Every column has the expected type and values; lists every mismatch at once."""
    assert actual.column_names == expected.column_names
    problems = []
    for name in expected.column_names:
        got, want = actual.column(name).combine_chunks(), expected.column(name).combine_chunks()
        if got.type != want.type:
            problems.append(f"{name}: type {got.type} != {want.type}")
        elif not got.equals(want):
            problems.append(f"{name}: {got.to_pylist()!r:.300} != {want.to_pylist()!r:.300}")
    assert not problems, "\n".join(problems)


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
    config_path = write_config(tmp_path, config_for(sqlserver, sqlserver_db.name, destination))
    outcome = run_job(job="t_full_load", config_path=config_path, home=dagster_home(tmp_path),
                      password=sqlserver.password)
    assert outcome.ok, outcome.output[-6000:]

    table, manifest = read_back(destination, f"{sqlserver_db.name}/dbo/all_types")
    assert manifest["format"] == file_format
    assert_same(table.sort_by("id"), expected_all_types())

    # progress lines and materialization metadata
    assert "dbo.all_types: 3 / ~3 rows (100%)" in outcome.output
    events = [m for m in materializations(outcome.dagster_home) if m.asset_key.path == ["t", "dbo", "all_types"]]
    assert len(events) == 1
    metadata = events[0].metadata
    assert metadata["dagster/row_count"].value == 3
    schema_columns = {c.name: c for c in metadata["dagster/column_schema"].value.columns}
    assert "datetime2(7)" in (schema_columns["c_datetime2_7"].description or "")
    for key in ("bytes", "files", "duration_s", "rows_per_s", "source_row_estimate"):
        assert key in metadata, key
    assert events[0].partition == manifest["partition_key"]
    assert events[0].partition.endswith("-full")


def test_wrong_password_fails_clearly_and_writes_nothing(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    seed_all_types(sqlserver_db)
    destination = s3_destination(bucket, moto_s3.endpoint_url)
    config_path = write_config(tmp_path, config_for(sqlserver, sqlserver_db.name, destination))
    wrong = "Not-The-Password-8812"
    outcome = run_job(job="t_full_load", config_path=config_path, home=dagster_home(tmp_path), password=wrong)
    assert not outcome.ok
    assert "login failed for user" in outcome.output
    assert "DTAAS_TEST_SOURCE_PASSWORD" in outcome.output
    assert wrong not in outcome.output
    assert "Contents" not in moto_s3.client.list_objects_v2(Bucket=bucket)


def test_unreachable_server_fails_clearly_and_writes_nothing(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    destination = s3_destination(bucket, moto_s3.endpoint_url)
    config = config_for(sqlserver, sqlserver_db.name, destination)
    config["sources"]["src"]["port"] = closed_port
    outcome = run_job(job="t_full_load", config_path=write_config(tmp_path, config),
                      home=dagster_home(tmp_path), password=sqlserver.password)
    assert not outcome.ok
    assert f"cannot reach SQL Server source 'src' at {sqlserver.host}:{closed_port}" in outcome.output
    assert "Contents" not in moto_s3.client.list_objects_v2(Bucket=bucket)


def test_missing_table_names_it_and_suggests_the_right_one(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    seed_all_types(sqlserver_db)
    destination = s3_destination(bucket, moto_s3.endpoint_url)
    config = config_for(sqlserver, sqlserver_db.name, destination, tables=["dbo.all_typez"])
    outcome = run_job(job="t_full_load", config_path=write_config(tmp_path, config),
                      home=dagster_home(tmp_path), password=sqlserver.password)
    assert not outcome.ok
    assert "table dbo.all_typez not found in source 'src'" in outcome.output
    assert "did you mean dbo.all_types?" in outcome.output
    assert "Contents" not in moto_s3.client.list_objects_v2(Bucket=bucket)


def test_table_without_primary_key_fails_when_mode_needs_one(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    with sqlserver_db.connect() as connection:
        connection.execute("CREATE TABLE dbo.heap (a int, b nvarchar(10))")
        connection.execute("INSERT INTO dbo.heap VALUES (1, N'x'), (2, N'y')")
    destination = s3_destination(bucket, moto_s3.endpoint_url)
    config = config_for(sqlserver, sqlserver_db.name, destination, tables=["dbo.heap"], mode="full_load_and_cdc")
    outcome = run_job(job="t_full_load", config_path=write_config(tmp_path, config),
                      home=dagster_home(tmp_path), password=sqlserver.password)
    assert not outcome.ok
    assert "table dbo.heap in source 'src' has no primary key" in outcome.output
    assert "primary_key" in outcome.output
    assert "Contents" not in moto_s3.client.list_objects_v2(Bucket=bucket)


@pytest.mark.double_only
def test_connection_dropped_mid_table_is_retried_and_the_retry_starts_clean(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, bucket: str, tmp_path: Path
) -> None:
    rows = 10_000
    sqlserver_db.seed_table(
        "dbo", "big",
        pa.table({"id": pa.array(range(rows), pa.int32()), "label": pa.array([f"row {i}" for i in range(rows)])}),
        columns={"id": "int", "label": "nvarchar(20)"}, primary_key=["id"],
    )
    # The first full read of dbo.big loses its connection after 6,000 rows, when
    # three 2,000-row files have already been written; the retry must not keep them.
    sqlserver.control.drop_after_rows(6_000, matching=r"FROM \[dbo\]\.\[big\]", times=1)
    destination = s3_destination(bucket, moto_s3.endpoint_url)
    config = config_for(sqlserver, sqlserver_db.name, destination, tables=["dbo.big"],
                        batch={"rows": 1_000}, file_size={"rows": 2_000},
                        retry={"max_retries": 2, "delay_seconds": 0.5, "backoff": "exponential", "jitter": "none"})
    try:
        outcome = run_job(job="t_full_load", config_path=write_config(tmp_path, config),
                          home=dagster_home(tmp_path), password=sqlserver.password)
    finally:
        sqlserver.control.clear_faults()
    assert outcome.ok, outcome.output[-6000:]
    assert "STEP_UP_FOR_RETRY" in outcome.output
    # the truncated first read was caught by comparing with SQL Server's own row count
    assert "stopped after 6,000 rows" in outcome.output

    table, manifest = read_back(destination, f"{sqlserver_db.name}/dbo/big")
    assert table.num_rows == rows == manifest["total_rows"]
    assert sorted(table.column("id").to_pylist()) == list(range(rows))
    listed = {entry["path"].rsplit("/", 1)[-1] for entry in manifest["files"]}
    stored = {obj["Key"].rsplit("/", 1)[-1]
              for obj in moto_s3.client.list_objects_v2(Bucket=bucket, Prefix="lake/")["Contents"]
              if "/part-" in obj["Key"]}
    assert stored == listed and len(listed) == 5
