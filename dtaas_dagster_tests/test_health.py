"""`dtaas health` as an orchestrator runs it: a subprocess, its exit status and its --json output.

Against the SQL Server double, a file:// lake, a Dagster instance in a
temporary DAGSTER_HOME and (slow test) a real `dagster-daemon`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster_tests.cdc.daemon import DaemonProcess
from dtaas_dagster_tests.cdc.harness import Capture, CdcHarness, cdc_config
from dtaas_dagster_tests.runs import PASSWORD_ENV, dagster_home, source_config, write_config


def _health(*args: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "dtaas_dagster.cli", "health", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def _probes(report: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["probes"] if p["kind"] == kind}


def _env(sqlserver: Any, config_path: Path, home: Path | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, DTAAS_CONFIG=str(config_path), **{PASSWORD_ENV: sqlserver.password}, **extra)
    env.pop("DAGSTER_HOME", None)
    if home is not None:
        env["DAGSTER_HOME"] = str(home)
    return env


def test_every_failing_probe_is_named_with_its_reason_and_the_exit_status_is_one(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    config = {
        "sources": {
            "src": source_config(sqlserver, sqlserver_db.name),
            "wrong": source_config(sqlserver, sqlserver_db.name, password_env="DTAAS_WRONG_PASSWORD"),
        },
        "destinations": {
            "lake": {"type": "s3", "url": f"file://{tmp_path}/lake"},
            "sys": {"type": "s3", "url": "file:///sys/dtaas-lake"},
        },
        "tasks": {
            "t": {"source": "src", "destination": "lake", "tables": ["dbo.orders"]},
            "u": {"source": "wrong", "destination": "sys", "tables": ["dbo.orders"]},
        },
    }
    config_path, home = write_config(tmp_path, config), dagster_home(tmp_path)
    env = _env(sqlserver, config_path, home, DTAAS_WRONG_PASSWORD="not-the-password")
    code, report = _health(env=env)
    assert code == 1 and not report["healthy"] and report["status"] == "fail"
    daemons = _probes(report, "daemon")
    assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR"} <= set(daemons)  # what this dagster.yaml needs
    assert all(p["status"] == "fail" and "no heartbeat" in p["reason"] for p in daemons.values())
    sources = _probes(report, "source")
    assert sources["src"]["status"] == "ok" and sqlserver_db.name in sources["src"]["reason"]
    assert sources["wrong"]["status"] == "fail" and "DTAAS_WRONG_PASSWORD" in sources["wrong"]["reason"]
    destinations = _probes(report, "destination")
    assert destinations["lake"]["status"] == "ok"
    assert destinations["sys"]["status"] == "fail" and "not writable" in destinations["sys"]["reason"]
    assert any(problem.startswith("source wrong:") for problem in report["problems"])
    assert "not-the-password" not in json.dumps(report)
    # without the daemon and the broken ones: healthy, exit 0
    healthy_config = {
        **config,
        "sources": {"src": config["sources"]["src"]},
        "destinations": {"lake": config["destinations"]["lake"]},
        "tasks": {"t": config["tasks"]["t"]},
    }
    code, report = _health("--skip", "daemon", env=_env(sqlserver, write_config(tmp_path, healthy_config), None))
    assert code == 0 and report["healthy"] and {p["kind"] for p in report["probes"]} == {"source", "destination"}


def test_without_dagster_home_the_instance_probe_fails(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    config = {
        "sources": {"src": source_config(sqlserver, sqlserver_db.name)},
        "destinations": {"lake": {"type": "s3", "url": f"file://{tmp_path}/lake"}},
        "tasks": {"t": {"source": "src", "destination": "lake", "tables": ["dbo.orders"]}},
    }
    code, report = _health(env=_env(sqlserver, write_config(tmp_path, config), None))
    assert code == 1
    [instance] = _probes(report, "instance").values()
    assert instance["status"] == "fail" and "DAGSTER_HOME" in instance["reason"]


def test_a_cdc_table_lagging_past_its_threshold_fails_health_until_it_is_loaded(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    with closing(sqlserver_db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        conn.execute("CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, v int)")
        conn.execute(
            "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL"
        )
    capture = Capture(sqlserver_db)
    lake = tmp_path / "lake"
    config = cdc_config(
        sqlserver, sqlserver_db.name, lake, ["dbo.orders"], cdc={"lag_warn_seconds": 1, "lag_fail_seconds": 1}
    )
    config_path, home = write_config(tmp_path, config), dagster_home(tmp_path)
    env = _env(sqlserver, config_path, home)
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the instance health reads
        os.environ[PASSWORD_ENV] = sqlserver.password
        try:
            harness = CdcHarness(config, sqlserver, instance, lake)
            code, report = _health("--skip", "daemon", env=env)
            [table] = _probes(report, "cdc").values()
            assert code == 0 and table["status"] == "warn" and "no snapshot loaded yet" in table["reason"]
            assert all(r.success for r in harness.cycle())  # the snapshot
            with closing(sqlserver_db.connect()) as conn:
                conn.execute("INSERT INTO dbo.orders VALUES (1, 1)")
            capture.step()
            time.sleep(1.5)
            code, report = _health("--skip", "daemon", env=env)
            table = _probes(report, "cdc")["t dbo.orders"]
            assert code == 1 and table["status"] == "fail" and table["details"]["lag_status"] == "fail"
            assert table["details"]["lag_seconds"] >= 1.5 and table["details"]["headroom_status"] == "ok"
            assert table["details"]["retention_minutes"] == 4320  # the cleanup job's default, from SQL Server
            assert report["problems"] == [f"cdc t dbo.orders: {table['reason']}"]
            assert all(r.success for r in harness.cycle())  # the window is loaded
            code, report = _health("--skip", "daemon", env=env)
            table = _probes(report, "cdc")["t dbo.orders"]
            assert code == 0 and table["status"] == "ok" and table["details"]["lag_seconds"] == 0
        finally:
            os.environ.pop(PASSWORD_ENV, None)


@pytest.mark.slow
def test_the_daemon_heartbeat_is_healthy_while_it_runs_and_fails_once_it_stops(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    config = {
        "sources": {"src": source_config(sqlserver, sqlserver_db.name)},
        "destinations": {"lake": {"type": "s3", "url": f"file://{tmp_path}/lake"}},
        "tasks": {"t": {"source": "src", "destination": "lake", "tables": ["dbo.orders"]}},
    }
    config_path, home = write_config(tmp_path, config), dagster_home(tmp_path)
    env = _env(sqlserver, config_path, home)
    with DaemonProcess(
        home=home, env={"DTAAS_CONFIG": str(config_path), PASSWORD_ENV: sqlserver.password}, cwd=tmp_path
    ):
        deadline = time.monotonic() + 120
        while True:  # every required daemon beats within its first loop
            code, report = _health("--skip", "sources", "--skip", "destinations", env=env)
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert code == 0, report
        assert all(p["status"] == "ok" for p in _probes(report, "daemon").values())
    time.sleep(2)
    code, report = _health("--skip", "sources", "--skip", "destinations", "--daemon-max-age", "1", env=env)
    assert code == 1
    assert all(p["status"] == "fail" and "last heartbeat" in p["reason"] for p in _probes(report, "daemon").values())
