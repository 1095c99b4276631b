"""Builders: a validated DtaasConfig -> dagster.Definitions.

Per task: one partitioned asset per table (key ``<task>/<schema>/<table>``,
group ``<task>``, kinds ``sqlserver`` + ``s3``), the jobs ``<task>_tables`` and
``<task>_full_load`` (see jobs.py), and a schedule when configured.
Per source: a ``SqlServerResource`` (``sqlserver_<source>``) and a Dagster
concurrency pool named after the server, so tasks that share a SQL Server
share its limit. Per task: an IO manager (``io_<task>``) for its destination.

Tables given as patterns (``dbo.*``) are resolved here against the source's
catalog, which needs the server at load time; explicit names do not.
"""



import re
from collections.abc import Callable

import dagster as dg

from dtaas_dagster.assets import TableSpec, load_table
from dtaas_dagster.config import (
    ConfigError,
    DtaasConfig,
    RetryConfig,
    ScheduleConfig,
    SqlServerSource,
    TableConfig,
    TaskConfig,
    match_tables,
)
from dtaas_dagster.destinations.s3 import S3IOManager
from dtaas_dagster.jobs import build_full_load_job, build_tables_job, ensure_partition
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.stream import TableStream

AVAILABLE_MODES = ("full_load", "full_load_and_cdc")


def sqlserver_resource_key(source: str) -> str:
    return f"sqlserver_{source}"


def io_manager_key(task: str) -> str:
    return f"io_{task}"


def pool_name(source: SqlServerSource) -> str:
    """One pool per SQL Server (host and port), shared by every task that reads it."""
    return "sqlserver_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{source.host}_{source.port}").lower()


def build_sqlserver_resource(*, name: str, source: SqlServerSource, password: str | None = None) -> SqlServerResource:
    """The resource for one source; the password stays an EnvVar unless given (load-time catalog reads)."""
    return SqlServerResource(
        source_name=name,
        host=source.host,
        port=source.port,
        database=source.database,
        user=source.user,
        password=password if password is not None else dg.EnvVar(source.password_env),
        password_env=source.password_env,
        driver=source.driver,
        encrypt=source.encrypt,
        trust_server_certificate=source.trust_server_certificate,
        login_timeout_seconds=source.login_timeout_seconds,
        query_timeout_seconds=source.query_timeout_seconds,
        odbc_extra=dict(source.odbc_extra),
    )


def build_io_manager(*, config: DtaasConfig, task: TaskConfig) -> S3IOManager:
    destination = config.destinations[task.destination]
    return S3IOManager(
        url=destination.url,
        path_template=destination.path_template,
        format=destination.format,
        compression=destination.effective_compression,
        endpoint_url=destination.endpoint_url,
        region=destination.region,
        access_key_id_env=destination.access_key_id_env,
        secret_access_key_env=destination.secret_access_key_env,
        session_token_env=destination.session_token_env,
        file_max_rows=task.file_size.rows,
        file_max_mb=task.file_size.mb,
    )


def build_retry_policy(retry: RetryConfig) -> dg.RetryPolicy:
    backoff = {"exponential": dg.Backoff.EXPONENTIAL, "linear": dg.Backoff.LINEAR, "constant": None}[retry.backoff]
    jitter = {"none": None, "full": dg.Jitter.FULL, "plus_minus": dg.Jitter.PLUS_MINUS}[retry.jitter]
    return dg.RetryPolicy(max_retries=retry.max_retries, delay=retry.delay_seconds, backoff=backoff, jitter=jitter)


def _split(name: str) -> tuple[str, str]:
    schema, _, table = name.partition(".")
    return schema, table


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
    return match_tables(task, available)


def build_table_spec(*, task_name: str, task: TaskConfig, table: TableConfig, text_destination: bool = False) -> TableSpec:
    schema, name = _split(table.name)
    return TableSpec(
        task=task_name,
        source=task.source,
        destination=task.destination,
        schema=schema,
        table=name,
        mode=task.mode,
        primary_key=tuple(table.primary_key) if table.primary_key else None,
        columns_include=tuple(table.columns_include) if table.columns_include else None,
        columns_exclude=tuple(table.columns_exclude),
        datetime2_default=task.datetime2,
        text_destination=text_destination,
        datetime2_overrides=tuple(sorted(table.datetime2.items())),
        batch_rows=task.batch.rows,
        batch_mb=task.batch.mb,
    )


