"""The table asset: one SQL Server table, one partition per load window.

A materialization of partition ``k`` of ``<task>/<schema>/<table>`` is one
snapshot of that table (CDC windows come later). The asset body plans the read
(columns, exact Arrow types), then returns a lazy :class:`TableStream`; the
destination IO manager pulls batches from it and writes them, so nothing is
held in memory beyond a batch. Progress is logged as batches are pulled.

Errors that a retry cannot fix (wrong password, missing table, missing primary
key, a datetime2 column that fits no type) fail the step with
``allow_retries=False``, so the RetryPolicy is spent only on transient faults.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa

from dtaas_dagster.prefetch import prefetch
from dtaas_dagster.sqlserver.errors import PrimaryKeyRequired, SqlServerError
from dtaas_dagster.sqlserver.resource import SqlServerResource, TableDescription
from dtaas_dagster.sqlserver.snapshot import SnapshotPlan
from dtaas_dagster.sqlserver.types import Datetime2PrecisionError, UnsupportedColumnType
from dtaas_dagster.stream import TableRef, TableStream

_ASSET_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def asset_name_part(name: str) -> str:
    """A SQL Server name as a Dagster asset-key component (A-Z, a-z, 0-9, _)."""
    return _ASSET_NAME_UNSAFE.sub("_", name)


@dataclass(frozen=True)
class TableSpec:
    """What one table asset loads, resolved from the task config."""

    task: str
    source: str
    destination: str
    schema: str
    table: str
    mode: str
    primary_key: tuple[str, ...] | None
    columns_include: tuple[str, ...] | None
    columns_exclude: tuple[str, ...]
    datetime2_default: str
    text_destination: bool
    datetime2_overrides: tuple[tuple[str, str], ...]
    batch_rows: int | None
    batch_mb: float | None

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.task, asset_name_part(self.schema), asset_name_part(self.table)])

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def needs_primary_key(self) -> bool:
        # A snapshot that CDC continues from must be keyed: changes are merged per key.
        return self.mode in ("cdc", "full_load_and_cdc")


def progress(
    batches: Iterator[pa.RecordBatch], *, log: dg.DagsterLogManager, table: str, estimate: int | None
) -> Iterator[pa.RecordBatch]:
    """Yield batches unchanged, logging rows done / estimated total / percent / rows per second."""
    started = time.monotonic()
    done = 0
    for batch in batches:
        done += batch.num_rows
        elapsed = max(time.monotonic() - started, 1e-6)
        if estimate:
            share = f"{done:,} / ~{estimate:,} rows ({min(done / estimate, 1.0) * 100:.0f}%)"
        else:
            share = f"{done:,} rows (no estimate)"
        log.info(f"{table}: {share}, {done / elapsed:,.0f} rows/s")
        yield batch
    log.info(f"{table}: read {done:,} rows in {time.monotonic() - started:.1f}s")


def _selected_columns(spec: TableSpec, description: TableDescription) -> list[str] | None:
    if spec.columns_include:
        return list(spec.columns_include)
    if spec.columns_exclude:
        excluded = {name.lower() for name in spec.columns_exclude}
        unknown = excluded - {c.name.lower() for c in description.columns}
        if unknown:
            raise ValueError(
                f"columns_exclude names {', '.join(sorted(unknown))}, not columns of {spec.qualified}; "
                f"columns there: {', '.join(c.name for c in description.columns)}"
            )
        return [c.name for c in description.columns if c.name.lower() not in excluded]
    return None


def _check_primary_key(spec: TableSpec, description: TableDescription) -> tuple[str, ...]:
    key = spec.primary_key or description.primary_key
    if spec.primary_key:
        missing = [name for name in spec.primary_key if description.column(name) is None]
        if missing:
            raise PrimaryKeyRequired(
                f"primary_key for {spec.qualified} names {', '.join(missing)}, which are not columns of the table"
            )
    if spec.needs_primary_key and not key:
        raise PrimaryKeyRequired(
            f"table {spec.qualified} in source '{spec.source}' has no primary key, and mode {spec.mode} needs one "
            "to apply changes per row. Declare one in SQL Server, or set primary_key: [...] for this table in "
            "dtaas.yaml (a TableConfig entry), or use mode full_load."
        )
    return tuple(key)


def template_variables(
    spec: TableSpec, *, database: str, partition_key: str, run_id: str, global_variables: dict[str, str]
) -> dict[str, str]:
    """Built-in path-template variables plus the global ones (built-ins win)."""
    return {
        **global_variables,
        "sourceDatabaseName": database,
        "sourceSchemaName": spec.schema,
        "sourceTableName": spec.table,
        "partitionKey": partition_key,
        "loadDate": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "runId": run_id,
        "taskName": spec.task,
    }


def read_table_batches(
    sqlserver: SqlServerResource, plan: SnapshotPlan, *, batch_rows: int | None, batch_mb: float | None
) -> Iterator[pa.RecordBatch]:
    """The read side of a load: the snapshot reader, read ahead on a thread so the ODBC
    fetch and the file writer run at the same time (bench/RESULTS.md)."""
    return prefetch(sqlserver.read_snapshot(plan, batch_rows=batch_rows, batch_mb=batch_mb))


def load_table(
    context: dg.AssetExecutionContext,
    spec: TableSpec,
    sqlserver: SqlServerResource,
    global_variables: dict[str, str],
) -> TableStream:
    """Plan and open the snapshot read of one table partition; the IO manager drains it."""
    partition_key = context.partition_key
    try:
        description = sqlserver.describe_table(spec.schema, spec.table)
        primary_key = _check_primary_key(spec, description)
        plan = sqlserver.plan_snapshot(
            description,
            columns=_selected_columns(spec, description),
            datetime2_default=spec.datetime2_default,
            text_destination=spec.text_destination,
            datetime2_overrides=dict(spec.datetime2_overrides),
        )
    except (Datetime2PrecisionError, UnsupportedColumnType, PrimaryKeyRequired, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except SqlServerError as exc:
        if not exc.retryable:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        raise
    context.log.info(
        f"{spec.qualified}: reading {len(plan.columns)} columns, ~{description.row_estimate or 0:,} rows, "
        f"snapshot isolation {'on' if plan.snapshot_isolation else 'off (database does not allow it)'}"
    )
    batches = read_table_batches(sqlserver, plan, batch_rows=spec.batch_rows, batch_mb=spec.batch_mb)
    return TableStream(
        table=TableRef(description.table.database, spec.schema, spec.table),
        schema=plan.target_schema,
        batches=progress(batches, log=context.log, table=spec.qualified, estimate=description.row_estimate),
        partition_key=partition_key,
        estimated_rows=description.row_estimate,
        variables=template_variables(
            spec,
            database=description.table.database,
            partition_key=partition_key,
            run_id=context.run_id,
            global_variables=global_variables,
        ),
        source_types=plan.source_types,
        primary_key=primary_key,
    )
