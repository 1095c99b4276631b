"""`dtaas check --observe`: columns, SQL Server types and the key on the asset page before any load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from dtaas_dagster_tests.runs import PASSWORD_ENV, dagster_home, source_config, write_config

pytestmark = pytest.mark.slow


def _check(config_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dtaas_dagster.cli", "check", "--config", str(config_path), "--observe"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_records_the_catalog_as_observations_before_the_first_load(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    sqlserver_db.seed_table(
        "dbo",
        "orders",
        pa.table({"order_id": [1, 2], "note": ["a", None], "total": [pa.scalar(1, pa.decimal128(18, 2))] * 2}),
        columns={"order_id": "int", "note": "nvarchar(40)", "total": "decimal(18,2)"},
        primary_key=["order_id"],
    )
    config = {
        "sources": {"src": source_config(sqlserver, sqlserver_db.name)},
        "destinations": {"dst": {"type": "s3", "url": f"file://{tmp_path}/lake"}},
        "tasks": {"t": {"source": "src", "destination": "dst", "tables": ["dbo.orders"]}},
    }
    config_path = write_config(tmp_path, config)
    home = dagster_home(tmp_path)
    done = _check(config_path, {"DAGSTER_HOME": str(home), PASSWORD_ENV: sqlserver.password})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recorded the columns of 1 table(s) as asset observations" in done.stdout

    key = dg.AssetKey(["t", "dbo", "orders"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert not instance.fetch_materializations(key, limit=1).records  # nothing loaded
        [record] = instance.fetch_observations(key, limit=5).records
    metadata = record.asset_observation.metadata
    columns = {c.name: c for c in metadata["dagster/column_schema"].value.columns}
    assert list(columns) == ["order_id", "note", "total"]
    assert "nvarchar(40)" in columns["note"].description and "decimal(18,2)" in columns["total"].description
    assert columns["total"].type == "decimal128(18, 2)"
    assert columns["order_id"].constraints.unique and not columns["order_id"].constraints.nullable
    assert metadata["primary_key"].value == ["order_id"]
    assert metadata["source_row_estimate"].value == 2


def test_observe_needs_the_instance(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run(
        [sys.executable, "-m", "dtaas_dagster.cli", "check", "--observe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--observe records into the Dagster instance: set DAGSTER_HOME" in done.stderr
