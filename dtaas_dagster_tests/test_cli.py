"""The `dtaas` command line: preflight and table listing against the SQL Server fixture."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.runs import PASSWORD_ENV, source_config, write_config


def _dtaas(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dtaas_dagster.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


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


def test_check_refuses_what_a_load_would_refuse_and_reports_every_problem(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    sqlserver_db.seed_table("dbo", "orders", pa.table({"id": pa.array([1, 2, 3], pa.int32())}), primary_key=["id"])
    sqlserver_db.seed_table(
        "dbo", "lines", pa.table({"id": pa.array([1], pa.int32()), "v": pa.array(["x"])}), primary_key=["id"]
    )
    config = {
        "sources": {"src": source_config(sqlserver, sqlserver_db.name)},
        "destinations": {
            "lake": {"type": "s3", "url": f"file://{tmp_path}/lake"},
            "broken": {"type": "s3", "url": f"file://{tmp_path}/a_file/lake"},
        },
        "tasks": {
            "t": {
                "source": "src",
                "destination": "lake",
                "tables": [
                    {"name": "dbo.orders", "columns_include": ["id", "nope"], "primary_key": ["bad_key"]},
                    {"name": "dbo.lines", "columns_exclude": ["ID", "V"]},
                    {"name": "dbo.orders_x", "columns_exclude": ["gone"]},
                ],
            },
            "u": {"source": "src", "destination": "broken", "tables": ["dbo.lines"]},
        },
    }
    (tmp_path / "a_file").write_text("a file where a directory should be")
    env = dict(os.environ, **{PASSWORD_ENV: sqlserver.password})
    result = _dtaas("check", "--config", str(write_config(tmp_path, config)), env=env)
    assert result.returncode == 1
    for part in (
        "columns_include names nope",
        "primary_key names bad_key",  # both, for one table
        "columns_exclude excludes every column",
        "table dbo.orders_x not found in source 'src'",
        "destination broken (destinations.broken.url",
        "is a file, not a directory",
    ):
        assert part in result.stderr, part
    assert "Traceback" not in result.stderr


def test_check_says_which_password_variable_is_missing_without_a_traceback(tmp_path: Path) -> None:
    config = {
        "sources": {
            "src": {
                "host": "127.0.0.1",
                "port": 1,
                "database": "d",
                "user": "u",
                "password_env": "DTAAS_SURELY_UNSET_PASSWORD",
            }
        },
        "destinations": {"lake": {"type": "s3", "url": f"file://{tmp_path}/lake"}},
        "tasks": {"t": {"source": "src", "destination": "lake", "tables": ["dbo.x"]}},
    }
    env = {k: v for k, v in os.environ.items() if k != "DTAAS_SURELY_UNSET_PASSWORD"}
    result = _dtaas("check", "--config", str(write_config(tmp_path, config)), env=env)
    assert result.returncode != 0
    assert "DTAAS_SURELY_UNSET_PASSWORD" in result.stderr and "Traceback" not in result.stderr


def test_pools_sets_each_servers_pool_to_its_max_concurrent_reads(tmp_path: Path) -> None:
    from dtaas_dagster_tests.runs import dagster_home, pool_limit

    config = {
        "sources": {
            "a": {"host": "db1.example", "database": "d", "user": "u", "password_env": "X", "max_concurrent_reads": 3},
            "b": {"host": "db1.example", "database": "e", "user": "u", "password_env": "X", "max_concurrent_reads": 2},
        },
        "destinations": {"lake": {"type": "s3", "url": f"file://{tmp_path}/lake"}},
        "tasks": {"t": {"source": "a", "destination": "lake", "tables": ["dbo.x"]}},
    }
    home = dagster_home(tmp_path)
    env = dict(os.environ, DAGSTER_HOME=str(home))
    result = _dtaas("pools", "--config", str(write_config(tmp_path, config)), env=env)
    assert result.returncode == 0, result.stderr
    # two sources on one server share one pool: the smaller limit wins
    assert pool_limit(home, "sqlserver_db1_example") == 2


def test_the_first_use_lock_steps_aside_when_dagster_home_cannot_hold_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dtaas_dagster.launch import _first_use_lock

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(blocker / "home"))  # cannot be created: its parent is a file
    entered = []
    with _first_use_lock():
        entered.append(True)
    assert entered == [True]
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with _first_use_lock():
        assert (tmp_path / "home" / ".dtaas-load.lock").exists()
