"""One table, one partition: read the facts, plan the read, open the lazy batch stream.

This is the body of a table load without the Dagster wiring (that is in
:mod:`dtaas_dagster.assets`). :func:`open_snapshot` asks SQL Server for the
table's facts over one connection, plans the exact Arrow schema (a pure
function of those facts), and returns a :class:`TableStream` whose batches are
pulled from arrow-odbc only as the destination writes them, so nothing is held
in memory beyond a few batches. Progress is logged as batches are pulled.

Errors that a retry cannot fix (wrong password, missing table, missing primary
key, a datetime2 column that fits no type, a config that names unknown
columns) are :class:`PermanentLoadError`; the step fails without spending its
retries on them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import dagster as dg
import pyarrow as pa

from dtaas_dagster.errors import PermanentLoadError
from dtaas_dagster.logs import fields
from dtaas_dagster.prefetch import prefetch
from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.errors import PrimaryKeyRequired, SqlServerError
from dtaas_dagster.sqlserver.facts import TableDescription, TableFacts
from dtaas_dagster.sqlserver.names import asset_name_part
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.sqlserver.snapshot import (
    SnapshotOptions,
    SnapshotPlan,
    convert_batch,
    plan_snapshot,
    profile_columns,
    snapshot_read,
)
from dtaas_dagster.sqlserver.types import Datetime2PrecisionError, UnsupportedColumnType
from dtaas_dagster.stream import TableRef, TableStream
from dtaas_dagster.variables import builtin_values, template_values

# Progress lines at most this often per table (plus the first and the last).
PROGRESS_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class TableSpec:
    """What one table asset loads, resolved from the task config."""

    task: str
    source: str
    destination: str
    schema: str
    table: str
    mode: str
    primary_key: tuple[str, ...] | None = None
    columns_include: tuple[str, ...] | None = None
    columns_exclude: tuple[str, ...] = ()
    datetime2_default: str = "auto"
    text_destination: bool = False
    datetime2_overrides: tuple[tuple[str, str], ...] = ()
    batch_rows: int | None = 50_000
    batch_mb: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

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


def _column_problems(spec: TableSpec, description: TableDescription) -> list[str]:
    names = {c.name.lower() for c in description.columns}
    problems = []
    for field_name, wanted in (("columns_include", spec.columns_include or ()), ("columns_exclude", spec.columns_exclude),
                               ("primary_key", spec.primary_key or ()),
                               ("datetime2", tuple(name for name, _ in spec.datetime2_overrides))):
        unknown = [name for name in wanted if name.lower() not in names]
        if unknown:
            problems.append(f"{field_name} names {', '.join(unknown)}, "
                            f"{'not a column' if len(unknown) == 1 else 'not columns'} of the table")
    if spec.columns_exclude and not problems and all(c.name.lower() in {n.lower() for n in spec.columns_exclude}
                                                     for c in description.columns):
        problems.append("columns_exclude excludes every column; keep at least one")
    return problems


def check_table_config(spec: TableSpec, description: TableDescription) -> None:
    """Every problem of the table's options against the catalog, in one error (names compare case-insensitively)."""
    problems = _column_problems(spec, description)
    if spec.needs_primary_key and not spec.primary_key and not description.primary_key:
        problems.append(
            f"the table has no primary key, and mode {spec.mode} needs one to apply changes per row: declare one "
            "in SQL Server, or set primary_key: [...] for this table, or use mode full_load")
    if problems:
        raise PermanentLoadError(
            f"table {spec.qualified} in source '{spec.source}' (task {spec.task}): " + "; ".join(problems)
            + f". Columns there: {', '.join(c.name for c in description.columns)}. Fix the table's entry in dtaas.yaml."
        )


def selected_columns(spec: TableSpec, description: TableDescription) -> tuple[str, ...] | None:
    """The columns to copy (None: all), in the table's spelling; call check_table_config first."""
    if spec.columns_include:
        return tuple(description.column(n).name for n in spec.columns_include)  # type: ignore[union-attr]
    if spec.columns_exclude:
        excluded = {name.lower() for name in spec.columns_exclude}
        return tuple(c.name for c in description.columns if c.name.lower() not in excluded)
    return None


def snapshot_options(spec: TableSpec, description: TableDescription) -> SnapshotOptions:
    return SnapshotOptions(
        columns=selected_columns(spec, description),
        datetime2_default=spec.datetime2_default,
        datetime2_overrides=dict(spec.datetime2_overrides),
        text_destination=spec.text_destination,
    )


