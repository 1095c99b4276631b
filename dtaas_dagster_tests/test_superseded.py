"""A failed snapshot that newer snapshots superseded is cleared by `<task>_superseded_snapshots`.

Real runs in a real (temporary) Dagster instance: two table assets with the
keys and job name a task `t` has, partitioned by the task's partitions
definition, materialized or failed per partition; then the product's sensor is
evaluated against that instance.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest

from dtaas_dagster.partitions import loads_partitions_def, partitions_def_name, snapshot_key
from dtaas_dagster.superseded import build_superseded_snapshots_sensor

pytestmark = pytest.mark.slow

TASK = "t"
KEYS = [dg.AssetKey([TASK, "dbo", "a"]), dg.AssetKey([TASK, "dbo", "b"])]
FAILING: set[tuple[str, str]] = set()  # (partition, table) pairs whose load raises


def _key(minute: int) -> str:
    return snapshot_key(dt.datetime(2026, 12, 2, 2, minute, tzinfo=dt.UTC), f"r{minute:06d}")


def _table_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(key=[TASK, "dbo", table], partitions_def=loads_partitions_def(TASK))
    def load(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        if (context.partition_key, table) in FAILING:
            raise RuntimeError(f"{table} failed in {context.partition_key}")
        return dg.MaterializeResult()

    return load


ASSETS = [_table_asset("a"), _table_asset("b")]
JOB = dg.Definitions(assets=ASSETS, jobs=[dg.define_asset_job(f"{TASK}_tables", selection=KEYS)]).resolve_job_def(
    f"{TASK}_tables"
)


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance
    FAILING.clear()


def _load(instance: dg.DagsterInstance, partition: str, *, failing: tuple[str, ...] = ()) -> bool:
    if not instance.has_dynamic_partition(partitions_def_name(TASK), partition):
        instance.add_dynamic_partitions(partitions_def_name(TASK), [partition])
    FAILING.difference_update({(partition, t) for t in ("a", "b")})
    FAILING.update((partition, table) for table in failing)
    return JOB.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False).success


def _evaluate(instance: dg.DagsterInstance) -> list[str]:
    sensor = build_superseded_snapshots_sensor(task=TASK, asset_keys=KEYS)
    result = sensor(dg.build_sensor_context(instance=instance))
    if isinstance(result, dg.SkipReason):
        return []
    [request] = result.dynamic_partitions_requests
    assert isinstance(request, dg.DeleteDynamicPartitionsRequest)
    assert request.partitions_def_name == partitions_def_name(TASK)
    for key in request.partition_keys:  # what the daemon does with the request
        instance.delete_dynamic_partition(partitions_def_name(TASK), key)
    return list(request.partition_keys)


def test_a_failed_snapshot_is_cleared_once_a_newer_one_loaded_every_table(instance: dg.DagsterInstance) -> None:
    first, second = _key(1), _key(2)
    assert not _load(instance, first, failing=("b",))
    assert _evaluate(instance) == []  # b never loaded anywhere: the failure still matters
    assert _load(instance, second)
    assert _evaluate(instance) == [first]
    assert instance.get_dynamic_partitions(partitions_def_name(TASK)) == [second]
    assert _evaluate(instance) == []  # nothing left to clear
    # the failed run and its logs stay in the run history
    failed = instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert [r.dagster_run.tags["dagster/partition"] for r in failed] == [first]


def test_a_snapshot_is_kept_while_some_table_has_no_newer_load(instance: dg.DagsterInstance) -> None:
    first, second = _key(1), _key(2)
    assert not _load(instance, first, failing=("a",))
    assert not _load(instance, second, failing=("b",))  # b's only load is in `first`
    assert _evaluate(instance) == []
    third = _key(3)
    assert _load(instance, third)
    assert _evaluate(instance) == [first, second]


def test_a_snapshot_re_run_successfully_is_not_cleared(instance: dg.DagsterInstance) -> None:
    first, second = _key(1), _key(2)
    assert not _load(instance, first, failing=("b",))
    assert _load(instance, first)  # "Re-execute" of the same partition succeeded
    assert _load(instance, second)
    assert _evaluate(instance) == []
    assert sorted(instance.get_dynamic_partitions(partitions_def_name(TASK))) == [first, second]


def test_a_failed_cdc_window_is_never_cleared(instance: dg.DagsterInstance) -> None:
    window = "2026-12-02T020100Z-cdc-00000000000000000001"
    assert not _load(instance, window, failing=("b",))
    assert _load(instance, _key(2))
    assert _evaluate(instance) == []
    assert window in instance.get_dynamic_partitions(partitions_def_name(TASK))
