"""End to end: transforms from dtaas.yaml, edited for one run with `dagster job execute --config`.

A real `dtaas load` / `dagster job execute` subprocess against the SQL Server
fixture, writing to a local directory. Checks the data, the path rendered with
a static and a query variable, the metadata of what each run used, and that a
bad transform in the run config fails before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
import yaml

from dtaas_dagster.destinations.files import read_partition
from dtaas_dagster_tests.runs import dagster_home, materializations, run_job, run_load, source_config, write_config

pytestmark = pytest.mark.slow

YAML_TRANSFORMS = [
    {"type": "rename_column", "config": {"old_name": "ID", "new_name": "order_id"}},
    {"type": "filter_rows", "config": {"condition": "status = 'shipped' AND amount > 10"}},
    {"type": "add_column", "config": {"column_name": "ETLCustomerId", "value": "$CustomerId", "data_type": "bigint"}},
    {"type": "apply_function", "config": {"column_name": "status", "function": "upper"}},
    {"type": "drop_column", "config": {"column_name": "note"}},
]
EDITED = [
    {"type": "filter_rows", "config": {"condition": "amount <= 10"}},
    {"type": "concat_columns", "config": {"columns": ["status", "ID"], "new_column": "tag", "separator": "#"}},
]


def _seed(db: Any) -> None:
    db.seed_table(
        "dbo",
        "orders",
        pa.table(
            {
                "ID": pa.array([1, 2, 3, 4], pa.int32()),
                "status": ["shipped", "shipped", "open", "shipped"],
                "amount": pa.array([5, 50, 70, 99], pa.int32()),
                "note": ["a", "b", "c", "ünï"],
            }
        ),
        columns={"note": "nvarchar(20)", "status": "nvarchar(10)"},
        primary_key=["ID"],
    )
    db.seed_table(
        "dbo", "tenants", pa.table({"id": pa.array([12345], pa.int32()), "db": [db.name]}), primary_key=["id"]
    )


def _config(sqlserver: Any, db: Any, lake: Path) -> dict[str, Any]:
    return {
        "sources": {"src": source_config(sqlserver, db.name)},
        "destinations": {
            "dst": {
                "type": "s3",
                "url": f"file://{lake}",
                "path_template": "data/$CustomerId/$sourceTableName/$loadDate/$partitionKey",
            }
        },
        "variables": {
            "CustomerId": {"source": "src", "query": "SELECT id FROM dbo.tenants WHERE db = '$sourceDatabaseName'"}
        },
        "tasks": {
            "t": {
                "source": "src",
                "destination": "dst",
                "retry": {"max_retries": 0},
                "tables": [{"name": "dbo.orders", "transformations": YAML_TRANSFORMS}],
            }
        },
    }


def _partition(lake: Path) -> tuple[Path, pa.Table]:
    manifests = sorted(lake.rglob("_manifest.json"))
    assert len(manifests) == 1, manifests
    return manifests[0].parent, read_partition(pafs.LocalFileSystem(), str(manifests[0].parent))


def _metadata(home: Path) -> list[dict[str, Any]]:
    return [
        {k: getattr(v, "value", v) for k, v in m.metadata.items()}
        for m in materializations(home, ["t", "dbo", "orders"])
    ]


@pytest.mark.timeout(1200)
def test_yaml_transforms_then_edited_op_config_for_one_run(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    _seed(sqlserver_db)
    lake = tmp_path / "lake"
    config_path = write_config(tmp_path, _config(sqlserver, sqlserver_db, lake))
    first = run_load(task="t", config_path=config_path, home=dagster_home(tmp_path), password=sqlserver.password)
    assert first.ok, first.output[-4000:]
    directory, table = _partition(lake)
    key = directory.name
    assert directory.relative_to(lake).as_posix() == f"data/12345/dbo.orders/{key[:10]}/{key}"
    assert table.to_pylist() == [
        {"order_id": 2, "status": "SHIPPED", "amount": 50, "ETLCustomerId": 12345},
        {"order_id": 4, "status": "SHIPPED", "amount": 99, "ETLCustomerId": 12345},
    ]
    meta = _metadata(first.dagster_home)[-1]
    assert meta["dtaas/transforms"] == YAML_TRANSFORMS
    assert meta["dtaas/variables"]["CustomerId"] == "12345"
    assert meta["dtaas/variables"]["sourceTableName"] == "dbo.orders"
    assert meta["dtaas/filter_pushdown"]["where"] == "([status] = ? AND [amount] > CAST(? AS bigint))"
    assert meta["dtaas/filter_pushdown"]["parameters"] == ["shipped", "10"]

    # The same partition again, with the transforms edited for this run only.
    run_config = tmp_path / "run.yaml"
    run_config.write_text(
        yaml.safe_dump({"ops": {"t__dbo__orders": {"config": {"tables": {"dbo.orders": {"transformations": EDITED}}}}}})
    )
    second = run_job(
        job="t_tables",
        config_path=config_path,
        home=first.dagster_home,
        password=sqlserver.password,
        extra_args=["--config", str(run_config), "--tags", json.dumps({"dagster/partition": key})],
    )
    assert second.ok, second.output[-4000:]
    _, table = _partition(lake)
    assert table.to_pylist() == [{"ID": 1, "status": "shipped", "amount": 5, "note": "a", "tag": "shipped#1"}]
    assert _metadata(first.dagster_home)[-1]["dtaas/transforms"] == EDITED

    # The YAML is unchanged: the next load uses it again.
    third = run_job(
        job="t_tables",
        config_path=config_path,
        home=first.dagster_home,
        password=sqlserver.password,
        extra_args=["--tags", json.dumps({"dagster/partition": key})],
    )
    assert third.ok, third.output[-4000:]
    assert _partition(lake)[1].column("order_id").to_pylist() == [2, 4]


BAD_RUN_CONFIGS = [
    (
        [{"type": "drop_column", "config": {"column_name": "statsu"}}],
        "table dbo.orders: transformation #1 (drop_column): column_name 'statsu' is not a column here; did you mean",
    ),
    ([{"type": "uppercase", "config": {}}], "op config tables.dbo.orders.transformations[0]: unknown transform type"),
    (
        [{"type": "add_column", "config": {"column_name": "x", "value": "$Customer"}}],
        "value uses $Customer, which is not a variable; known variables:",
    ),
]


@pytest.mark.timeout(1200)
def test_a_bad_transform_in_the_run_config_fails_and_writes_nothing(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    _seed(sqlserver_db)
    lake = tmp_path / "lake"
    config_path = write_config(tmp_path, _config(sqlserver, sqlserver_db, lake))
    first = run_load(task="t", config_path=config_path, home=dagster_home(tmp_path), password=sqlserver.password)
    assert first.ok, first.output[-4000:]
    before = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*"))
    key = _partition(lake)[0].name
    for number, (transforms, message) in enumerate(BAD_RUN_CONFIGS):
        run_config = tmp_path / f"run{number}.yaml"
        run_config.write_text(
            yaml.safe_dump(
                {"ops": {"t__dbo__orders": {"config": {"tables": {"dbo.orders": {"transformations": transforms}}}}}}
            )
        )
        bad = run_job(
            job="t_tables",
            config_path=config_path,
            home=first.dagster_home,
            password=sqlserver.password,
            extra_args=["--config", str(run_config), "--tags", json.dumps({"dagster/partition": key})],
        )
        assert not bad.ok and message in bad.output, (message, bad.output[-3000:])
        assert sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*")) == before
        assert len(materializations(first.dagster_home, ["t", "dbo", "orders"])) == 1
