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
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg
import pyarrow as pa

from dtaas_dagster.cdc.changes import SEQVAL, ChangePlan, change_batches, changes_read
from dtaas_dagster.errors import PermanentLoadError, WindowUnavailable
from dtaas_dagster.logs import fields
from dtaas_dagster.prefetch import prefetch
from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.bulk import batch_rows_for
from dtaas_dagster.sqlserver.cdc import CdcNotEnabled, ChangeWindow, enable_statement
from dtaas_dagster.sqlserver.errors import PrimaryKeyRequired, SqlServerError
from dtaas_dagster.sqlserver.facts import TableDescription, TableFacts
from dtaas_dagster.sqlserver.lsn import ZERO
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
from dtaas_dagster.stream import SourceCount, TableRef, TableStream
from dtaas_dagster.table_transforms import prepare_transforms, source_types_after, transformed, transformed_changes
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
    schema_drift: str = "evolve"
    step_checks: tuple[str, ...] = ("row_count", "manifest", "column_schema_change")
    update_before_images: bool = False
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


def _column_problems(spec: TableSpec, description: TableDescription) -> list[str]:
    names = {c.name.lower() for c in description.columns}
    problems = []
    for field_name, wanted in (
        ("columns_include", spec.columns_include or ()),
        ("columns_exclude", spec.columns_exclude),
        ("primary_key", spec.primary_key or ()),
        ("datetime2", tuple(name for name, _ in spec.datetime2_overrides)),
    ):
        unknown = [name for name in wanted if name.lower() not in names]
        if unknown:
            problems.append(
                f"{field_name} names {', '.join(unknown)}, "
                f"{'not a column' if len(unknown) == 1 else 'not columns'} of the table"
            )
    if (
        spec.columns_exclude
        and not problems
        and all(c.name.lower() in {n.lower() for n in spec.columns_exclude} for c in description.columns)
    ):
        problems.append("columns_exclude excludes every column; keep at least one")
    return problems


