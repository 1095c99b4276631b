"""Per-task jobs: ``<task>_tables`` (loads one partition) and ``<task>_full_load`` (asks for one).

Every table-loading run is a run of ``<task>_tables`` for one partition, and
is created by Dagster's own machinery, so it goes through the instance's run
queue and run launcher (Docker, Kubernetes, ECS...) like any other run:

- a person: launch ``<task>_full_load`` from the launchpad (no partition key
  to type). Its one op names a new snapshot partition (or checks an existing
  one given in its config) and registers it; the sensor
  ``<task>_full_load_requests`` then requests the ``<task>_tables`` run for it
  (see :mod:`dtaas_dagster.sensors`);
- a schedule: ``<task>_schedule`` registers the partition and requests the run
  itself (:mod:`dtaas_dagster.schedules`);
- a script: ``dtaas load --task <task>`` (:mod:`dtaas_dagster.cli`);
- re-running one partition: ``<task>_tables`` with that partition, from the
  launchpad, *Materialize*, or ``dagster job execute -j <task>_tables --tags
  '{"dagster/partition": "<key>"}'``; re-executing a failed run from the UI
  (from failure, or from asset failure) works like any partitioned run.

No op starts another run.
"""

import datetime as dt
import multiprocessing
from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from dtaas_dagster.checks import STEP_CHECKS, step_check_keys
from dtaas_dagster.logs import job_run_config
from dtaas_dagster.partitions import new_request_origin, partitions_def_name, snapshot_key

TASK_TAG = "dtaas/task"
REQUESTED_BY_TAG = "dtaas/requested_by"
TRIGGER_TAG = "dtaas/trigger"
# Runs of one partition share this tag's value; a per-value limit of 1 in the
# instance's tag_concurrency_limits keeps two loads of one partition apart.
PARTITION_LOCK_TAG = "dtaas/partition_lock"


def tables_job_name(task: str) -> str:
    return f"{task}_tables"


def full_load_job_name(task: str) -> str:
    return f"{task}_full_load"


def request_op_name(task: str) -> str:
    return f"{task}_request_full_load"


def load_run_tags(task: str, partition_key: str, *, trigger: str) -> dict[str, str]:
    """Tags every table-loading run carries (besides ``dagster/partition``)."""
    return {TASK_TAG: task, TRIGGER_TAG: trigger, PARTITION_LOCK_TAG: f"{task}:{partition_key}"}


class FullLoadRequest(dg.Config):
    """Launchpad config of ``<task>_full_load``; every field is optional."""

    partition_key: str = Field(
        default="",
        description="Reload this EXISTING partition instead of starting a new snapshot (leave empty for a new one).",
    )


# Modules a forkserver imports once, so that each table step (a process forked from it)
# starts without importing Dagster, pyarrow and the product again: about half of a step's
# start-up CPU (bench/RESULTS.md, "many tables"). None of them opens anything at import.
FORKSERVER_PRELOAD = ["dagster", "pyarrow", "pyodbc", "arrow_odbc", "dtaas_dagster.definitions"]


def tables_executor_config(parallel_tables: int) -> dict[str, Any]:
    """Multiprocess executor config: ``parallel_tables`` steps at once, started from a forkserver
    where the platform has one (Linux, macOS), else Dagster's default (spawn)."""
    config: dict[str, Any] = {"max_concurrent": parallel_tables}
    if "forkserver" in multiprocessing.get_all_start_methods():
        config["start_method"] = {"forkserver": {"preload_modules": FORKSERVER_PRELOAD}}
    return config


def build_tables_job(
    *, task: str, asset_keys: list[dg.AssetKey], parallel_tables: int, step_checks: Sequence[str] = STEP_CHECKS
) -> Any:
    """The partitioned asset job of a task: up to ``parallel_tables`` table steps at once.

    It selects the tables and the checks their steps evaluate (dtaas_dagster/checks.py),
    not the scheduled CDC checks (dtaas_dagster/cdc/checks.py): a load never waits for those.
    """
    return dg.define_asset_job(
        name=tables_job_name(task),
        selection=dg.AssetSelection.assets(*asset_keys).without_checks()
        | dg.AssetSelection.checks(*step_check_keys(asset_keys, step_checks)),
        executor_def=tables_executor(parallel_tables),
        description=f"Load one partition (load window) of every table of task {task}.",
        tags={TASK_TAG: task},
        config=job_run_config(),  # JSON logs when DTAAS_LOG_FORMAT=json (dtaas_dagster.logs)
    )


