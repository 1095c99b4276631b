"""Builders: a validated DtaasConfig -> dagster.Definitions.

Per source: a ``SqlServerResource`` (``sqlserver_<source>``) and a Dagster
concurrency pool named after the server, so tasks that share a SQL Server
share its limit. Per task: an IO manager (``io_<task>``) for its destination;
the table assets, grouped into steps (:mod:`dtaas_dagster.assets`); the jobs
``<task>_tables`` and ``<task>_full_load`` (:mod:`dtaas_dagster.jobs`); the
sensor ``<task>_full_load_requests`` (:mod:`dtaas_dagster.sensors`); a
schedule when configured (:mod:`dtaas_dagster.schedules`); and for the CDC
modes the sensor ``<task>_cdc`` (:mod:`dtaas_dagster.cdc.sensor`) and the
lag/headroom checks ``<task>_cdc_checks`` with their job and schedule
(:mod:`dtaas_dagster.cdc.checks`).

Tables given as patterns (``dbo.*``) are resolved here against the source's
catalog, which needs the server when the definitions load; explicit names do
not. A task whose tables cannot be resolved (its server is down) does not take
the others with it: it is replaced by a job that fails with the reason.
"""

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from dtaas_dagster.asset_metadata import asset_options, table_metadata
from dtaas_dagster.assets import build_table_group_asset, group_tables
from dtaas_dagster.cdc.checks import build_cdc_checks, build_cdc_checks_job, build_cdc_checks_schedule
from dtaas_dagster.cdc.sensor import build_cdc_sensor
from dtaas_dagster.config import (
    ConfigError,
    Destination,
    DtaasConfig,
    RetryConfig,
    SnowflakeDestination,
    SqlServerSource,
    TableConfig,
    TaskConfig,
)
from dtaas_dagster.destinations.s3 import S3IOManager
from dtaas_dagster.destinations.snowflake import SnowflakeIOManager
from dtaas_dagster.jobs import build_full_load_job, build_tables_job, full_load_job_name
from dtaas_dagster.logs import job_run_config
from dtaas_dagster.partitions import loads_partitions_def
from dtaas_dagster.schedules import build_full_load_schedule
from dtaas_dagster.sensors import build_full_load_requests_sensor, full_load_requests_sensor_name
from dtaas_dagster.sqlserver.catalog import match_tables
from dtaas_dagster.sqlserver.names import parse_table_name
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.superseded import build_superseded_snapshots_sensor
from dtaas_dagster.table_load import TableSpec
from dtaas_dagster.table_transforms import VARIABLES_KEY
from dtaas_dagster.variables import QueryVariable, VariablesResource

log = logging.getLogger("dtaas_dagster")


def sqlserver_resource_key(source: str) -> str:
    return f"sqlserver_{source}"


def io_manager_key(task: str) -> str:
    return f"io_{task}"


def pool_name(source: SqlServerSource) -> str:
    """The source's ``pool``, else one pool per SQL Server host, shared by every task that reads it.

    The port is left out so that the name (and the limit an operator set on it)
    survives a server that comes back on another port, as the demo's double does.
    """
    return source.pool or "sqlserver_" + re.sub(r"[^A-Za-z0-9_]", "_", source.host).lower()


def build_io_manager(destination: Destination, task: TaskConfig, *, name: str = "") -> S3IOManager | SnowflakeIOManager:
    """The IO manager of a task's destination (the Snowflake one imports its connector only when it connects)."""
    if isinstance(destination, SnowflakeDestination):
        return SnowflakeIOManager.from_destination(destination, task)
    return S3IOManager.from_destination(destination, task, name=name)


def build_retry_policy(retry: RetryConfig) -> dg.RetryPolicy | None:
    """The step RetryPolicy; none at all for max_retries 0 (the step's own error is then the run's)."""
    if retry.max_retries == 0:
        return None
    backoff = {"exponential": dg.Backoff.EXPONENTIAL, "linear": dg.Backoff.LINEAR, "constant": None}[retry.backoff]
    jitter = {"none": None, "full": dg.Jitter.FULL, "plus_minus": dg.Jitter.PLUS_MINUS}[retry.jitter]
    return dg.RetryPolicy(max_retries=retry.max_retries, delay=retry.delay_seconds, backoff=backoff, jitter=jitter)


