"""Writers, manifest and readers of dtaas_dagster.destinations.files on file:// and moto S3."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from dtaas_dagster.destinations.commit import write_partition
from dtaas_dagster.destinations.files import WriteOptions, new_load_id, read_partition
from dtaas_dagster.destinations.location import (
    Location,
    open_location,
    render_partition_dir,
)
from dtaas_dagster.manifest import MANIFEST_NAME, ManifestNotFoundError, read_manifest
from dtaas_dagster_tests.destinations.s3_samples import (
    all_types_table,
    numbered_table,
    stream_of,
    varied_table,
)
from dtaas_dagster_tests.s3_fixtures import MotoS3, S3Credentials


@pytest.fixture(params=["file", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "file":
        return open_location(f"file://{tmp_path}/lake")
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    bucket: str = request.getfixturevalue("s3_bucket")
    creds: S3Credentials = request.getfixturevalue("s3_credentials")
    return open_location(
        f"s3://{bucket}/lake",
        endpoint_url=moto.endpoint_url,
        access_key_id_env=creds.key_id_env,
        secret_access_key_env=creds.secret_env,
    )


def _write(location: Location, table: pa.Table, options: WriteOptions, **stream_kw: object) -> object:
    part_dir = location.path("sales/dbo/Orders/p1")
    return write_partition(
        location.fs,
        part_dir,
        stream_of(table, **stream_kw),
        options,
        load_id=new_load_id("run12345"),
        run_id="run12345",
    )


def _names(location: Location, part_dir: str) -> set[str]:
    infos = location.fs.get_file_info(pafs.FileSelector(part_dir, allow_not_found=True))
    return {i.base_name for i in infos if i.type == pafs.FileType.File}


def _read_text(location: Location, path: str, codec: str | None = None) -> str:
    with location.fs.open_input_stream(path, compression=codec) as f:
        return f.read().decode("utf-8")


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [
        ("parquet", None),
        ("parquet", "zstd"),
        ("parquet", "none"),
        ("csv", None),
        ("csv", "gzip"),
        ("jsonl", None),
        ("jsonl", "zstd"),
    ],
)
def test_round_trip_is_exact_for_every_source_type(location: Location, fmt: str, compression: str | None) -> None:
    table = all_types_table()
    result = _write(location, table, WriteOptions(format=fmt, compression=compression), batch_rows=3)

    back = read_partition(location.fs, result.partition_dir)

    assert back.schema.equals(table.schema)
    assert back.equals(table), f"{fmt}/{compression}: {back.to_pydict()} != {table.to_pydict()}"
    assert result.rows == 4 and result.files == 1
    suffix = {"gzip": ".gz", "zstd": ".zst"}.get(compression or "", "") if fmt != "parquet" else ""
    assert result.manifest["files"][0]["path"].endswith(f".{fmt}{suffix}")


def test_parquet_keeps_units_row_groups_and_statistics(tmp_path: Path) -> None:
    location = open_location(f"file://{tmp_path}")
    table = numbered_table(300_000).append_column("ts_ns", pa.array(range(300_000), pa.timestamp("ns")))
    result = _write(location, table, WriteOptions(row_group_rows=128 * 1024), batch_rows=50_000)

    meta = pq.ParquetFile(f"{result.partition_dir}/{result.manifest['files'][0]['path']}").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [131072, 131072, 37856]
    assert meta.row_group(0).column(0).statistics.has_min_max
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    assert meta.schema.to_arrow_schema().field("ts_ns").type == pa.timestamp("ns")


def test_csv_text_form_is_the_documented_one(tmp_path: Path) -> None:
    location = open_location(f"file://{tmp_path}")
    result = _write(location, all_types_table(), WriteOptions(format="csv"), batch_rows=4)

    lines = _read_text(location, f"{result.partition_dir}/{result.manifest['files'][0]['path']}").split("\n")
    assert lines[0].startswith('"i8","i16","i32","i64","u8","flag"')
    assert lines[1].split(",")[:6] == ["1", "2", "3", "4", "5", "true"]
    assert '"1.5000000000","12.3400","plain","ABAQ"' not in lines[1]  # sanity: base64 below
    assert (
        '"1.5000000000","12.3400","plain","AP8Q",2024-02-29,00:00:00.000000001,2024-01-02 03:04:05.000006' in lines[1]
    )
    assert ',"","",0001-01-01,' in lines[2]  # empty string and empty binary are quoted
    assert lines[3] == "," * 15  # the all-null row: every field empty and unquoted
    assert '"0.0000000001","0.0000"' in lines[4]  # plain decimals, never 1E-10


def test_jsonl_text_form_is_the_documented_one(tmp_path: Path) -> None:
    location = open_location(f"file://{tmp_path}")
    table = all_types_table()
    nan = pa.array([float("nan"), float("inf"), None, float("-inf")], pa.float64())
    table = table.append_column("special", nan)
    result = _write(location, table, WriteOptions(format="jsonl"))

    text = _read_text(location, f"{result.partition_dir}/{result.manifest['files'][0]['path']}")
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows[0]["d38"] == "1.5000000000" and rows[3]["d38"] == "0.0000000001"
    assert rows[0]["b"] == base64.b64encode(b"\x00\xff\x10").decode()
    assert rows[1]["ts_us"] == "0001-01-01T00:00:00.000000"
    assert rows[0]["ts_ns"] == "2023-11-14T22:13:20.123456789"
    assert rows[0]["tod"] == "00:00:00.000000001" and rows[0]["day"] == "2024-02-29"
    assert rows[1]["s"] == "" and rows[2]["s"] is None and rows[3]["s"] == table["s"][3].as_py()
    assert rows[1]["i64"] == -(2**63) and rows[0]["flag"] is True
    assert [r["special"] for r in rows] == ["NaN", "Infinity", None, "-Infinity"]
    assert all(v is None for v in rows[2].values())

    back = read_partition(location.fs, result.partition_dir)
    assert back.drop_columns(["special"]).equals(all_types_table())
    assert str(back["special"].to_pylist()) == str([float("nan"), float("inf"), None, float("-inf")])


def test_files_split_by_rows(location: Location) -> None:
    table = numbered_table(10_000)
    result = _write(location, table, WriteOptions(file_max_rows=2_500), batch_rows=1_000)

    assert [f["rows"] for f in result.manifest["files"]] == [2_500] * 4
    assert _names(location, result.partition_dir) == {f["path"] for f in result.manifest["files"]} | {MANIFEST_NAME}
    assert read_partition(location.fs, result.partition_dir).equals(table)


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [
        ("parquet", None),
        ("parquet", "zstd"),
        ("parquet", "none"),
        ("csv", None),
        ("csv", "gzip"),
        ("jsonl", None),
        ("jsonl", "zstd"),
    ],
)
@pytest.mark.parametrize("batch_rows", [20_000, 500])
def test_files_split_by_bytes_land_within_a_quarter_of_the_setting(
    tmp_path: Path, fmt: str, compression: str | None, batch_rows: int
) -> None:
    # Before: Arrow bytes were counted as file bytes, so Parquet files came out at 0.5-0.9 of
    # the setting and CSV / JSON lines at up to 2.6 times it (a whole batch went into one file).
    _check_split_by_bytes(open_location(f"file://{tmp_path}"), fmt, compression, batch_rows)


@pytest.mark.parametrize(("fmt", "compression"), [("parquet", None), ("csv", "gzip")])
def test_files_split_by_bytes_on_s3_too(location: Location, fmt: str, compression: str | None) -> None:
    _check_split_by_bytes(location, fmt, compression, 20_000)


def _check_split_by_bytes(location: Location, fmt: str, compression: str | None, batch_rows: int) -> None:
    target = 256 * 1024
    table = varied_table(40_000)
    options = WriteOptions(format=fmt, compression=compression, file_max_rows=None, file_max_bytes=target)
    result = _write(location, table, options, batch_rows=batch_rows)

    sizes = [f["bytes"] / target for f in result.manifest["files"]]
    assert len(sizes) >= 3, sizes
    assert all(0.75 <= size <= 1.25 for size in sizes[:-1]) and 0 < sizes[-1] <= 1.25, sizes
    assert [f["bytes"] for f in result.manifest["files"]] == [
        location.fs.get_file_info(f"{result.partition_dir}/{f['path']}").size for f in result.manifest["files"]
    ]
    assert read_partition(location.fs, result.partition_dir).equals(table)


def test_csv_files_split_by_bytes_exactly_at_the_limit(tmp_path: Path) -> None:
    location = open_location(f"file://{tmp_path}")
    table = numbered_table(10_000, start=10_000)  # fixed-width rows: every row has the same CSV size
    one_batch = _write(location, table.slice(0, 1_000), WriteOptions(format="csv")).bytes
    result = _write(location, table, WriteOptions(format="csv", file_max_bytes=int(one_batch * 2.5)), batch_rows=1_000)

    # a file ends where the next row would pass the limit, inside a batch if need be
    assert [f["rows"] for f in result.manifest["files"]] == [2_500, 2_500, 2_500, 2_500]


def test_failed_load_leaves_previous_load_intact(location: Location) -> None:
    first = _write(location, numbered_table(5_000), WriteOptions(file_max_rows=1_000), batch_rows=1_000)
    manifest_before = read_manifest(location.fs, first.partition_dir)

    with pytest.raises(RuntimeError, match="injected"):
        _write(
            location,
            numbered_table(5_000, start=100),
            WriteOptions(file_max_rows=1_000),
            batch_rows=1_000,
            fail_after=2,
        )

    assert read_manifest(location.fs, first.partition_dir) == manifest_before
    assert _names(location, first.partition_dir) == {f["path"] for f in manifest_before["files"]} | {MANIFEST_NAME}
    assert read_partition(location.fs, first.partition_dir).equals(numbered_table(5_000))


def test_failed_first_load_leaves_nothing_that_looks_like_a_load(location: Location) -> None:
    with pytest.raises(RuntimeError, match="injected"):
        _write(location, numbered_table(3_000), WriteOptions(file_max_rows=500), batch_rows=1_000, fail_after=2)

    part_dir = location.path("sales/dbo/Orders/p1")
    assert _names(location, part_dir) == set()
    with pytest.raises(ManifestNotFoundError, match="has no manifest.*never loaded or its load did not finish"):
        read_partition(location.fs, part_dir, what="partition p1 of table sales.dbo.Orders")


def test_rerun_replaces_the_partition(location: Location) -> None:
    first = _write(location, numbered_table(3_000), WriteOptions(file_max_rows=1_000), batch_rows=1_000)
    second = _write(location, numbered_table(1_500, start=7), WriteOptions(file_max_rows=1_000), batch_rows=500)

    assert set(second.removed) == {f["path"] for f in first.manifest["files"]}
    assert _names(location, second.partition_dir) == {f["path"] for f in second.manifest["files"]} | {MANIFEST_NAME}
    assert read_partition(location.fs, second.partition_dir).equals(numbered_table(1_500, start=7))


def test_readers_ignore_unlisted_files_and_next_load_removes_them(location: Location) -> None:
    first = _write(location, numbered_table(100), WriteOptions())
    stray = f"{first.partition_dir}/part-killedrun-a0-deadbeef-00001.parquet"
    pq.write_table(numbered_table(10, start=999), stray, filesystem=location.fs)

    assert read_partition(location.fs, first.partition_dir).equals(numbered_table(100))
    second = _write(location, numbered_table(100), WriteOptions())
    assert "part-killedrun-a0-deadbeef-00001.parquet" in second.removed


def test_empty_partition_has_manifest_and_schema(location: Location) -> None:
    table = all_types_table().slice(0, 0)
    result = _write(location, table, WriteOptions(format="csv"))

    assert result.files == 0 and result.rows == 0
    back = read_partition(location.fs, result.partition_dir)
    assert back.num_rows == 0 and back.schema.equals(table.schema)


def test_manifest_describes_the_load(tmp_path: Path) -> None:
    location = open_location(f"file://{tmp_path}")
    result = _write(location, all_types_table(), WriteOptions(format="jsonl", compression="gzip"))

    m = result.manifest
    assert m["table"] == {"database": "sales", "schema": "dbo", "name": "Orders"}
    assert (m["partition_key"], m["run_id"], m["format"], m["compression"]) == (
        "2024-01-01",
        "run12345",
        "jsonl",
        "gzip",
    )
    assert m["total_rows"] == 4 and m["source_row_estimate"] == 4
    assert (
        m["total_bytes"]
        == m["files"][0]["bytes"]
        == (Path(result.partition_dir) / m["files"][0]["path"]).stat().st_size
    )
    assert m["columns"][0] == {"name": "i8", "type": "int8", "nullable": True, "source_type": "smallint"}
    assert m["load_id"] in m["files"][0]["path"]
    assert not list(Path(result.partition_dir).glob("*.tmp*"))


def test_path_template_values_cannot_escape_the_base() -> None:
    variables = {"sourceTableName": "../../etc", "partitionKey": "2024-01-01T00:00/x", "tenant": "..", "p": "100%"}
    rendered = render_partition_dir("data/$tenant/${sourceTableName}/$partitionKey/$p", variables)
    assert rendered == "data/%2E%2E/..%2F..%2Fetc/2024-01-01T00%3A00%2Fx/100%25"
    assert render_partition_dir("$t/x", {"t": "Zürich 東京"}) == "Zürich%20東京/x"
    # one-to-one: keys that differ only in unsafe characters never share a directory
    assert render_partition_dir("$k", {"k": "a:b"}) != render_partition_dir("$k", {"k": "a_b"})


def test_path_template_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"uses \$customer.*known variables: sourceTableName"):
        render_partition_dir("data/$customer", {"sourceTableName": "t"})
    with pytest.raises(ValueError, match="not a relative directory"):
        render_partition_dir("../$t", {"t": "x"})
    with pytest.raises(ValueError, match=r"variable \$tenant is empty"):
        render_partition_dir("data/$tenant/x", {"tenant": "", "unused": ""})


def test_options_are_validated_with_the_fix() -> None:
    with pytest.raises(ValueError, match="snappy' is for parquet only"):
        WriteOptions(format="csv", compression="snappy")
    with pytest.raises(ValueError, match="format 'xml' is not one of parquet, csv, jsonl"):
        WriteOptions(format="xml")


def test_s3_credentials_come_from_named_env_vars_and_never_leak(
    moto_s3: MotoS3, s3_bucket: str, s3_credentials: S3Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = {
        "endpoint_url": moto_s3.endpoint_url,
        "access_key_id_env": s3_credentials.key_id_env,
        "secret_access_key_env": s3_credentials.secret_env,
    }
    loc = open_location(f"s3://{s3_bucket}/x", **kwargs)
    _write(loc, numbered_table(10), WriteOptions())
    assert moto_s3.client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 2

    missing_bucket = open_location("s3://no-such-bucket-dtaas/x", **kwargs)
    # the writer's own error (the IO manager turns it into "the bucket does not exist" with the
    # fix: test_table_steps.py::test_destination_errors_fail_at_once_and_name_the_destination)
    with pytest.raises(OSError, match="no-such-bucket-dtaas.*NO_SUCH_BUCKET") as failure:
        _write(missing_bucket, numbered_table(10), WriteOptions())
    for secret in (s3_credentials.key_id, s3_credentials.secret):
        assert secret not in str(failure.value) and secret not in repr(failure.value)

    monkeypatch.delenv(s3_credentials.secret_env)
    with pytest.raises(ValueError, match="DTAAS_TEST_S3_SECRET', which is not set") as unset:
        open_location(f"s3://{s3_bucket}/x", **kwargs)
    assert s3_credentials.key_id not in str(unset.value)


def test_relative_file_url_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    location = open_location("file://out/lake")
    assert location.base == str(tmp_path / "out/lake") and location.url(location.base) == f"file://{tmp_path}/out/lake"
    result = _write(location, numbered_table(5), WriteOptions(format="jsonl"))
    assert (tmp_path / "out/lake/sales/dbo/Orders/p1/_manifest.json").exists()
    assert read_partition(location.fs, result.partition_dir).equals(numbered_table(5))


def test_parquet_files_hold_the_types_the_manifest_names_for_every_source_type(tmp_path: Path) -> None:
    """One truth: what the manifest says is what a Parquet reader sees (smalldatetime was [s] vs [ms])."""
    from dtaas_dagster.sqlserver.types import SourceColumn, arrow_type

    names = [
        "tinyint",
        "smallint",
        "int",
        "bigint",
        "bit",
        "real",
        "float",
        "money",
        "smallmoney",
        "date",
        "datetime",
        "smalldatetime",
        "uniqueidentifier",
        "nvarchar",
        "varbinary",
        "time",
    ]
    columns = [SourceColumn(f"c_{n}", n, char_length=10, datetime_precision=7) for n in names]
    columns += [
        SourceColumn("c_decimal", "decimal", precision=38, scale=10),
        SourceColumn("c_dt2_3", "datetime2", datetime_precision=3),
        SourceColumn("c_dt2_7", "datetime2", datetime_precision=7),
        SourceColumn("c_dto_7", "datetimeoffset", datetime_precision=7),
    ]
    schema = pa.schema([pa.field(c.name, arrow_type(c, "timestamp_ns")) for c in columns])
    table = pa.Table.from_pylist([{}], schema=schema)  # one all-NULL row: the types are the point
    location = open_location(f"file://{tmp_path}")
    result = _write(location, table, WriteOptions())

    written = pq.ParquetFile(f"{result.partition_dir}/{result.manifest['files'][0]['path']}").schema_arrow
    assert written.remove_metadata().equals(schema)
    assert read_partition(location.fs, result.partition_dir).schema.equals(schema)


def test_parquet_keeps_no_statistics_or_dictionary_for_long_value_columns(tmp_path: Path) -> None:
    """(max) / text columns: min/max statistics and dictionaries would copy the longest values
    (Parquet drops statistics over 4 KB from the file anyway); other columns keep both."""
    table = pa.table({"code": pa.array(["a", "b"] * 50), "notes": pa.array(["x" * 10_000, "y"] * 50)})
    location = open_location(f"file://{tmp_path}")
    stream = stream_of(table, batch_rows=100)
    stream.source_types = {"code": "nvarchar(20)", "notes": "nvarchar(max)"}
    result = write_partition(
        location.fs, location.path("t/p1"), stream, WriteOptions(), load_id=new_load_id("run1"), run_id="run1"
    )

    meta = pq.ParquetFile(f"{result.partition_dir}/{result.manifest['files'][0]['path']}").metadata.row_group(0)
    code, notes = meta.column(0), meta.column(1)
    assert code.is_stats_set and code.statistics.min == "a" and "RLE_DICTIONARY" in code.encodings
    assert not notes.is_stats_set and "RLE_DICTIONARY" not in notes.encodings
    assert read_partition(location.fs, result.partition_dir).equals(table)
