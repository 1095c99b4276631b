"""Re-runs, kill -9 and secrets, end to end through `dtaas load` (and `dagster job execute`).

Slow: each load is a real subprocess against the SQL Server fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.destinations.files import read_partition
from dtaas_dagster.destinations.location import open_location
from dtaas_dagster.manifest import MANIFEST_NAME
from dtaas_dagster_tests.runs import (
    PASSWORD_ENV,
    dagster_home,
    materializations,
    run_job,
    run_load,
    s3_destination,
    source_config,
    write_config,
)

pytestmark = pytest.mark.slow


def _config(sqlserver: Any, database: str, destination: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {
        "sources": {"src": source_config(sqlserver, database)},
        "destinations": {"dst": destination},
        "tasks": {
            "t": {"source": "src", "destination": "dst", "tables": ["dbo.big"], "retry": {"max_retries": 0}, **task}
        },
    }


SCHEMA = pa.schema([("id", pa.int32()), ("label", pa.string())])


def _table(ids: range, label: str = "v") -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int32()), "label": pa.array([f"{label}{i}" for i in ids], pa.string())})


def test_kill_9_mid_load_then_the_reader_and_the_next_run(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    rows = 1_500_000
    sqlserver_db.seed_table(
        "dbo", "big", _table(range(rows)), columns={"id": "int", "label": "nvarchar(20)"}, primary_key=["id"]
    )
    lake = tmp_path / "lake"
    config = _config(
        sqlserver,
        sqlserver_db.name,
        {"type": "s3", "url": f"file://{lake}"},
        batch={"rows": 20_000},
        file_size={"rows": 50_000},
    )
    config_path, home = write_config(tmp_path, config), dagster_home(tmp_path)
    env = dict(os.environ, DTAAS_CONFIG=str(config_path), DAGSTER_HOME=str(home), **{PASSWORD_ENV: sqlserver.password})
    process = subprocess.Popen(
        [sys.executable, "-m", "dtaas_dagster.cli", "load", "--task", "t", "--in-process"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list(lake.rglob("part-*")):
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "no file was written"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    [partition_dir] = {p.parent for p in lake.rglob("part-*")}
    assert not (partition_dir / MANIFEST_NAME).exists()
    leftovers = {p.name for p in partition_dir.glob("part-*")}
    assert leftovers and list((partition_dir / "_dtaas_loads").glob("*.json"))

    # the reader: the partition was never loaded, and it says so (it does not return half a load)
    from dagster import AssetKey, PythonObjectDagsterType, build_input_context

    any_type = PythonObjectDagsterType(object, name="AnyObject")

    from dtaas_dagster.destinations.s3 import S3IOManager
    from dtaas_dagster.manifest import ManifestNotFoundError

    manager = S3IOManager(url=f"file://{lake}")
    key = partition_dir.name
    with pytest.raises(ManifestNotFoundError, match="never loaded or its load did not finish"):
        manager.load_input(
            build_input_context(asset_key=AssetKey(["t", "dbo", "big"]), partition_key=key, dagster_type=any_type)
        )

    # the next run of the same partition loads it whole and removes the killed load's files
    again = run_load(task="t", config_path=config_path, home=home, password=sqlserver.password, partition=key)
    assert again.ok, again.output[-4000:]
    table = manager.load_input(
        build_input_context(asset_key=AssetKey(["t", "dbo", "big"]), partition_key=key, dagster_type=any_type)
    )
    assert table.num_rows == rows and table.column("id").to_pylist() == list(range(rows))
    manifest = json.loads((partition_dir / MANIFEST_NAME).read_text())
    assert {p.name for p in partition_dir.iterdir()} == {f["path"] for f in manifest["files"]} | {MANIFEST_NAME}
    assert not leftovers & {p.name for p in partition_dir.iterdir()}


def _bucket_objects(moto_s3: Any, bucket: str) -> dict[str, bytes]:
    listed = moto_s3.client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: moto_s3.client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_rerun_after_the_source_changed_replaces_the_partition_and_no_secret_leaks(
    sqlserver: Any, sqlserver_db: Any, moto_s3: Any, s3_bucket: str, s3_credentials: Any, tmp_path: Path
) -> None:
    sqlserver_db.seed_table(
        "dbo", "big", _table(range(1_000)), columns={"id": "int", "label": "nvarchar(20)"}, primary_key=["id"]
    )
    destination = s3_destination(s3_bucket, moto_s3.endpoint_url)
    config_path, home = (
        write_config(tmp_path, _config(sqlserver, sqlserver_db.name, destination)),
        dagster_home(tmp_path),
    )
    outputs = []
    first = run_load(task="t", config_path=config_path, home=home, password=sqlserver.password)
    outputs.append(first.output)
    assert first.ok, first.output[-4000:]
    [event] = materializations(home, ["t", "dbo", "big"])
    key = event.partition

    def expect(expected: pa.Table) -> None:
        location = open_location(
            destination["url"],
            endpoint_url=moto_s3.endpoint_url,
            access_key_id_env=s3_credentials.key_id_env,
            secret_access_key_env=s3_credentials.secret_env,
        )
        objects = _bucket_objects(moto_s3, s3_bucket)
        manifests = [k for k in objects if k.endswith(MANIFEST_NAME)]
        assert len(manifests) == 1, manifests
        directory = manifests[0].rsplit("/", 1)[0]
        table = read_partition(location.fs, f"{s3_bucket}/{directory}")
        assert table.sort_by("id").to_pylist() == expected.to_pylist()
        listed = {f["path"] for f in json.loads(objects[manifests[0]])["files"]}
        parts = {k.rsplit("/", 1)[-1] for k in objects if "/part-" in k}
        assert parts == listed  # nothing left of the replaced loads

    with sqlserver_db.connect() as connection:
        connection.execute("DELETE FROM dbo.big WHERE id < 100")
        connection.execute("UPDATE dbo.big SET label = N'changed' WHERE id = 500")
        connection.execute("INSERT INTO dbo.big (id, label) VALUES (5000, N'new')")
    changed = _table(range(100, 1_000)).to_pylist()
    changed[400]["label"] = "changed"
    expected = pa.Table.from_pylist([*changed, {"id": 5000, "label": "new"}], schema=SCHEMA)

    # 1) dtaas load --partition
    second = run_load(task="t", config_path=config_path, home=home, password=sqlserver.password, partition=key)
    outputs.append(second.output)
    assert second.ok, second.output[-4000:]
    expect(expected)
    # 2) dagster job execute with the partition tag, as the launchpad would name it
    with sqlserver_db.connect() as connection:
        connection.execute("DELETE FROM dbo.big WHERE id = 5000")
    third = run_job(
        job="t_tables",
        config_path=config_path,
        home=home,
        password=sqlserver.password,
        extra_args=["--tags", json.dumps({"dagster/partition": key})],
    )
    outputs.append(third.output)
    assert third.ok, third.output[-4000:]
    expect(pa.Table.from_pylist(changed, schema=SCHEMA))
    assert [e.partition for e in materializations(home, ["t", "dbo", "big"])] == [key, key, key]

    # a run that fails (wrong password) is scanned too
    failed = run_load(task="t", config_path=config_path, home=home, password="Wrong-Passw0rd-That-Leaks")
    outputs.append(failed.output)
    assert not failed.ok and "login failed" in failed.output

    secrets = [sqlserver.password, s3_credentials.secret, s3_credentials.key_id, "Wrong-Passw0rd-That-Leaks"]
    haystacks = {f"output {i}": text.encode() for i, text in enumerate(outputs)}
    haystacks.update({f"s3://{s3_bucket}/{k}": v for k, v in _bucket_objects(moto_s3, s3_bucket).items()})
    haystacks.update({str(p): p.read_bytes() for p in home.rglob("*") if p.is_file()})  # event log, run config
    for secret in secrets:
        leaks = [where for where, data in haystacks.items() if secret.encode() in data]
        assert leaks == [], f"a secret appears in {leaks}"


def test_two_loads_started_at_once_get_two_partitions_both_complete(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    rows = 20_000
    sqlserver_db.seed_table(
        "dbo", "big", _table(range(rows)), columns={"id": "int", "label": "nvarchar(20)"}, primary_key=["id"]
    )
    lake = tmp_path / "lake"
    config = _config(
        sqlserver,
        sqlserver_db.name,
        {"type": "s3", "url": f"file://{lake}"},
        batch={"rows": 2_000},
        file_size={"rows": 5_000},
    )
    config_path, home = write_config(tmp_path, config), dagster_home(tmp_path)
    env = dict(os.environ, DTAAS_CONFIG=str(config_path), DAGSTER_HOME=str(home), **{PASSWORD_ENV: sqlserver.password})
    command = [sys.executable, "-m", "dtaas_dagster.cli", "load", "--task", "t", "--in-process"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    keys = sorted(e.partition for e in materializations(home, ["t", "dbo", "big"]))
    assert len(set(keys)) == 2  # two partitions, not one shared directory
    for key in keys:
        directory = next(lake.rglob(f"{key}/_manifest.json")).parent
        table = read_partition(open_location(f"file://{directory}").fs, str(directory))
        assert table.num_rows == rows and sorted(table.column("id").to_pylist()) == list(range(rows))