def resolve_tables(
    *, task_name: str, task: TaskConfig, list_tables: Callable[[], list[tuple[str, str]]]
) -> list[TableConfig]:
    """Explicit tables as written; patterns resolved against the catalog (only then is the server asked)."""
    if not task.patterns():
        return task.explicit_tables()
    try:
        available = list_tables()
    except Exception as exc:  # noqa: BLE001 - re-raised with the task named
        raise ConfigError(
            f"task {task_name}: tables {', '.join(task.patterns())} are patterns, which are resolved against "
            f"source '{task.source}' when the definitions load, and that failed: {exc}. Make the server "
            "reachable, or list the tables explicitly."
        ) from None
    selection = match_tables(task, available, task_name=task_name)
    for warning in selection.warnings:
        log.warning(warning)
    return selection.tables


def build_table_spec(
    *, task_name: str, task: TaskConfig, table: TableConfig, text_destination: bool = False
) -> TableSpec:
    ref = parse_table_name(table.name)
    return TableSpec(
        task=task_name,
        source=task.source,
        destination=task.destination,
        schema=ref.schema.text,
        table=ref.table.text,
        mode=task.mode,
        primary_key=tuple(table.primary_key) if table.primary_key else None,
        columns_include=tuple(table.columns_include) if table.columns_include else None,
        columns_exclude=tuple(table.columns_exclude),
        datetime2_default=task.datetime2,
        text_destination=text_destination,
        datetime2_overrides=tuple(sorted(table.datetime2.items())),
        batch_rows=task.batch.rows,
        batch_mb=task.batch.mb,
        schema_drift=task.schema_drift,
        step_checks=tuple(task.step_checks),
        update_before_images=task.cdc.update_before_images,
        transformations=tuple(table.transformations),
    )


@dataclass
class TaskDefinitions:
    """What one task contributes to the code location."""

    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    jobs: list[object] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)
    asset_checks: list[dg.AssetChecksDefinition] = field(default_factory=list)


def _check_distinct_keys(task_name: str, specs: Sequence[TableSpec]) -> None:
    seen: dict[dg.AssetKey, TableSpec] = {}
    for spec in specs:
        other = seen.setdefault(spec.asset_key, spec)
        if other is not spec:
            raise ConfigError(
                f"task {task_name}: tables {other.qualified} and {spec.qualified} map to the same asset key "
                f"{spec.asset_key.to_user_string()}; load them in separate tasks."
            )


def task_specs(
    *, task_name: str, config: DtaasConfig, list_tables: Callable[[], list[tuple[str, str]]]
) -> list[TableSpec]:
    """The tables a task loads, checked as far as the config alone allows (a ConfigError otherwise)."""
    task = config.tasks[task_name]
    text_destination = config.destinations[task.destination].writes_text
    specs = [
        build_table_spec(task_name=task_name, task=task, table=table, text_destination=text_destination)
        for table in resolve_tables(task_name=task_name, task=task, list_tables=list_tables)
    ]
    _check_distinct_keys(task_name, specs)
    return specs


def build_task(
    *, task_name: str, config: DtaasConfig, list_tables: Callable[[], list[tuple[str, str]]]
) -> TaskDefinitions:
    task = config.tasks[task_name]
    specs = task_specs(task_name=task_name, config=config, list_tables=list_tables)
    source = config.sources[task.source]
    destination = config.destinations[task.destination]
    partitions_def = loads_partitions_def(task_name)
    per_step = task.tables_per_step or math.ceil(len(specs) / task.parallel_tables)
    groups = group_tables(task_name, specs, groups=math.ceil(len(specs) / max(per_step, 1)))
    kinds = {"sqlserver", destination.asset_kind}
    descriptions = {
        spec.asset_key: (
            f"SQL Server table {source.database}.{spec.qualified} (source {spec.source}, {source.host}:{source.port}) "
            f"copied to {destination.display} by task {task_name}, mode {task.mode}. One partition per load window."
        )
        for spec in specs
    }
    metadata = {
        spec.asset_key: table_metadata(
            spec=spec, source=source, destination=destination, mode=task.mode, variables=config.static_variables
        )
        for spec in specs
    }
    assets = [
        build_table_group_asset(
            group=group,
            partitions_def=partitions_def,
            retry_policy=build_retry_policy(task.retry),
            pool=pool_name(source),
            sqlserver_key=sqlserver_resource_key(task.source),
            io_manager_key=io_manager_key(task_name),
            query_source_keys=sorted({sqlserver_resource_key(q.source) for q in config.query_variables.values()}),
            kinds=kinds,
            descriptions=descriptions,
            metadata=metadata,
            asset_options=asset_options(task),
        )
        for group in groups
    ]
    tables_job = build_tables_job(
        task=task_name,
        asset_keys=[s.asset_key for s in specs],
        parallel_tables=task.parallel_tables,
        step_checks=task.step_checks,
    )
    result = TaskDefinitions(assets=assets)
    result.jobs = [
        tables_job,
        build_full_load_job(task=task_name, sensor_name=full_load_requests_sensor_name(task_name)),
    ]
    result.sensors = [
        build_full_load_requests_sensor(task=task_name, tables_job=tables_job),
        build_superseded_snapshots_sensor(task=task_name, asset_keys=[s.asset_key for s in specs]),
    ]
    if task.schedule:
        result.schedules = [build_full_load_schedule(task=task_name, schedule=task.schedule, tables_job=tables_job)]
    if task.mode in ("cdc", "full_load_and_cdc"):
        op_names = {spec.asset_key: group.op_name for group in groups for spec in group.specs}
        result.sensors.append(
            build_cdc_sensor(
                task=task_name,
                mode=task.mode,
                cdc=task.cdc,
                specs=specs,
                op_names=op_names,
                sqlserver_key=sqlserver_resource_key(task.source),
                tables_job=tables_job,
            )
        )
        _add_cdc_checks(result, task_name=task_name, task=task, specs=specs)
    return result


