"""Failed snapshots that a newer snapshot superseded are cleared, not red forever.

Every full load is a new partition, so a snapshot that failed is never re-run
by the next load: it would stay red on the table's partition bar (and count as
a failed partition in the asset's health) long after newer snapshots loaded
every table. The sensor ``<task>_superseded_snapshots`` (running by default,
every few minutes) removes such a partition key from the task's partitions,
through ``SensorResult`` (Dagster's ``DeleteDynamicPartitionsRequest``), when:

- its newest ``<task>_tables`` run failed (a re-run that succeeded, or one
  still queued or running, keeps it);
- it is a snapshot key (``...-full-...``): a CDC window is never superseded,
  its changes are needed;
- every table of the task has a successful load recorded in a newer partition,
  so no table loses its only load from Dagster's partition list.

What stays: the failed run with its logs in the run history, and in the
destination any table of that snapshot that did commit (its manifest and
files; delete the directory yourself if you do not want it). What goes: the
key, and with it the red partition. docs/operations.md#when-a-load-fails.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from dtaas_dagster.jobs import tables_job_name
from dtaas_dagster.partitions import is_snapshot_key, partitions_def_name

SUPERSEDED_POLL_SECONDS = 300
# Failed runs looked at per tick, newest first; older ones were handled by earlier ticks.
SCAN_FAILED_RUNS = 100


def superseded_snapshots_sensor_name(task: str) -> str:
    return f"{task}_superseded_snapshots"


def _failed_snapshots(instance: dg.DagsterInstance, task: str) -> list[str]:
    """Snapshot partitions (still present) whose newest ``<task>_tables`` run failed."""
    job = tables_job_name(task)
    failed_runs = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.FAILURE]), limit=SCAN_FAILED_RUNS
    )
    found: list[str] = []
    for record in failed_runs:
        partition = record.dagster_run.tags.get("dagster/partition")
        if not partition or partition in found or not is_snapshot_key(partition):
            continue
        if not instance.has_dynamic_partition(partitions_def_name(task), partition):
            continue  # cleared already
        latest = instance.get_run_records(
            filters=dg.RunsFilter(job_name=job, tags={"dagster/partition": partition}), limit=1
        )
        if latest and latest[0].dagster_run.status != dg.DagsterRunStatus.FAILURE:
            continue  # re-run since (succeeded, queued or running)
        found.append(partition)
    return found


def superseded_partitions(instance: dg.DagsterInstance, *, task: str, asset_keys: Sequence[dg.AssetKey]) -> list[str]:
    """Failed snapshot partitions of ``task`` that newer loads of every table superseded (sorted)."""
    failed = _failed_snapshots(instance, task)
    if not failed:  # the usual case: no per-table queries at all
        return []
    newest: list[str] = []
    for key in asset_keys:
        records = instance.fetch_materializations(key, limit=1).records
        if not records or records[0].partition_key is None:
            return []  # a table that never loaded: no failure of it is superseded
        newest.append(records[0].partition_key)
    boundary = min(newest)  # every table has a load in a partition at or after this key
    return sorted(partition for partition in failed if partition < boundary)


def build_superseded_snapshots_sensor(*, task: str, asset_keys: Sequence[dg.AssetKey]) -> dg.SensorDefinition:
    """The sensor that clears failed snapshots of ``task`` that newer snapshots superseded."""

    @dg.sensor(
        name=superseded_snapshots_sensor_name(task),
        minimum_interval_seconds=SUPERSEDED_POLL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Removes failed snapshot partitions of task {task} once a newer snapshot has loaded every "
            "table, so they do not stay red. Runs, logs and committed files stay."
        ),
    )
    def superseded_snapshots(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        keys = superseded_partitions(context.instance, task=task, asset_keys=asset_keys)
        if not keys:
            return dg.SkipReason(f"no failed snapshot of task {task} is superseded")
        for key in keys:
            context.log.info(f"snapshot {key} failed and newer snapshots loaded every table: clearing it")
        return dg.SensorResult(
            dynamic_partitions_requests=[dg.DeleteDynamicPartitionsRequest(partitions_def_name(task), keys)]
        )

    return superseded_snapshots