def primary_key(spec: TableSpec, description: TableDescription) -> tuple[str, ...]:
    """The key to record: configured (in the table's spelling) or the catalog's."""
    if spec.primary_key:
        return tuple(description.column(n).name for n in spec.primary_key)  # type: ignore[union-attr]
    return description.primary_key


@dataclass(frozen=True)
class TablePlan:
    """A table's facts and its read plan: everything decided before a row moves."""

    facts: TableFacts
    plan: SnapshotPlan
    primary_key: tuple[str, ...]


def plan_table(spec: TableSpec, sqlserver: SqlServerResource) -> TablePlan:
    """Facts over one connection, the config checked against them, the exact plan.

    ``dtaas check`` runs this too, so whatever a load would refuse before moving
    data, the preflight refuses with the same message.
    """
    try:
        def wanted(description: TableDescription) -> list[queries.ProfileColumn]:
            check_table_config(spec, description)
            return profile_columns(description, snapshot_options(spec, description))

        facts = sqlserver.table_facts(spec.schema, spec.table, profile_columns=wanted)
        plan = plan_snapshot(facts, snapshot_options(spec, facts.description))
    except (Datetime2PrecisionError, UnsupportedColumnType, PrimaryKeyRequired, ValueError) as exc:
        raise PermanentLoadError(str(exc)) from None
    except SqlServerError as exc:
        if not exc.retryable:
            raise PermanentLoadError(str(exc)) from None
        raise
    return TablePlan(facts, plan, primary_key(spec, facts.description))


def progress(
    batches: Iterator[pa.RecordBatch], *, log: dg.DagsterLogManager, table: str, estimate: int | None,
    partition: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield batches unchanged, logging rows done / estimated total / percent / rows per second.

    At most one line every PROGRESS_EVERY_SECONDS, so a table of many small
    batches does not flood the run's log. Each line also carries its numbers as
    structured fields (:func:`dtaas_dagster.logs.fields`) for JSON logs.
    """
    started = last = time.monotonic()
    done = 0
    for batch in batches:
        done += batch.num_rows
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS or done == batch.num_rows:
            last = now
            elapsed = max(now - started, 1e-6)
            if estimate:
                share = f"{done:,} / ~{estimate:,} rows ({min(done / estimate, 1.0) * 100:.0f}%)"
            else:
                share = f"{done:,} rows (no estimate)"
            log.info(f"{table}: {share}, {done / elapsed:,.0f} rows/s",
                     extra=fields("progress", table=table, partition=partition, rows=done,
                                  rows_per_second=round(done / elapsed), estimated_rows=estimate))
        yield batch
    elapsed = time.monotonic() - started
    log.info(f"{table}: read {done:,} rows in {elapsed:.1f}s ({done / max(elapsed, 1e-6):,.0f} rows/s)",
             extra=fields("table_read", table=table, partition=partition, rows=done,
                          rows_per_second=round(done / max(elapsed, 1e-6)), elapsed_seconds=round(elapsed, 3)))


def open_snapshot(
    spec: TableSpec,
    sqlserver: SqlServerResource,
    *,
    partition_key: str,
    run_id: str,
    global_variables: Mapping[str, str],
    log: dg.DagsterLogManager,
) -> TableStream:
    """Plan and open the snapshot read of one table partition; the destination drains it."""
    planned = plan_table(spec, sqlserver)
    plan, description = planned.plan, planned.facts.description
    log.info(
        f"{spec.qualified}: reading {len(plan.columns)} columns, ~{description.row_estimate or 0:,} rows, "
        f"snapshot isolation {'on' if plan.snapshot_isolation else 'off (database does not allow it)'}",
        extra=fields("table_start", table=spec.qualified, partition=partition_key, task=spec.task,
                     columns=len(plan.columns), estimated_rows=description.row_estimate),
    )
    fetched = sqlserver.read_arrow(snapshot_read(plan), batch_rows=spec.batch_rows, batch_mb=spec.batch_mb)
    # Read ahead on a thread so the ODBC fetch and the file writer run at once (bench/RESULTS.md).
    converted = prefetch(convert_batch(batch, plan) for batch in fetched)
    builtins = builtin_values(
        database=description.table.database, schema=spec.schema, table=spec.table,
        partition_key=partition_key, run_id=run_id, task=spec.task,
    )
    return TableStream(
        table=TableRef(description.table.database, spec.schema, spec.table),
        schema=plan.target_schema,
        batches=progress(converted, log=log, table=spec.qualified, estimate=description.row_estimate,
                         partition=partition_key),
        partition_key=partition_key,
        estimated_rows=description.row_estimate,
        variables=template_values(builtins, global_variables),
        source_types=plan.source_types,
        primary_key=planned.primary_key,
    )