def _add_cdc_checks(result: TaskDefinitions, *, task_name: str, task: TaskConfig, specs: Sequence[TableSpec]) -> None:
    """The CDC lag and headroom checks of a task, their job and (with cdc.checks_cron) schedule."""
    checks = build_cdc_checks(
        task=task_name, mode=task.mode, cdc=task.cdc, specs=specs, sqlserver_key=sqlserver_resource_key(task.source)
    )
    job = build_cdc_checks_job(task=task_name, checks=checks)
    result.asset_checks.append(checks)
    result.jobs.append(job)
    if task.cdc.checks_cron:
        result.schedules.append(build_cdc_checks_schedule(task=task_name, cron=task.cdc.checks_cron, job=job))


def build_unavailable_task(*, task_name: str, error: str) -> TaskDefinitions:
    """A stand-in for a task whose definitions could not be built: a job that says why."""

    @dg.op(name=f"{task_name}_unavailable")
    def unavailable() -> None:
        raise dg.Failure(description=f"task {task_name} is unavailable: {error}", allow_retries=False)

    @dg.job(
        name=full_load_job_name(task_name),
        description=f"UNAVAILABLE: task {task_name} could not be loaded: {error}",
        executor_def=dg.in_process_executor,
        tags={"dtaas/task": task_name, "dtaas/unavailable": "true"},
        config=job_run_config() or {},  # JSON logs when DTAAS_LOG_FORMAT=json
    )
    def unavailable_job() -> None:
        unavailable()

    return TaskDefinitions(jobs=[unavailable_job])


def catalog_lister(config: DtaasConfig, source_name: str) -> Callable[[], list[tuple[str, str]]]:
    def list_tables() -> list[tuple[str, str]]:
        source = config.sources[source_name]
        resource = SqlServerResource.from_source(source_name, source, password=source.password())
        return [(t.schema, t.name) for t in resource.list_tables()]

    return list_tables


def build_definitions(config: DtaasConfig) -> dg.Definitions:
    """The whole code location from one config."""
    resources: dict[str, object] = {
        sqlserver_resource_key(name): SqlServerResource.from_source(name, source)
        for name, source in config.sources.items()
    }
    resources[VARIABLES_KEY] = VariablesResource(
        static=config.static_variables,
        queries=[
            QueryVariable(name=name, source=q.source, query=q.query) for name, q in config.query_variables.items()
        ],
    )
    combined = TaskDefinitions()
    for task_name, task in config.tasks.items():
        try:
            built = build_task(task_name=task_name, config=config, list_tables=catalog_lister(config, task.source))
        except ConfigError as exc:
            if not task.patterns():
                raise  # a mistake in the config itself: refuse the whole file, as for any other field
            log.error(f"task {task_name} is unavailable: {exc}")
            built = build_unavailable_task(task_name=task_name, error=str(exc))
        combined.assets += built.assets
        combined.jobs += built.jobs
        combined.schedules += built.schedules
        combined.sensors += built.sensors
        combined.asset_checks += built.asset_checks
        resources[io_manager_key(task_name)] = build_io_manager(
            config.destinations[task.destination], task, name=task.destination
        )
    return dg.Definitions(
        assets=combined.assets,
        asset_checks=combined.asset_checks,
        jobs=combined.jobs,  # type: ignore[arg-type]
        schedules=combined.schedules,
        sensors=combined.sensors,
        resources=resources,
    )