def check_table_config(spec: TableSpec, description: TableDescription) -> None:
    """Every problem of the table's options against the catalog, in one error (names compare case-insensitively)."""
    problems = _column_problems(spec, description)
    if spec.needs_primary_key and not spec.primary_key and not description.primary_key:
        problems.append(
            f"the table has no primary key, and mode {spec.mode} needs one to apply changes per row: declare one "
            "in SQL Server, or set primary_key: [...] for this table, or use mode full_load"
        )
    elif spec.needs_primary_key and not problems:
        kept = {name.lower() for name in (selected_columns(spec, description) or [c.name for c in description.columns])}
        dropped = [name for name in (spec.primary_key or description.primary_key) if name.lower() not in kept]
        if dropped:
            problems.append(
                f"the columns selection drops the key column(s) {', '.join(dropped)}, which mode "
                f"{spec.mode} needs to apply changes per row; keep them"
            )
    if problems:
        raise PermanentLoadError(
            f"table {spec.qualified} in source '{spec.source}' (task {spec.task}): "
            + "; ".join(problems)
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

        facts = sqlserver.table_facts(spec.schema, spec.table, profile_columns=wanted, cdc=spec.needs_primary_key)
        plan = plan_snapshot(facts, snapshot_options(spec, facts.description))
        if spec.mode == "full_load_and_cdc" and not facts.capture_instances:
            raise PermanentLoadError(
                f"table {spec.qualified} in source '{spec.source}' is not captured by CDC, and mode "
                f"full_load_and_cdc continues from its snapshot with its changes: run "
                f"{enable_statement(spec.schema, spec.table)} (and EXEC sys.sp_cdc_enable_db first if the "
                "database is not enabled), then load again; see docs/cdc.md"
            )
    except (Datetime2PrecisionError, UnsupportedColumnType, PrimaryKeyRequired, ValueError) as exc:
        raise PermanentLoadError(str(exc)) from None
    except SqlServerError as exc:
        if not exc.retryable:
            raise PermanentLoadError(str(exc)) from None
        raise
    return TablePlan(facts, plan, primary_key(spec, facts.description))


def _share(done: int, estimate: int | None) -> str:
    if estimate:
        return f"{done:,} / ~{estimate:,} rows ({min(done / estimate, 1.0) * 100:.0f}%)"
    return f"{done:,} rows (no estimate)"


def progress(
    batches: Iterator[pa.RecordBatch],
    *,
    log: dg.DagsterLogManager,
    table: str,
    estimate: int | None,
    partition: str | None = None,
    details: str = "",
) -> Iterator[pa.RecordBatch]:
    """Yield batches unchanged, logging rows done / estimated total / percent / rows per second.

    A line at most every PROGRESS_EVERY_SECONDS while the table is read, and one
    when it is done (with ``details``). Every line is an event the Dagster
    instance stores (several ms of CPU each), so a table read in a few seconds
    logs one line, and a big one does not flood the run's log. Each line also
    carries its numbers as structured fields (:func:`dtaas_dagster.logs.fields`)
    for JSON logs.
    """
    started = last = time.monotonic()
    done = 0
    for batch in batches:
        done += batch.num_rows
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS:
            last = now
            rate = done / max(now - started, 1e-6)
            log.info(
                f"{table}: {_share(done, estimate)}, {rate:,.0f} rows/s",
                extra=fields(
                    "progress",
                    table=table,
                    partition=partition,
                    rows=done,
                    rows_per_second=round(rate),
                    estimated_rows=estimate,
                ),
            )
        yield batch
    elapsed = time.monotonic() - started
    rate = done / max(elapsed, 1e-6)
    log.info(
        f"{table}: read {_share(done, estimate)} in {elapsed:.1f}s ({rate:,.0f} rows/s)"
        + (f"; {details}" if details else ""),
        extra=fields(
            "table_read",
            table=table,
            partition=partition,
            rows=done,
            rows_per_second=round(rate),
            elapsed_seconds=round(elapsed, 3),
            estimated_rows=estimate,
        ),
    )


@dataclass(frozen=True)
class SchemaChange:
    """Columns that changed since the previous load, by SQL Server type."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.retyped)

    def describe(self, previous: Mapping[str, str], current: Mapping[str, str]) -> str:
        parts = [
            f"added {', '.join(f'{n} ({current[n]})' for n in self.added)}" if self.added else "",
            f"removed {', '.join(self.removed)}" if self.removed else "",
            "retyped " + ", ".join(f"{n} ({previous[n]} -> {current[n]})" for n in self.retyped)
            if self.retyped
            else "",
        ]
        return "; ".join(p for p in parts if p)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": list(self.added), "removed": list(self.removed), "retyped": list(self.retyped)}


def schema_change(previous: Mapping[str, str] | None, current: Mapping[str, str]) -> SchemaChange:
    """What changed between two {column: SQL Server type} maps (nothing when there is no previous load)."""
    if not previous:
        return SchemaChange()
    return SchemaChange(
        added=tuple(n for n in current if n not in previous),
        removed=tuple(n for n in previous if n not in current),
        retyped=tuple(n for n in current if n in previous and previous[n] != current[n]),
    )


class SchemaDriftError(PermanentLoadError):
    """A table's columns changed and its task has ``schema_drift: fail``; ``change`` says how."""

    def __init__(
        self, message: str, change: SchemaChange, previous: Mapping[str, str], current: Mapping[str, str]
    ) -> None:
        super().__init__(message)
        self.change, self.previous, self.current = change, dict(previous), dict(current)


def check_drift(
    spec: TableSpec, previous: Mapping[str, str] | None, current: Mapping[str, str], log: dg.DagsterLogManager
) -> SchemaChange:
    """Apply the task's schema_drift policy; returns the change (empty: none, or ignored)."""
    change = schema_change(previous, current)
    if not change:
        return change
    text = change.describe(previous or {}, current)
    if spec.schema_drift == "fail":
        raise SchemaDriftError(
            f"table {spec.qualified} in source '{spec.source}': its columns changed since the previous load ({text}) "
            f"and task {spec.task} has schema_drift: fail. Adapt the consumers, then set schema_drift: evolve (or "
            "ignore) for one load; see docs/cdc.md",
            change,
            previous or {},
            current,
        )
    log.warning(
        f"{spec.qualified}: columns changed since the previous load: {text} (schema_drift: {spec.schema_drift})"
    )
    return change if spec.schema_drift == "evolve" else SchemaChange()


def _ignore_drift_columns(
    spec: TableSpec, previous: Mapping[str, str] | None, description: TableDescription
) -> TableSpec:
    """schema_drift: ignore keeps the previous load's columns (those that still exist)."""
    if spec.schema_drift != "ignore" or not previous:
        return spec
    existing = {c.name.lower() for c in description.columns}
    kept = tuple(name for name in previous if name.lower() in existing)
    return replace(spec, columns_include=kept or spec.columns_include, columns_exclude=())


def open_snapshot(
    spec: TableSpec,
    sqlserver: SqlServerResource,
    *,
    partition_key: str,
    run_id: str,
    global_variables: Mapping[str, str],
    log: dg.DagsterLogManager,
    previous_types: Mapping[str, str] | None = None,
    transforms: Sequence[Any] = (),
) -> TableStream:
    """Plan and open the snapshot read of one table partition; the destination drains it.

    For a table whose changes CDC will follow (full_load_and_cdc), the max LSN is
    read before the snapshot's SELECT and recorded as the manifest's
    ``cdc.start_lsn`` (docs/cdc.md, "the handoff").
    """
    planned = plan_table(spec, sqlserver)
    if spec.schema_drift == "ignore" and previous_types:
        planned = plan_table(_ignore_drift_columns(spec, previous_types, planned.facts.description), sqlserver)
    plan, description = planned.plan, planned.facts.description
    change = check_drift(spec, previous_types, plan.source_types, log)
    batch_rows = batch_rows_for(spec.batch_rows, description.row_estimate)
    details = (
        f"{len(plan.columns)} columns, snapshot isolation "
        f"{'on' if plan.snapshot_isolation else 'off (database does not allow it)'}"
    )
    if description.row_estimate is None or batch_rows is None or description.row_estimate > batch_rows:
        # more than one batch to read: say so now (a table of one batch logs one line, when done)
        log.info(
            f"{spec.qualified}: reading ~{description.row_estimate or 0:,} rows; {details}",
            extra=fields(
                "table_start",
                table=spec.qualified,
                partition=partition_key,
                task=spec.task,
                columns=len(plan.columns),
                estimated_rows=description.row_estimate,
            ),
        )
    cdc: dict[str, str] = {}
    if spec.mode == "full_load_and_cdc":
        instance = planned.facts.capture_instances[-1]
        start = planned.facts.cdc_max_lsn or ZERO
        if start < instance.start_lsn:
            # the capture job has not reached this instance yet: every change of it is still to be
            # captured (none can have been purged), so CDC continues from the instance's start
            start = instance.start_lsn.decrement()
        cdc = {"start_lsn": start.hex, "capture_instance": instance.name}
        if not plan.snapshot_isolation:
            log.warning(
                f"{spec.qualified}: the database does not allow snapshot isolation, so the snapshot is read under "
                "READ COMMITTED: it is not one point in time (a row changed during the read may appear twice or "
                "in a mixed state). Replaying it with the changes after its start LSN still gives the source "
                "table exactly (docs/cdc.md). ALTER DATABASE ... SET ALLOW_SNAPSHOT_ISOLATION ON to get both."
            )
    builtins = builtin_values(
        database=description.table.database,
        schema=spec.schema,
        table=spec.table,
        partition_key=partition_key,
        run_id=run_id,
        task=spec.task,
    )
    variables = template_values(builtins, global_variables)
    # Transforms are checked against the planned schema before any row is read (table_transforms.py).
    prepared = prepare_transforms(
        spec,
        plan.target_schema,
        plan.source_types,
        snapshot_read(plan),
        snapshot=plan,
        transforms=transforms,
        primary_key=planned.primary_key,
        variables=variables,
        log=log,
    )
    count = SourceCount()
    fetched = sqlserver.read_arrow(prepared.read, batch_rows=batch_rows, batch_mb=spec.batch_mb, count=count)
    # Read ahead on a thread so the ODBC fetch, the transforms and the writer run at once (bench/RESULTS.md).
    converted = prefetch(transformed(prepared.chain, (convert_batch(batch, plan) for batch in fetched), count))
    return TableStream(
        table=TableRef(description.table.database, spec.schema, spec.table),
        schema=prepared.chain.output_schema,
        batches=progress(
            converted,
            log=log,
            table=spec.qualified,
            estimate=description.row_estimate,
            partition=partition_key,
            details=details,
        ),
        partition_key=partition_key,
        estimated_rows=description.row_estimate,
        variables=variables,
        source_types=source_types_after(prepared.chain, plan.source_types),
        primary_key=prepared.chain.primary_key,
        kind="snapshot",
        cdc=cdc,
        schema_change=change.as_dict() if change else {},
        metadata=prepared.metadata,
        source_count=count,
    )


def open_changes(
    spec: TableSpec,
    sqlserver: SqlServerResource,
    window: ChangeWindow,
    *,
    partition_key: str,
    run_id: str,
    global_variables: Mapping[str, str],
    log: dg.DagsterLogManager,
    previous_types: Mapping[str, str] | None = None,
    transforms: Sequence[Any] = (),
) -> TableStream:
    """Plan and open the read of one change window of one table (cdc/changes.py)."""
    try:
        effective = spec
        facts = None
        for _ in range(2):  # the second pass applies schema_drift: ignore to the columns

            def wanted(description: TableDescription, s: TableSpec = effective) -> list[queries.ProfileColumn]:
                # before check_table_config, which would call a key column the instance leaves out "not a column"
                captured = {c.name.lower() for c in description.columns}
                uncaptured = [k for k in (s.primary_key or description.primary_key) if k.lower() not in captured]
                if uncaptured:
                    raise PermanentLoadError(
                        f"capture instance {window.capture_instance} of {s.qualified} does not capture the key "
                        f"column(s) {', '.join(uncaptured)}; recreate it with them (@captured_column_list), see "
                        "docs/cdc.md"
                    )
                check_table_config(replace(s, mode="full_load"), description)
                return profile_columns(description, snapshot_options(s, description))

            facts = sqlserver.change_facts(window, profile_columns=wanted, source=(spec.schema, spec.table))
            if facts.cdc_min_lsn is not None and window.from_lsn < facts.cdc_min_lsn:
                raise WindowUnavailable(
                    f"CDC retention gap on {spec.qualified}: the window {window} needs changes from LSN "
                    f"{window.from_lsn.hex}, but capture instance {window.capture_instance} now starts at "
                    f"{facts.cdc_min_lsn.hex} (SQL Server's cleanup job purged them). Nothing was written. Remedy: "
                    f"take a new snapshot of the table (launch {spec.task}_full_load); CDC continues from it. "
                    "See docs/cdc.md, 'Retention gap'."
                )
            ignored = _ignore_drift_columns(spec, previous_types, facts.description)
            if ignored == effective:
                break
            effective = ignored
        assert facts is not None
        data = plan_snapshot(facts, snapshot_options(effective, facts.description))
        key = primary_key(spec, facts.description) if spec.primary_key or facts.description.primary_key else ()
        if not key:
            raise PermanentLoadError(
                f"table {spec.qualified} in source '{spec.source}' has no primary key, and its changes are applied "
                "per key: declare one in SQL Server, or set primary_key: [...] for this table in dtaas.yaml"
            )
    except CdcNotEnabled as exc:  # the window's capture instance is gone: the sensor plans the table again
        raise WindowUnavailable(str(exc)) from None
    except (Datetime2PrecisionError, UnsupportedColumnType, PrimaryKeyRequired, ValueError) as exc:
        raise PermanentLoadError(str(exc)) from None
    except SqlServerError as exc:
        if not exc.retryable:
            raise PermanentLoadError(str(exc)) from None
        raise
    change = check_drift(spec, previous_types, data.source_types, log)
    plan = ChangePlan(data, window, tuple(key), spec.update_before_images)
    log.info(
        f"{spec.qualified}: reading changes {window} ({len(data.columns)} columns)",
        extra=fields(
            "changes_start", table=spec.qualified, partition=partition_key, task=spec.task, columns=len(data.columns)
        ),
    )
    builtins = builtin_values(
        database=sqlserver.database,
        schema=spec.schema,
        table=spec.table,
        partition_key=partition_key,
        run_id=run_id,
        task=spec.task,
    )
    variables = template_values(builtins, global_variables)
    # The same chain as the snapshot's, on before- and after-images alike; never pushed down (docs/transforms.md).
    prepared = prepare_transforms(
        spec,
        plan.target_schema,
        data.source_types,
        changes_read(plan),
        snapshot=None,
        transforms=transforms,
        primary_key=tuple(key),
        variables=variables,
        log=log,
    )
    count = SourceCount()
    fetched = sqlserver.read_arrow(prepared.read, batch_rows=spec.batch_rows, batch_mb=spec.batch_mb, count=count)
    batches = prefetch(transformed_changes(prepared.chain, change_batches(fetched, plan, count), count))
    return TableStream(
        table=TableRef(sqlserver.database, spec.schema, spec.table),
        schema=prepared.chain.output_schema,
        batches=progress(batches, log=log, table=spec.qualified, estimate=None, partition=partition_key),
        partition_key=partition_key,
        variables=variables,
        source_types=source_types_after(prepared.chain, data.source_types),
        primary_key=prepared.chain.primary_key,
        metadata=prepared.metadata,
        kind="cdc",
        cdc=window.as_config(),
        schema_change=change.as_dict() if change else {},
        source_count=count,
        unique_columns=(SEQVAL,),
    )
