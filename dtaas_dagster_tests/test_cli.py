"""The `dtaas` command line: preflight and table listing against the SQL Server fixture."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from dtaas_dagster_tests.runs import PASSWORD_ENV, source_config, write_config


def _dtaas(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dtaas_dagster.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _setup(sqlserver: Any, sqlserver_db: Any, tmp_path: Path, tables: list[str]) -> tuple[Path, dict[str, str]]:
    sqlserver_db.seed_table("dbo", "orders", pa.table({"id": pa.array([1, 2, 3], pa.int32())}), primary_key=["id"])
    config = {
        "sources": {"src": source_config(sqlserver, sqlserver_db.name)},
        "destinations": {"lake": {"type": "s3", "url": f"file://{tmp_path}/lake"}},
        "tasks": {"t": {"source": "src", "destination": "lake", "tables": tables}},
    }
    return write_config(tmp_path, config), dict(os.environ, **{PASSWORD_ENV: sqlserver.password})


def test_check_describes_every_table_and_exits_zero(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    config_path, env = _setup(sqlserver, sqlserver_db, tmp_path, ["dbo.orders"])
    result = _dtaas("check", "--config", str(config_path), env=env)
    assert result.returncode == 0, result.stderr
    assert "snapshot isolation allowed" in result.stdout
    assert "ok dbo.orders: 1 columns, ~3 rows, key ['id']" in result.stdout


def test_check_names_a_missing_table_and_exits_one(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    config_path, env = _setup(sqlserver, sqlserver_db, tmp_path, ["dbo.ordres"])
    result = _dtaas("check", "--config", str(config_path), env=env)
    assert result.returncode == 1
    assert "table dbo.ordres not found in source 'src'" in result.stderr and "did you mean dbo.orders?" in result.stderr


def test_tables_lists_row_estimates(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    config_path, env = _setup(sqlserver, sqlserver_db, tmp_path, ["dbo.orders"])
    result = _dtaas("tables", "--config", str(config_path), env=env)
    assert result.returncode == 0, result.stderr
    assert "1 tables" in result.stdout and "dbo.orders" in result.stdout and "~3 rows" in result.stdout
