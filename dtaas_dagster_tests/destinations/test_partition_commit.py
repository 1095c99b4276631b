"""The partition commit (destinations/commit.py) on file:// and moto S3: concurrent loads of one
partition, dead loads' leftovers, incomplete multipart uploads, verification, and the reader's checks."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from dagster import AssetKey

from dtaas_dagster.destinations.commit import (
    LEASE_DIR,
    LEASE_TTL,
    PartitionVerificationError,
    verify_partition,
    write_partition,
)
from dtaas_dagster.destinations.files import WriteOptions, new_load_id, read_partition
from dtaas_dagster.destinations.location import Location, open_location
from dtaas_dagster.destinations.s3 import S3IOManager
from dtaas_dagster.manifest import MANIFEST_NAME, ManifestError, read_manifest
from dtaas_dagster.stream import TableStream
from dtaas_dagster_tests.destinations.s3_samples import TABLE, numbered_table, stream_of
from dtaas_dagster_tests.s3_fixtures import MotoS3, S3Credentials

ONE_ROW_FILES = WriteOptions(format="parquet", file_max_rows=1)


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


def _files(location: Location, directory: str) -> set[str]:
    infos = location.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True, recursive=True))
    return {i.path[len(directory) + 1 :] for i in infos if i.type == pafs.FileType.File}


def _paused_stream(table: pa.Table, *, before_second: threading.Event, first_done: threading.Event) -> TableStream:
    """One row per batch; after the first batch, waits for ``before_second``."""

    def batches() -> Iterator[pa.RecordBatch]:
        for index, batch in enumerate(table.to_batches(max_chunksize=1)):
            if index == 1:
                first_done.set()
                assert before_second.wait(60), "the other load never finished"
            yield batch

    return TableStream(table=TABLE, schema=table.schema, batches=batches(), partition_key="p1")


def test_two_loads_of_one_partition_at_once_are_harmless(location: Location) -> None:
    """B starts and commits while A is still writing: A's files survive B's cleanup, then A's
    commit wins; the partition is readable at every moment and holds exactly one load."""
    directory = location.path("sales/dbo/Orders/p1")
    slow, fast = numbered_table(3, start=100), numbered_table(2, start=200)
    b_done, a_started = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def load_a() -> None:
        results["a"] = write_partition(
            location.fs,
            directory,
            _paused_stream(slow, before_second=b_done, first_done=a_started),
            ONE_ROW_FILES,
            load_id=new_load_id("runaaaa"),
            run_id="runaaaa",
        )

    thread = threading.Thread(target=load_a)
    thread.start()
    assert a_started.wait(60)
    results["b"] = write_partition(
        location.fs,
        directory,
        stream_of(fast, batch_rows=1, partition_key="p1"),
        ONE_ROW_FILES,
        load_id=new_load_id("runbbbb"),
        run_id="runbbbb",
    )
    between = _files(location, directory)
    assert any(name.startswith("part-runaaaa") for name in between), "B deleted a file A is still writing"
    assert read_partition(location.fs, directory).equals(fast)  # B's commit is complete and readable
    b_done.set()
    thread.join(60)
    assert not thread.is_alive() and "a" in results
    assert read_partition(location.fs, directory).equals(slow)
    kept = read_manifest(location.fs, directory)
    assert kept["run_id"] == "runaaaa" and results["a"].superseded_by is None
    # exactly A's files and the manifest are left: B's files went with B's manifest, no lease is left
    assert _files(location, directory) == {f["path"] for f in kept["files"]} | {MANIFEST_NAME}


def _dead_load(location: Location, directory: str, *, heartbeat: dt.datetime, run_id: str = "deadrun") -> str:
    load_id = new_load_id(run_id)
    lease = {"load_id": load_id, "run_id": run_id, "heartbeat_at": heartbeat.isoformat()}
    location.fs.create_dir(f"{directory}/{LEASE_DIR}", recursive=True)
    with location.fs.open_output_stream(f"{directory}/{LEASE_DIR}/{load_id}.json") as out:
        out.write(json.dumps(lease).encode())
    with location.fs.open_output_stream(f"{directory}/part-{load_id}-00001.parquet") as out:
        out.write(b"half a parquet file from a killed load")
    return load_id


def test_a_killed_loads_leftovers_are_removed_by_the_next_load_only_when_it_is_dead(location: Location) -> None:
    directory = location.path("sales/dbo/Orders/p1")
    now = dt.datetime.now(dt.UTC)
    stale = _dead_load(location, directory, heartbeat=now - LEASE_TTL - dt.timedelta(minutes=1))
    finished = _dead_load(location, directory, heartbeat=now, run_id="finishedrun")
    alive = _dead_load(location, directory, heartbeat=now, run_id="liverun")
    result = write_partition(
        location.fs,
        directory,
        stream_of(numbered_table(2), partition_key="p1"),
        WriteOptions(),
        load_id=new_load_id("newrun"),
        run_id="newrun",
        run_finished=lambda run_id: run_id == "finishedrun",
    )
    left = _files(location, directory)
    assert f"part-{stale}-00001.parquet" not in left and f"part-{finished}-00001.parquet" not in left
    assert f"part-{alive}-00001.parquet" in left and f"{LEASE_DIR}/{alive}.json" in left
    assert {f"part-{stale}-00001.parquet", f"part-{finished}-00001.parquet"} <= set(result.removed)
    assert read_partition(location.fs, directory).equals(numbered_table(2))


def test_incomplete_multipart_uploads_of_dead_loads_are_aborted(
    moto_s3: MotoS3, s3_bucket: str, s3_credentials: S3Credentials
) -> None:
    location = open_location(
        f"s3://{s3_bucket}/lake",
        endpoint_url=moto_s3.endpoint_url,
        access_key_id_env=s3_credentials.key_id_env,
        secret_access_key_env=s3_credentials.secret_env,
    )
    directory = location.path("sales/dbo/Orders/p1")
    prefix = "lake/sales/dbo/Orders/p1"
    dead, live = new_load_id("killedrun"), new_load_id("liverun")
    for load in (dead, live):
        moto_s3.client.create_multipart_upload(Bucket=s3_bucket, Key=f"{prefix}/part-{load}-00001.parquet")
    write_partition(
        location.fs,
        directory,
        stream_of(numbered_table(2), partition_key="p1"),
        WriteOptions(),
        load_id=new_load_id("newrun"),
        run_id="newrun",
        run_finished=lambda run_id: run_id == "killedrun",
        abort_uploads=location.abort_dead_uploads,
    )
    uploads = moto_s3.client.list_multipart_uploads(Bucket=s3_bucket, Prefix=prefix + "/").get("Uploads", [])
    # no lease at all for either: both loads count as dead, and both uploads go
    assert uploads == []
    # a load with a live lease keeps its upload
    lease = {"load_id": live, "run_id": "liverun", "heartbeat_at": dt.datetime.now(dt.UTC).isoformat()}
    moto_s3.client.put_object(Bucket=s3_bucket, Key=f"{prefix}/{LEASE_DIR}/{live}.json", Body=json.dumps(lease))
    moto_s3.client.create_multipart_upload(Bucket=s3_bucket, Key=f"{prefix}/part-{live}-00001.parquet")
    write_partition(
        location.fs,
        directory,
        stream_of(numbered_table(1), partition_key="p1"),
        WriteOptions(),
        load_id=new_load_id("newrun"),
        run_id="newrun",
        run_finished=lambda run_id: False,
        abort_uploads=location.abort_dead_uploads,
    )
    uploads = moto_s3.client.list_multipart_uploads(Bucket=s3_bucket, Prefix=prefix + "/").get("Uploads", [])
    assert [u["Key"].rsplit("/", 1)[-1] for u in uploads] == [f"part-{live}-00001.parquet"]


def test_a_manifest_that_names_a_missing_file_is_never_reported_readable(location: Location) -> None:
    directory = location.path("sales/dbo/Orders/p1")
    result = write_partition(
        location.fs,
        directory,
        stream_of(numbered_table(4), batch_rows=1, partition_key="p1"),
        WriteOptions(file_max_rows=2),
        load_id=new_load_id("run1"),
        run_id="run1",
    )
    verify_partition(location.fs, directory, result.manifest)
    location.delete(f"{directory}/{result.manifest['files'][1]['path']}")
    with pytest.raises(PartitionVerificationError, match="is missing: the partition is not readable"):
        verify_partition(location.fs, directory, result.manifest)


def _manager(tmp_path: Path, **kw: Any) -> S3IOManager:
    return S3IOManager(url=f"file://{tmp_path}/lake", **kw)


def _stream(table: pa.Table, key: str, **variables: str) -> TableStream:
    return TableStream(
        table=TABLE,
        schema=table.schema,
        batches=iter(table.to_batches()),
        partition_key=key,
        variables={"partitionKey": key, **variables},
    )


def test_the_reader_refuses_a_manifest_of_another_partition(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    key = AssetKey(["t", "dbo", "Orders"])
    for partition, rows in (("p1", 1), ("p2", 2)):
        manager.write_stream(
            _stream(numbered_table(rows), partition), asset_key=key, partition_key=partition, run_id="run1"
        )
    # make p1's pointer name p2's directory, as a template without $partitionKey used to
    pointer = tmp_path / "lake/_dtaas/t/dbo/Orders/p1.json"
    body = json.loads(pointer.read_text())
    body["partition_dir"] = body["partition_dir"].replace("/p1", "/p2")
    pointer.write_text(json.dumps(body))
    with pytest.raises(ManifestError, match="belongs to partition 'p2', not 'p1'"):
        manager._read_one(manager._location(), key.path, "p1", "t/dbo/Orders")


def test_load_date_is_the_partitions_date_so_a_rerun_on_another_day_replaces_it(tmp_path: Path) -> None:
    manager = _manager(tmp_path, path_template="$sourceTableShortName/$loadDate/$partitionKey")
    key, partition = AssetKey(["t", "dbo", "Orders"]), "2026-01-05T101500Z-full-rabc123"
    for rows in (3, 1):
        manager.write_stream(
            _stream(numbered_table(rows), partition), asset_key=key, partition_key=partition, run_id=f"run{rows}"
        )
    manifests = sorted((tmp_path / "lake").rglob(MANIFEST_NAME))
    assert [m.parent.relative_to(tmp_path / "lake").as_posix() for m in manifests] == [
        "Orders/2026-01-05/2026-01-05T101500Z-full-rabc123"
    ]
    assert json.loads(manifests[0].read_text())["total_rows"] == 1


def test_a_rerun_into_another_directory_removes_the_previous_copy(tmp_path: Path) -> None:
    manager = _manager(tmp_path, path_template="customer=$customer/$sourceTableShortName/$partitionKey")
    key = AssetKey(["t", "dbo", "Orders"])
    manager.write_stream(
        _stream(numbered_table(3), "p1", customer="41"), asset_key=key, partition_key="p1", run_id="run1"
    )
    manager.write_stream(
        _stream(numbered_table(2), "p1", customer="42"), asset_key=key, partition_key="p1", run_id="run2"
    )
    manifests = sorted(m.relative_to(tmp_path / "lake").as_posix() for m in (tmp_path / "lake").rglob(MANIFEST_NAME))
    assert manifests == ["customer=42/Orders/p1/_manifest.json"]
    assert not list((tmp_path / "lake/customer=41").rglob("part-*"))
