"""How loads are requested, without servers: the request job, its sensor, the schedule, keys.

Runs here are real runs in a real (temporary) Dagster instance: the request
job executes, then the sensor and the schedule are evaluated against that
instance, as the daemon would.
"""

import ast
import datetime as dt
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster.config import parse_config
from dtaas_dagster.factory import build_definitions
from dtaas_dagster.jobs import tables_executor_config
from dtaas_dagster.partitions import key_date, snapshot_key

PACKAGE = Path(__file__).resolve().parents[1] / "dtaas_dagster"


def _config(**task: Any) -> dict[str, Any]:
    return {
        "sources": {"sales": {"host": "db.example", "database": "sales", "user": "etl", "password_env": "SALES_PW"}},
        "destinations": {"lake": {"type": "s3", "url": "file:///tmp/unused-lake"}},
        "tasks": {"nightly": {"source": "sales", "destination": "lake", "tables": ["dbo.orders"], **task}},
    }


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _repo(**task: Any) -> Any:
    return build_definitions(parse_config(_config(**task))).get_repository_def()


def test_snapshot_keys_sort_in_load_order_and_carry_their_date() -> None:
    early = snapshot_key(dt.datetime(2026, 12, 1, 23, 59, 59, tzinfo=dt.UTC), "rabc123")
    late = snapshot_key(dt.datetime(2026, 12, 2, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "sched")
    assert early == "2026-12-01T235959Z-full-rabc123"
    assert late == "2026-12-02T050000Z-full-sched"  # converted to UTC
    assert sorted([late, early]) == [early, late]
    assert key_date(late) == "2026-12-02" and key_date("no-date-here") is None
    with pytest.raises(ValueError, match="timezone-aware"):
        snapshot_key(dt.datetime(2026, 1, 1), "sched")


def test_a_request_run_registers_a_new_partition_and_the_sensor_requests_its_load(
    instance: dg.DagsterInstance,
) -> None:
    repo = _repo()
    result = repo.get_job("nightly_full_load").execute_in_process(instance=instance)
    assert result.success
    key = result.output_for_node("nightly_request_full_load")
    assert "-full-r" in key and instance.has_dynamic_partition("nightly_loads", key)

    sensor = repo.get_sensor_def("nightly_full_load_requests")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.build_sensor_context(instance=instance, repository_def=repo) as context:
        evaluation = sensor(context)
    assert isinstance(evaluation, dg.SensorResult)
    assert [r.partition_key for r in evaluation.run_requests] == [key]
    [added] = evaluation.dynamic_partitions_requests
    assert (added.partitions_def_name, list(added.partition_keys)) == ("nightly_loads", [key])
    request = evaluation.run_requests[0]
    assert request.run_key == result.run_id and request.job_name in (None, "nightly_tables")
    assert request.tags["dtaas/requested_by"] == result.run_id
    assert request.tags["dtaas/partition_lock"] == f"nightly:{key}"
    # the cursor moves past the request: the next tick requests nothing
    with dg.build_sensor_context(instance=instance, repository_def=repo, cursor=evaluation.cursor) as context:
        again = sensor(context)
    assert isinstance(again, dg.SkipReason)


def test_a_request_for_an_existing_partition_reloads_it_and_a_typo_is_refused(instance: dg.DagsterInstance) -> None:
    repo = _repo()
    job = repo.get_job("nightly_full_load")
    instance.add_dynamic_partitions("nightly_loads", ["2026-12-01T000000Z-full-sched"])
    config = {"ops": {"nightly_request_full_load": {"config": {"partition_key": "2026-12-01T000000Z-full-sched"}}}}
    assert job.execute_in_process(instance=instance, run_config=config).success
    typo = {"ops": {"nightly_request_full_load": {"config": {"partition_key": "2026-12-01T000000Z-ful-sched"}}}}
    failed = job.execute_in_process(instance=instance, run_config=typo, raise_on_error=False)
    assert not failed.success
    message = failed.failure_data_for_node("nightly_request_full_load").error.message
    assert "does not exist" in message and "2026-12-01T000000Z-full-sched" in message
    assert instance.get_dynamic_partitions("nightly_loads") == ["2026-12-01T000000Z-full-sched"]
    with dg.build_sensor_context(instance=instance, repository_def=repo) as context:
        evaluation = repo.get_sensor_def("nightly_full_load_requests")(context)
    # only the successful request is loaded, and it reloads the existing partition
    assert [r.partition_key for r in evaluation.run_requests] == ["2026-12-01T000000Z-full-sched"]


def test_a_schedule_tick_registers_its_partition_and_requests_the_tables_job(instance: dg.DagsterInstance) -> None:
    repo = _repo(schedule={"cron": "0 2 * * *", "timezone": "Europe/Berlin"})
    schedule = repo.get_schedule_def("nightly_schedule")
    assert schedule.job_name == "nightly_tables"
    tick = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as context:
        request = schedule(context)
    assert request.partition_key == request.run_key == "2026-12-02T010000Z-full-sched"
    assert request.tags["dtaas/trigger"] == "schedule"
    assert instance.get_dynamic_partitions("nightly_loads") == ["2026-12-02T010000Z-full-sched"]


def test_tables_share_steps_up_to_parallel_tables_or_tables_per_step() -> None:
    tables = [f"dbo.t{i:02d}" for i in range(10)]
    repo = _repo(tables=tables, parallel_tables=3)
    ops = sorted(node.name for node in repo.get_job("nightly_tables").nodes)
    assert ops == ["nightly__tables_01_of_03", "nightly__tables_02_of_03", "nightly__tables_03_of_03"]
    keys = {k.to_user_string() for a in repo.assets_defs_by_key.values() for k in a.keys}
    assert keys == {f"nightly/dbo/t{i:02d}" for i in range(10)}
    one_each = _repo(tables=tables[:3], parallel_tables=3, tables_per_step=1)
    assert sorted(n.name for n in one_each.get_job("nightly_tables").nodes) == [
        "nightly__dbo__t00",
        "nightly__dbo__t01",
        "nightly__dbo__t02",
    ]
    pairs = _repo(tables=tables[:5], tables_per_step=2)
    assert len(list(pairs.get_job("nightly_tables").nodes)) == 3


def test_table_steps_start_from_a_forkserver_that_preloads_modules_that_exist() -> None:
    config = tables_executor_config(3)
    assert config["max_concurrent"] == 3
    preload = config["start_method"]["forkserver"]["preload_modules"]
    assert "dtaas_dagster.definitions" in preload and "dagster" in preload
    for module in preload:  # the forkserver skips a module it cannot import, silently
        importlib.import_module(module)
    repo = _repo(tables=["dbo.a"], parallel_tables=3)
    assert repo.get_job("nightly_tables").executor_def.name == "dtaas_tables_executor"


def _private_dagster_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [
            f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {n}"
            for n in names
            if n.split(".")[0].startswith("dagster") and any(p.startswith("_") for p in n.split(".")[1:])
        ]
    return found


def test_the_product_uses_public_dagster_apis_only() -> None:
    offenders = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_dagster_imports(path)]
    assert offenders == []
    # the check itself finds what it must find
    probe = PACKAGE.parent / "dtaas_dagster_tests" / "snapshots" / "private_import_probe.txt"
    probe.write_text("from dagster._core.definitions.reconstruct import ReconstructableJob\nimport dagster._utils\n")
    try:
        assert len(_private_dagster_imports(probe)) == 2
    finally:
        probe.unlink()