def build_table_asset(
    *,
    spec: TableSpec,
    source: SqlServerSource,
    destination_url: str,
    partitions_def: dg.DynamicPartitionsDefinition,
    retry_policy: dg.RetryPolicy,
    global_variables: dict[str, str],
) -> dg.AssetsDefinition:
    sqlserver_key = sqlserver_resource_key(spec.source)

    @dg.asset(
        key=spec.asset_key,
        partitions_def=partitions_def,
        group_name=spec.task,
        kinds={"sqlserver", "s3"},
        description=(
            f"SQL Server table {source.database}.{spec.qualified} (source {spec.source}, "
            f"{source.host}:{source.port}) copied to {destination_url} by task {spec.task}, mode {spec.mode}. "
            "One partition per load window."
        ),
        io_manager_key=io_manager_key(spec.task),
        required_resource_keys={sqlserver_key},
        retry_policy=retry_policy,
        pool=pool_name(source),
        metadata={"source_table": f"{source.database}.{spec.qualified}", "mode": spec.mode},
    )
    def table_asset(context: dg.AssetExecutionContext) -> TableStream:
        # a script may name a new partition with --tags; register it before the output is recorded
        ensure_partition(context.instance, partitions_def, context.partition_key)
        sqlserver: SqlServerResource = getattr(context.resources, sqlserver_key)
        return load_table(context, spec, sqlserver, global_variables)

    return table_asset


def build_schedule(*, task_name: str, schedule: ScheduleConfig, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    cron = schedule.cron or interval_to_cron(schedule.interval_minutes or 60)
    return dg.ScheduleDefinition(
        name=f"{task_name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=schedule.timezone,
        description=f"Full load of task {task_name} on {cron} ({schedule.timezone}).",
    )


def interval_to_cron(minutes: int) -> str:
    """Cron for an interval that divides an hour, a day or a week evenly; a clear error otherwise."""
    if minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *"
    if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
        return "0 * * * *" if minutes == 60 else f"0 */{minutes // 60} * * *"
    if minutes == 10080:
        return "0 0 * * 0"
    raise ConfigError(
        f"schedule.interval_minutes {minutes} does not divide an hour or a day evenly, so it has no cron form; "
        "use one that does (e.g. 15, 30, 120, 360) or give a cron expression"
    )


def build_task(
    *, task_name: str, config: DtaasConfig, list_tables: Callable[[], list[tuple[str, str]]]
) -> tuple[list[dg.AssetsDefinition], list, list[dg.ScheduleDefinition]]:
    task = config.tasks[task_name]
    if task.mode not in AVAILABLE_MODES:
        raise ConfigError(
            f"tasks.{task_name}.mode: {task.mode} needs the CDC sensor, which this version does not have yet; "
            "use full_load or full_load_and_cdc (whose snapshot part runs now)"
        )
    source = config.sources[task.source]
    partitions_def = dg.DynamicPartitionsDefinition(name=f"{task_name}_loads")
    retry_policy = build_retry_policy(task.retry)
    destination_url = config.destinations[task.destination].url
    assets = [
        build_table_asset(
            spec=build_table_spec(task_name=task_name, task=task, table=table,
                                  text_destination=config.destinations[task.destination].format != "parquet"),
            source=source,
            destination_url=destination_url,
            partitions_def=partitions_def,
            retry_policy=retry_policy,
            global_variables=dict(config.variables),
        )
        for table in resolve_tables(task_name=task_name, task=task, list_tables=list_tables)
    ]
    keys = [a.key for a in assets]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"task {task_name}: two tables map to the same asset key; list them explicitly")
    tables_job = build_tables_job(
        task=task_name, asset_keys=keys, parallel_tables=task.parallel_tables
    )
    full_load_job = build_full_load_job(
        task=task_name, partitions_def=partitions_def, pools={pool_name(source): source.max_concurrent_reads}
    )
    schedules = [build_schedule(task_name=task_name, schedule=task.schedule, job=full_load_job)] if task.schedule else []
    return assets, [tables_job, full_load_job], schedules


def build_definitions(config: DtaasConfig) -> dg.Definitions:
    """The whole code location from one config."""
    resources: dict[str, object] = {
        sqlserver_resource_key(name): build_sqlserver_resource(name=name, source=source)
        for name, source in config.sources.items()
    }
    assets: list[dg.AssetsDefinition] = []
    jobs: list = []
    schedules: list[dg.ScheduleDefinition] = []
    for task_name, task in config.tasks.items():

        def list_tables(name: str = task.source) -> list[tuple[str, str]]:
            source = config.sources[name]
            resource = build_sqlserver_resource(name=name, source=source, password=source.password())
            return [(t.schema, t.name) for t in resource.list_tables()]

        task_assets, task_jobs, task_schedules = build_task(task_name=task_name, config=config, list_tables=list_tables)
        assets += task_assets
        jobs += task_jobs
        schedules += task_schedules
        resources[io_manager_key(task_name)] = build_io_manager(config=config, task=task)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, resources=resources)
