"""CDC with the real daemon: `dagster-daemon run`, `dagster sensor start <task>_cdc`, changes through
Driver 18, and the change files landing in the lake, readable through their manifests.

The database captures with a lag (the double's capture job, 1 s after each
commit), as SQL Server does.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from dtaas_dagster.cdc.replay import replay, table_partitions
from dtaas_dagster_tests.cdc.daemon import DaemonProcess
from dtaas_dagster_tests.cdc.harness import PASSWORD_ENV, cdc_config, source_rows
from dtaas_dagster_tests.runs import dagster_home, write_config

pytestmark = pytest.mark.slow


def _manifests(lake: Path, kind: str) -> list[dict[str, Any]]:
    found = []
    for path in lake.rglob("_manifest.json"):
        manifest = json.loads(path.read_text())
        if manifest.get("kind") == kind:
            found.append(manifest)
    return found


def test_the_daemon_runs_the_cdc_sensor_and_change_files_land(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    with closing(sqlserver_db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        conn.execute("CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, v nvarchar(20), at datetime2(7))")
        conn.execute(
            "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL"
        )
        conn.execute("INSERT INTO dbo.orders VALUES (1, N'one', '2024-01-01 00:00:00.0000001')")
    if sqlserver.is_double:
        sqlserver.control.set_capture_lag(1.0, sqlserver_db.name)
    lake = tmp_path / "lake"
    config = cdc_config(sqlserver, sqlserver_db.name, lake, ["dbo.orders"], cdc={"poll_seconds": 2})
    config_path, home = write_config(tmp_path, config), dagster_home(tmp_path)
    with DaemonProcess(
        home=home, env={"DTAAS_CONFIG": str(config_path), PASSWORD_ENV: sqlserver.password}, cwd=tmp_path
    ) as daemon:
        daemon.start_sensor("t_cdc")
        deadline = time.monotonic() + 300
        while not _manifests(lake, "snapshot"):
            assert time.monotonic() < deadline, (home / "daemon.log").read_text()[-4000:]
            time.sleep(1)
        with closing(sqlserver_db.connect()) as conn:
            conn.execute("INSERT INTO dbo.orders VALUES (2, N'two', '2024-01-02 00:00:00.1234567')")
            conn.execute("UPDATE dbo.orders SET v = N'uno' WHERE id = 1")
            conn.execute("DELETE FROM dbo.orders WHERE id = 2")
            conn.execute("INSERT INTO dbo.orders VALUES (3, N'three', NULL)")
        while sum(m["total_rows"] for m in _manifests(lake, "cdc")) < 4:
            assert time.monotonic() < deadline, (home / "daemon.log").read_text()[-4000:]
            time.sleep(1)
    fs = pafs.LocalFileSystem()
    replayed = replay(fs, table_partitions(fs, str(lake), ["t", "dbo", "orders"])).sort_by("id").to_pylist()
    expected = source_rows(sqlserver_db, "dbo", "orders", "id")
    assert [(r["id"], r["v"]) for r in replayed] == [(r["id"], r["v"]) for r in expected] == [(1, "uno"), (3, "three")]
    assert replayed[0]["at"].value == 1704067200000000100  # datetime2(7): the 100-ns digit survives
