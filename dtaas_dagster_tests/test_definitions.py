"""The asset graph: definitions built from config, guarded by a reviewed snapshot.

Set DTAAS_UPDATE_SNAPSHOTS=1 to rewrite the snapshot after a deliberate change,
then review the diff.
"""

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster.config import ConfigError, load_config, parse_config
from dtaas_dagster.factory import build_definitions, pool_name
from dtaas_dagster.schedules import interval_to_cron
from dtaas_dagster.sqlserver.resource import SqlServerResource

SNAPSHOT = Path(__file__).parent / "snapshots" / "example_definitions.json"
EXAMPLE = Path(__file__).resolve().parents[1] / "dtaas.yaml"


def describe(defs: dg.Definitions) -> dict[str, Any]:
    """A reviewable summary of everything the code location offers."""
    repo = defs.get_repository_def()
    assets = {}
    for assets_def in repo.assets_defs_by_key.values():
        for key in assets_def.keys:
            spec = assets_def.specs_by_key[key]
            retry = assets_def.op.retry_policy
            assets[key.to_user_string()] = {
                "group": spec.group_name,
                "kinds": sorted(spec.kinds),
                "partitions": assets_def.partitions_def.name,  # type: ignore[union-attr]
                "io_manager_key": assets_def.get_io_manager_key_for_asset_key(key),
                "pool": assets_def.op.pool,
                "retry": {
                    "max_retries": retry.max_retries,
                    "delay": retry.delay,
                    "backoff": str(retry.backoff),
                    "jitter": str(retry.jitter),
                }
                if retry
                else None,
            }
    jobs = {}
    for job in repo.get_all_jobs():
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "partitioned": job.partitions_def is not None,
            "executor": job.executor_def.name,
            "ops": sorted(node.name for node in job.nodes),
        }
    checks: dict[str, list[str]] = {}
    for checks_def in repo.asset_checks_defs_by_key.values():
        for check_key in checks_def.check_keys:
            checks.setdefault(check_key.asset_key.to_user_string(), []).append(check_key.name)
    for assets_def in repo.assets_defs_by_key.values():
        for check_key in assets_def.check_keys:
            checks.setdefault(check_key.asset_key.to_user_string(), []).append(check_key.name)
    return {
        "assets": dict(sorted(assets.items())),
        "asset_checks": {key: sorted(set(names)) for key, names in sorted(checks.items())},
        "jobs": dict(sorted(jobs.items())),
        "schedules": sorted((s.name, s.cron_schedule, s.job_name) for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "resources": sorted(repo.get_top_level_resources()),
    }


def test_example_definitions_match_the_reviewed_snapshot() -> None:
    summary = json.loads(json.dumps(describe(build_definitions(load_config(EXAMPLE)))))
    reviewed = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else None
    if os.environ.get("DTAAS_UPDATE_SNAPSHOTS") and summary != reviewed:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        pytest.fail(f"{SNAPSHOT} rewritten: review the diff, then run again without DTAAS_UPDATE_SNAPSHOTS")
    assert summary == reviewed


def _config(**task: Any) -> dict[str, Any]:
    return {
        "sources": {
            "sales": {
                "host": "db.example",
                "port": 1433,
                "database": "sales",
                "user": "etl",
                "password_env": "SALES_PW",
            }
        },
        "destinations": {"lake": {"type": "s3", "url": "s3://bucket/raw"}},
        "tasks": {
            "nightly": {"source": "sales", "destination": "lake", "tables": ["dbo.orders", "sales.items"], **task}
        },
    }


def test_parallel_tables_retry_and_pool_come_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_PW", "not-used")
    config = parse_config(
        _config(parallel_tables=7, retry={"max_retries": 5, "delay_seconds": 2, "backoff": "linear", "jitter": "full"})
    )
    repo = build_definitions(config).get_repository_def()
    job = repo.get_job("nightly_tables")
    assert job.executor_def.name == "dtaas_tables_executor"
    assert job.executor_def.apply_config_mapping({}).value["config"]["multiprocess"]["max_concurrent"] == 7
    assert "in_process" in job.executor_def.apply_config_mapping({"config": {"in_process": True}}).value["config"]
    asset = repo.assets_defs_by_key[dg.AssetKey(["nightly", "sales", "items"])]
    assert asset.op.pool == "sqlserver_db_example" == pool_name(config.sources["sales"])
    policy = asset.op.retry_policy
    assert (policy.max_retries, policy.delay, policy.backoff, policy.jitter) == (
        5,
        2,
        dg.Backoff.LINEAR,
        dg.Jitter.FULL,
    )


def test_schedules_from_cron_and_interval() -> None:
    cron = build_definitions(parse_config(_config(schedule={"cron": "15 2 * * *", "timezone": "Europe/Paris"})))
    schedule = cron.get_repository_def().schedule_defs[0]
    assert (schedule.name, schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
        "nightly_schedule",
        "15 2 * * *",
        "Europe/Paris",
        "nightly_tables",
    )
    assert interval_to_cron(15) == "*/15 * * * *"
    assert interval_to_cron(60) == "0 * * * *"
    assert interval_to_cron(360) == "0 */6 * * *"
    with pytest.raises(ConfigError, match="interval_minutes 90"):
        interval_to_cron(90)


def test_cdc_modes_get_a_cdc_sensor_polling_at_poll_seconds() -> None:
    for mode in ("cdc", "full_load_and_cdc"):
        repo = build_definitions(parse_config(_config(mode=mode, cdc={"poll_seconds": 7}))).get_repository_def()
        sensor = repo.get_sensor_def("nightly_cdc")
        # one second of slack under poll_seconds: the daemon's 5-second sensor loop would
        # otherwise skip a check that comes a few ms early (cdc/sensor.sensor_interval_seconds)
        assert sensor.minimum_interval_seconds == 6 and sensor.job_name == "nightly_tables"
        assert sensor.required_resource_keys == {"sqlserver_sales"}
    fastest = build_definitions(parse_config(_config(mode="cdc", cdc={"poll_seconds": 1}))).get_repository_def()
    assert fastest.get_sensor_def("nightly_cdc").minimum_interval_seconds == 1
    plain = build_definitions(parse_config(_config())).get_repository_def()
    assert sorted(s.name for s in plain.sensor_defs) == [
        "nightly_full_load_requests",
        "nightly_superseded_snapshots",
    ]  # no CDC sensor


def test_password_stays_an_env_var_reference_in_resource_config() -> None:
    config = parse_config(_config())
    resource = SqlServerResource.from_source("sales", config.sources["sales"])
    assert resource.password == "SALES_PW"  # the variable's name; Dagster resolves it at run time
    assert type(resource.password).__name__ == "EnvVar"


def test_patterns_resolve_against_the_catalog(sqlserver: Any, sqlserver_db: Any, monkeypatch: Any) -> None:
    import pyarrow as pa

    for name in ("orders", "order_lines", "audit_log"):
        sqlserver_db.seed_table("dbo", name, pa.table({"id": pa.array([1, 2], pa.int32())}), primary_key=["id"])
    monkeypatch.setenv("PATTERN_TEST_PW", sqlserver.password)
    config = {
        "sources": {
            "src": {
                "host": sqlserver.host,
                "port": sqlserver.port,
                "database": sqlserver_db.name,
                "user": sqlserver.user,
                "password_env": "PATTERN_TEST_PW",
                "encrypt": "no",
            }
        },
        "destinations": {"lake": {"type": "s3", "url": "file:///tmp/unused"}},
        "tasks": {
            "t": {"source": "src", "destination": "lake", "tables": ["dbo.*"], "exclude_tables": ["dbo.audit_*"]}
        },
    }
    repo = build_definitions(parse_config(config)).get_repository_def()
    keys = sorted(k.to_user_string() for k in repo.assets_defs_by_key)
    assert keys == ["t/dbo/order_lines", "t/dbo/orders"]


def test_loading_the_definitions_imports_neither_pandas_nor_snowflake() -> None:
    # Every code server, sensor tick and run process loads the definitions: the two heaviest
    # optional imports (0.3 s and several seconds on 2 cores) stay out unless a load needs them.
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    script = (
        "import sys\n"
        "from dtaas_dagster import defs\n"
        "defs()\n"
        "print(sorted(set(sys.modules) & {'pandas', 'snowflake.connector', 'dagster_snowflake'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DTAAS_CONFIG": str(repo / "dtaas.yaml")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