def tables_executor(parallel_tables: int) -> dg.ExecutorDefinition:
    """Multiprocess, up to ``parallel_tables`` steps at once; ``in_process: true`` in a run's
    ``execution`` config runs its steps in the run's own process instead (the CDC sensor does
    that for windows that touch one step: one process start instead of two)."""

    def choose(config: dict[str, Any]) -> dict[str, Any]:
        if config.get("in_process"):
            return {"in_process": {}}
        return {"multiprocess": tables_executor_config(parallel_tables)}

    return dg.multi_or_in_process_executor.configured(
        choose,
        config_schema={
            "in_process": dg.Field(
                bool,
                default_value=False,
                description=(
                    "Run every step in the run's own process (one table step at a time) instead of up to "
                    f"{parallel_tables} step processes at once."
                ),
            )
        },
        name="dtaas_tables_executor",
    )


def request_key(instance: dg.DagsterInstance, run_id: str) -> str:
    """The snapshot key a request run stands for: from its creation time and id, so the
    op and the sensor compute the same key."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise ValueError(f"run {run_id} not found in this instance")
    created = record.create_timestamp
    if created.tzinfo is None:  # SQLite storage returns naive UTC
        created = created.replace(tzinfo=dt.UTC)
    return snapshot_key(created, "r" + run_id.replace("-", "")[:6])


def requested_partition(instance: dg.DagsterInstance, run: dg.DagsterRun, task: str) -> str:
    """The partition a successful request run asked for: the configured one, else its new key."""
    run_config: dict[str, Any] = dict(run.run_config or {})
    op_config = run_config.get("ops", {}).get(request_op_name(task), {}).get("config", {})
    return op_config.get("partition_key") or request_key(instance, run.run_id)


def build_full_load_job(*, task: str, sensor_name: str) -> dg.JobDefinition:
    """``<task>_full_load``: name (or check) the partition and register it; the sensor runs it."""
    partitions_name = partitions_def_name(task)

    @dg.op(name=request_op_name(task), description=f"Ask for a full load of task {task}.")
    def request_full_load(context: dg.OpExecutionContext, config: FullLoadRequest) -> str:
        if config.partition_key:
            key = config.partition_key
            if not context.instance.has_dynamic_partition(partitions_name, key):
                existing = sorted(context.instance.get_dynamic_partitions(partitions_name))[-5:]
                raise dg.Failure(
                    description=(
                        f"partition {key!r} of task {task} does not exist, so there is nothing to reload. Leave "
                        "partition_key empty to start a new snapshot, or pick an existing key"
                        + (f" (newest: {', '.join(existing)})." if existing else " (there are none yet).")
                    ),
                    allow_retries=False,
                )
            context.log.info(f"task {task}: reload of existing partition {key} requested")
        else:
            key = request_key(context.instance, context.run_id)
            context.instance.add_dynamic_partitions(partitions_name, [key])
            context.log.info(f"task {task}: new snapshot partition {key} requested")
        context.log.info(
            f"the sensor {sensor_name} now creates the run of {tables_job_name(task)} for partition {key}, "
            f"tagged {REQUESTED_BY_TAG}={context.run_id}; it is queued like any run (Runs page)."
        )
        return key

    @dg.job(
        name=full_load_job_name(task),
        description=(
            f"Start a full load (a new snapshot) of every table of task {task}; no partition key needed. "
            f"The load itself runs as {tables_job_name(task)}, started by the sensor {sensor_name}."
        ),
        executor_def=dg.in_process_executor,
        tags={TASK_TAG: task},
        config=job_run_config() or {},  # @dg.job takes no None
    )
    def full_load() -> None:
        request_full_load()

    return full_load


__all__ = [
    "FullLoadRequest",
    "build_full_load_job",
    "build_tables_job",
    "full_load_job_name",
    "load_run_tags",
    "new_request_origin",
    "request_key",
    "requested_partition",
    "tables_job_name",
]
