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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pyarrow as pa

from dtaas_dagster.prefetch import prefetch
from dtaas_dagster.sqlserver.errors import PrimaryKeyRequired, SqlServerError
from dtaas_dagster.sqlserver.facts import TableDescription
from dtaas_dagster.sqlserver.names import asset_name_part
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.sqlserver.snapshot import (
    SnapshotOptions,
    convert_batch,
    plan_snapshot,
    profile_columns,
    snapshot_read,
)
from dtaas_dagster.sqlserver.types import Datetime2PrecisionError, UnsupportedColumnType
from dtaas_dagster.stream import TableRef, TableStream
from dtaas_dagster.table_transforms import prepare_transforms, source_types_after, transformed
from dtaas_dagster.variables import builtin_values, template_values

# Progress lines at most this often per table (plus the first and the last).
PROGRESS_EVERY_SECONDS = 5.0


class PermanentLoadError(RuntimeError):
    """A load that a retry cannot fix; the message names the thing and the fix."""


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
    transformations: tuple[Any, ...] = ()  # TransformSpec models, from the table's `transformations:`

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


def selected_columns(spec: TableSpec, description: TableDescription) -> tuple[str, ...] | None:
    """The columns to copy (None: all), checked against the table; names compare case-insensitively."""
    names = {c.name.lower() for c in description.columns}
    available = ", ".join(c.name for c in description.columns)
    if spec.columns_include:
        unknown = [n for n in spec.columns_include if n.lower() not in names]
        if unknown:
            raise PermanentLoadError(
                f"columns_include for {spec.qualified} names {', '.join(unknown)}, not columns of the table; "
                f"columns there: {available}. Fix columns_include in dtaas.yaml.")
        return tuple(description.column(n).name for n in spec.columns_include)  # type: ignore[union-attr]
    if spec.columns_exclude:
        excluded = {name.lower() for name in spec.columns_exclude}
        unknown = sorted(excluded - names)
        if unknown:
            raise PermanentLoadError(
                f"columns_exclude for {spec.qualified} names {', '.join(unknown)}, not columns of the table; "
                f"columns there: {available}. Fix columns_exclude in dtaas.yaml.")
        kept = tuple(c.name for c in description.columns if c.name.lower() not in excluded)
        if not kept:
            raise PermanentLoadError(
                f"columns_exclude for {spec.qualified} excludes every column; keep at least one.")
        return kept
    return None


def snapshot_options(spec: TableSpec, description: TableDescription) -> SnapshotOptions:
    return SnapshotOptions(
        columns=selected_columns(spec, description),
        datetime2_default=spec.datetime2_default,
        datetime2_overrides=dict(spec.datetime2_overrides),
        text_destination=spec.text_destination,
    )


def check_primary_key(spec: TableSpec, description: TableDescription) -> tuple[str, ...]:
    """The key to record: configured (checked against the table) or the catalog's."""
    if spec.primary_key:
        missing = [name for name in spec.primary_key if description.column(name) is None]
        if missing:
            raise PrimaryKeyRequired(
                f"primary_key for {spec.qualified} names {', '.join(missing)}, which "
                f"{'is not a column' if len(missing) == 1 else 'are not columns'} of the table; columns there: "
                f"{', '.join(c.name for c in description.columns)}. Fix primary_key in dtaas.yaml."
            )
        return tuple(description.column(n).name for n in spec.primary_key)  # type: ignore[union-attr]
    if spec.needs_primary_key and not description.primary_key:
        raise PrimaryKeyRequired(
            f"table {spec.qualified} in source '{spec.source}' has no primary key, and mode {spec.mode} needs one "
            "to apply changes per row. Declare one in SQL Server, or set primary_key: [...] for this table in "
            "dtaas.yaml, or use mode full_load."
        )
    return description.primary_key


def progress(
    batches: Iterator[pa.RecordBatch], *, log: dg.DagsterLogManager, table: str, estimate: int | None
) -> Iterator[pa.RecordBatch]:
    """Yield batches unchanged, logging rows done / estimated total / percent / rows per second.

    At most one line every PROGRESS_EVERY_SECONDS, so a table of many small
    batches does not flood the run's log.
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
            log.info(f"{table}: {share}, {done / elapsed:,.0f} rows/s")
        yield batch
    elapsed = time.monotonic() - started
    log.info(f"{table}: read {done:,} rows in {elapsed:.1f}s ({done / max(elapsed, 1e-6):,.0f} rows/s)")


def open_snapshot(
    spec: TableSpec,
    sqlserver: SqlServerResource,
    *,
    partition_key: str,
    run_id: str,
    global_variables: Mapping[str, str],
    log: dg.DagsterLogManager,
    transforms: Sequence[Any] = (),
) -> TableStream:
    """Plan and open the snapshot read of one table partition; the destination drains it."""
    try:
        facts = sqlserver.table_facts(
            spec.schema, spec.table,
            profile_columns=lambda description: profile_columns(description, snapshot_options(spec, description)),
        )
        primary_key = check_primary_key(spec, facts.description)
        plan = plan_snapshot(facts, snapshot_options(spec, facts.description))
    except (Datetime2PrecisionError, UnsupportedColumnType, PrimaryKeyRequired, ValueError) as exc:
        raise PermanentLoadError(str(exc)) from None
    except SqlServerError as exc:
        if not exc.retryable:
            raise PermanentLoadError(str(exc)) from None
        raise
    description = facts.description
    log.info(
        f"{spec.qualified}: reading {len(plan.columns)} columns, ~{description.row_estimate or 0:,} rows, "
        f"snapshot isolation {'on' if plan.snapshot_isolation else 'off (database does not allow it)'}"
    )
    builtins = builtin_values(
        database=description.table.database, schema=spec.schema, table=spec.table,
        partition_key=partition_key, run_id=run_id, task=spec.task,
    )
    variables = template_values(builtins, global_variables)
    # Transforms are validated against the planned schema before any row is read (table_transforms.py).
    prepared = prepare_transforms(spec, plan, snapshot_read(plan), transforms=transforms, primary_key=primary_key,
                                  variables=variables, log=log)
    fetched = sqlserver.read_arrow(prepared.read, batch_rows=spec.batch_rows, batch_mb=spec.batch_mb)
    # Read ahead on a thread so the ODBC fetch, the transforms and the file writer run at once (bench/RESULTS.md).
    converted = prefetch(transformed(prepared.chain, (convert_batch(batch, plan) for batch in fetched)))
    return TableStream(
        table=TableRef(description.table.database, spec.schema, spec.table),
        schema=prepared.chain.output_schema,
        batches=progress(converted, log=log, table=spec.qualified, estimate=description.row_estimate),
        partition_key=partition_key,
        estimated_rows=description.row_estimate,
        variables=variables,
        source_types=source_types_after(prepared.chain, plan.source_types),
        primary_key=prepared.chain.primary_key,
        metadata=prepared.metadata,
    )
