"""Per-task jobs: ``<task>_tables`` (the partitioned asset job) and ``<task>_full_load``.

Why two jobs. A table asset is partitioned by load window (dynamic partitions),
and Dagster fixes a run's partition when the run is created. A person clicking
*Launch* in the launchpad, or a script calling ``dagster job execute``, should
not have to invent a partition key for a new snapshot. So ``<task>_full_load``
is a small launcher: its one op names the snapshot (``2026-11-23T041500Z-full``,
UTC, sorts in load order), registers that partition, then runs
``<task>_tables`` for it in the same process through ``execute_job`` and
fails if that run fails. The child run is an ordinary partitioned run of the
table assets, visible in the UI with its own logs, retries and
materializations, tagged ``dtaas/launched_by=<launcher run id>``.

``<task>_tables`` is also what to use to re-run one existing partition (pick it
in the launchpad or pass ``--tags '{"dagster/partition": "..."}'``): the S3
writer replaces that partition's files atomically.
"""



import datetime as dt

import dagster as dg
from pydantic import Field
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# The module and attribute that child runs load; they inherit DTAAS_CONFIG.
DEFINITIONS_MODULE = "dtaas_dagster.definitions"
DEFINITIONS_ATTRIBUTE = "defs"
LAUNCHED_BY_TAG = "dtaas/launched_by"


def snapshot_partition_key(now: dt.datetime | None = None) -> str:
    """A readable, sortable key for a snapshot taken now (UTC, to the second)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ") + "-full"


def ensure_partition(instance: dg.DagsterInstance, partitions_def: dg.DynamicPartitionsDefinition, key: str) -> None:
    """Register a load window's partition key unless it already exists."""
    if not instance.has_dynamic_partition(partitions_def.name, key):
        instance.add_dynamic_partitions(partitions_def.name, [key])


class FullLoadConfig(dg.Config):
    """Launchpad config of ``<task>_full_load``; every field is optional."""

    partition_key: str = Field(
        default="",
        description="Reload this existing partition instead of starting a new snapshot (leave empty for a new one).",
    )


def build_tables_job(*, task: str, asset_keys: list[dg.AssetKey], parallel_tables: int) -> "UnresolvedAssetJobDefinition":
    """The partitioned asset job of a task: up to ``parallel_tables`` tables at once."""
    return dg.define_asset_job(
        name=f"{task}_tables",
        selection=dg.AssetSelection.assets(*asset_keys),
        executor_def=dg.multiprocess_executor.configured({"max_concurrent": parallel_tables}),
        description=f"Load one partition (load window) of every table of task {task}.",
        tags={"dtaas/task": task},
    )


def build_full_load_job(*, task: str, partitions_def: dg.DynamicPartitionsDefinition,
                        pools: dict[str, int], working_directory: str | None = None) -> dg.JobDefinition:
    """The launcher job ``<task>_full_load`` (see the module docstring)."""

    @dg.op(name=f"{task}_start_full_load", description=f"Name a new snapshot of task {task} and load it.")
    def start_full_load(context: dg.OpExecutionContext, config: FullLoadConfig) -> str:
        key = config.partition_key or snapshot_partition_key()
        ensure_partition(context.instance, partitions_def, key)
        for pool, limit in pools.items():
            _ensure_pool_limit(context.instance, pool, limit)
        context.log.info(f"task {task}: loading snapshot partition {key}")
        recon = ReconstructableJob(
            ReconstructableRepository.for_module(
                DEFINITIONS_MODULE, DEFINITIONS_ATTRIBUTE, working_directory=working_directory
            ),
            f"{task}_tables",
        )
        tags = {"dagster/partition": key, LAUNCHED_BY_TAG: context.run_id, "dtaas/task": task}
        with dg.execute_job(recon, instance=context.instance, tags=tags) as result:
            context.log.info(f"task {task}: run {result.run_id} for partition {key} "
                             f"{'succeeded' if result.success else 'failed'}")
            if not result.success:
                failures = [event.message for event in result.all_events if event.is_step_failure]
                raise dg.Failure(
                    description=f"loading partition {key} of task {task} failed in run {result.run_id}",
                    metadata={"child_run_id": result.run_id, "failures": "\n".join(failures)[:4000]},
                    allow_retries=False,
                )
        return key

    @dg.job(
        name=f"{task}_full_load",
        description=f"Start a new full load (snapshot) of every table of task {task}. No partition key needed.",
        executor_def=dg.in_process_executor,
        tags={"dtaas/task": task},
    )
    def full_load() -> None:
        start_full_load()

    return full_load


def _ensure_pool_limit(instance: dg.DagsterInstance, pool: str, limit: int) -> None:
    """Give the source server's pool its configured limit, unless an operator already set one."""
    storage = instance.event_log_storage
    if not getattr(storage, "supports_global_concurrency_limits", False):
        return
    if pool in set(storage.get_concurrency_keys()):
        return
    storage.set_concurrency_slots(pool, limit)
