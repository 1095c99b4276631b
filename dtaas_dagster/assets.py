"""Table assets: every table is an asset; several tables share one step.

Why tables share steps. Each step of Dagster's multiprocess executor is a new
process that imports Dagster and this package and loads the definitions:
about 3.7 CPU-seconds before a row moves (measured, bench/RESULTS.md). A task
over a whole database (``dbo.*``, hundreds of tables) would spend most of its
time starting processes. So a task's tables are dealt round-robin into at
most ``parallel_tables`` groups (or groups of ``tables_per_step``), and each
group is one subsettable ``multi_asset`` step that loads its tables one after
the other, in one process. What a Dagster user relies on still holds:

- every table is its own asset with its own partition, materialization,
  metadata and progress lines;
- ``parallel_tables`` is the executor's ``max_concurrent``, and every group
  step claims one slot in its SQL Server's concurrency pool, while reading one
  table at a time, so the pool bounds the reads across tasks;
- a table that fails does not stop the other tables of its group; the step
  then fails, and its retry (the task's RetryPolicy, with backoff) loads only
  the tables that this run has not materialized yet;
- "Re-execute from asset failure" in the UI runs only the tables that failed.

The group writes through its destination's IO manager (``write_stream``) and
yields a ``MaterializeResult`` per table, the pattern of Dagster's own ELT
integrations; the IO manager still serves ``load_input`` to downstream assets.
"""

import contextlib
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg
from pydantic import Field

from dtaas_dagster.checks import failed_load_results, load_check_results, recheck, selected_checks, step_check_specs
from dtaas_dagster.errors import PermanentLoadError, WindowUnavailable
from dtaas_dagster.logs import fields
from dtaas_dagster.partitions import is_change_key
from dtaas_dagster.sqlserver.cdc import ChangeWindow
from dtaas_dagster.sqlserver.errors import SqlServerError
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.stream import TableStream
from dtaas_dagster.table_load import TableSpec, open_changes, open_snapshot
from dtaas_dagster.table_transforms import VARIABLES_KEY, op_config_field, step_transforms, table_variables


class TableWriter(Protocol):
    """What a destination IO manager offers a table step."""

    def write_stream(
        self,
        stream: TableStream,
        *,
        asset_key: dg.AssetKey,
        partition_key: str,
        run_id: str,
        attempt: int,
        run_finished: Callable[[str], bool] | None = None,
    ) -> Mapping[str, Any]: ...

    def verify_partition(self, *, asset_key: dg.AssetKey, partition_key: str | None) -> Mapping[str, Any]: ...


class CdcWindowConfig(dg.Config):
    """One table's change window in a CDC partition's run (set by the <task>_cdc sensor)."""

    capture_instance: str = Field(description="The capture instance the window reads.")
    from_lsn: str = Field(description="First LSN of the window (20 hex digits, inclusive).")
    to_lsn: str = Field(description="Last LSN of the window (20 hex digits, inclusive).")


class TableStepConfig(dg.Config):
    """Op config of a table step. Snapshot partitions need none."""

    cdc_windows: dict[str, CdcWindowConfig] = Field(
        default_factory=dict,
        description=(
            "Change window per table (schema.table) of a CDC partition; the <task>_cdc sensor sets it, "
            "and re-executing the run reads exactly the same windows."
        ),
    )


@dataclass(frozen=True)
class TableGroup:
    """Tables loaded by one step, and the step's name."""

    op_name: str
    specs: tuple[TableSpec, ...]


def group_tables(task: str, specs: Sequence[TableSpec], *, groups: int) -> list[TableGroup]:
    """Deal tables round-robin (in config order) into ``groups`` steps.

    A one-table group's step is named after its table, so small tasks show
    one step per table in the UI.
    """
    count = max(1, min(groups, len(specs)))
    buckets: list[list[TableSpec]] = [[] for _ in range(count)]
    for index, spec in enumerate(specs):
        buckets[index % count].append(spec)
    result = []
    for number, bucket in enumerate(buckets, start=1):
        if len(bucket) == 1:
            key = bucket[0].asset_key.path
            name = "__".join(key)
        else:
            name = f"{task}__tables_{number:02d}_of_{count:02d}"
        result.append(TableGroup(name, tuple(bucket)))
    return result


def output_name(spec: TableSpec) -> str:
    return "__".join(spec.asset_key.path[1:])


def is_permanent(exc: BaseException) -> bool:
    """Whether a retry cannot fix ``exc``."""
    if isinstance(exc, PermanentLoadError):
        return True
    if isinstance(exc, SqlServerError):
        return not exc.retryable
    return isinstance(exc, dg.Failure) and not exc.allow_retries


def _already_materialized(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str) -> bool:
    """Whether this run already materialized ``key`` for ``partition`` (an earlier attempt of this step)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return bool(records) and records[0].run_id == context.run.run_id


def _run_finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a run of this instance has ended (False when the run is not known here)."""
    run = instance.get_run_by_id(run_id)
    return run is not None and run.is_finished


def previous_source_types(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str) -> dict[str, str] | None:
    """The SQL Server column types of the newest load of ``key`` before ``partition`` (key order)."""
    records = context.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=50).records
    for record in records:
        event = record.asset_materialization
        if event is None or event.partition is None or event.partition >= partition:
            continue
        value = event.metadata.get("dtaas/source_types")
        if value is not None and isinstance(value.value, dict):
            return {str(k): str(v) for k, v in value.value.items()}
    return None


def _window_for(config: TableStepConfig, spec: TableSpec, partition: str) -> ChangeWindow:
    found = config.cdc_windows.get(spec.qualified) or next(
        (w for name, w in config.cdc_windows.items() if name.lower() == spec.qualified.lower()), None
    )
    if found is None:
        raise PermanentLoadError(
            f"partition {partition} is a CDC window, but the run config names no window for {spec.qualified}. "
            f"CDC partitions are created by the sensor {spec.task}_cdc; to load one again, re-execute its run "
            "(its config holds the windows) rather than launching the partition by hand."
        )
    return ChangeWindow.from_config(found.model_dump())


def _capture_instances(
    config: TableStepConfig, selected: Sequence[TableSpec], partition: str
) -> dict[tuple[str, str], str]:
    """The capture instance of each selected table's change window (none for a snapshot partition;
    a table without a window is left out here and fails in its own load)."""
    if not is_change_key(partition):
        return {}
    found: dict[tuple[str, str], str] = {}
    for spec in selected:
        with contextlib.suppress(PermanentLoadError, ValueError):  # reported by the table's own load
            found[(spec.schema, spec.table)] = _window_for(config, spec, partition).capture_instance
    return found


def _open(
    context: dg.AssetExecutionContext,
    spec: TableSpec,
    config: TableStepConfig,
    sqlserver: SqlServerResource,
    global_variables: Mapping[str, str],
    transforms: Sequence[Any],
    previous: Mapping[str, str] | None,
) -> TableStream:
    partition = context.partition_key
    common = {
        "partition_key": partition,
        "run_id": context.run.run_id,
        "global_variables": global_variables,
        "log": context.log,
        "previous_types": previous,
        "transforms": transforms,
    }
    if is_change_key(partition):
        return open_changes(spec, sqlserver, _window_for(config, spec, partition), **common)  # type: ignore[arg-type]
    return open_snapshot(spec, sqlserver, **common)  # type: ignore[arg-type]


LOAD_FAILED_KEY = "dtaas/load_failed"
LOAD_ERROR_KEY = "dtaas/load_error"


def permanent_failure_observation(key: dg.AssetKey, partition: str, error: str) -> dg.AssetObservation:
    """Recorded on a table's partition when its load failed with an error a retry cannot fix: the
    CDC sensor reads it to hold the table (cdc/state.py) rather than request the same doomed load
    again and again; it also shows in the asset's history."""
    return dg.AssetObservation(
        asset_key=key,
        partition=partition,
        metadata={
            LOAD_FAILED_KEY: dg.MetadataValue.text("permanent"),
            LOAD_ERROR_KEY: dg.MetadataValue.text(error[:2000]),
        },
    )


def _failure(
    failures: list[tuple[TableSpec, BaseException]],
    partition: str,
    failed_checks: Sequence[tuple[TableSpec, dg.AssetCheckResult]] = (),
    *,
    checks_only: bool = False,
    retries_left: bool = True,
) -> dg.Failure:
    """The step's failure: the tables whose load failed, and the loaded tables whose (blocking) checks failed.

    Raised by the step itself, so the run's failure names every table and reason (Dagster's own
    DagsterAssetCheckFailedError names only the check), and a check failure is retried like a
    transient load failure: the retry evaluates that table's checks again without reloading it."""
    lines = [f"{spec.qualified}: {exc}" for spec, exc in failures]
    lines += [
        f"{spec.qualified}: loaded, but check {r.check_name} failed: {r.description}" for spec, r in failed_checks
    ]
    # a run of checks only is the re-evaluation itself: it fails at once (Execute the checks again to re-check)
    permanent = checks_only or (all(is_permanent(exc) for _, exc in failures) and not failed_checks)
    parts = []
    if failures:
        parts.append(f"{len(failures)} table(s) of partition {partition} failed")
    if failed_checks:
        parts.append(f"{len({s.qualified for s, _ in failed_checks})} loaded table(s) failed a check")
    if permanent:
        remedy = "; a retry cannot fix these"
    elif retries_left:
        remedy = "; a retry of the step loads (or checks again) only these"
    else:  # retry.max_retries is spent (or 0)
        remedy = (
            "; no retry is left (retry.max_retries): re-execute the run from failure to load (or check again) "
            "only these"
        )
    summary = "; ".join(parts) + remedy
    failed_tables = [spec.qualified for spec, _ in failures] + sorted({s.qualified for s, _ in failed_checks})
    return dg.Failure(
        description=summary + ":\n" + "\n".join(lines),
        metadata={"failed_tables": dg.MetadataValue.json(failed_tables)},
        allow_retries=not permanent,
    )


def _errors(results: Iterable[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    return [r for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]


def build_table_group_asset(
    *,
    group: TableGroup,
    partitions_def: dg.PartitionsDefinition,
    retry_policy: dg.RetryPolicy | None,
    pool: str,
    sqlserver_key: str,
    io_manager_key: str,
    query_source_keys: Sequence[str] = (),
    kinds: set[str],
    descriptions: Mapping[dg.AssetKey, str],
    metadata: Mapping[dg.AssetKey, Mapping[str, Any]],
    asset_options: Mapping[str, Any] | None = None,
) -> dg.AssetsDefinition:
    """The subsettable multi-asset that loads one group of tables (see the module docstring)."""
    specs = group.specs
    task = specs[0].task
    outs = {
        output_name(spec): dg.AssetOut(
            key=spec.asset_key,
            io_manager_key=io_manager_key,
            is_required=False,
            group_name=task,
            kinds=kinds,
            description=descriptions.get(spec.asset_key),
            metadata=dict(metadata.get(spec.asset_key, {})),
            **(asset_options or {}),  # owners, tags, freshness_policy (dtaas_dagster.asset_metadata)
        )
        for spec in specs
    }
    by_key = {spec.asset_key: spec for spec in specs}

    @dg.multi_asset(
        name=group.op_name,
        outs=outs,
        check_specs=step_check_specs(by_key, specs[0].step_checks),
        partitions_def=partitions_def,
        can_subset=True,
        required_resource_keys={sqlserver_key, io_manager_key, VARIABLES_KEY, *query_source_keys},
        # cdc_windows (set by the CDC sensor) and each table's transforms (the YAML's by default)
        config_schema={**TableStepConfig.to_fields_dict(), **op_config_field(specs)},
        retry_policy=retry_policy,
        pool=pool,
        op_tags={"dtaas/task": task},
    )
    def load_tables(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetObservation]:
        op_config = context.op_execution_context.op_config or {}
        config = TableStepConfig(cdc_windows=op_config.get("cdc_windows") or {})
        sqlserver: SqlServerResource = getattr(context.resources, sqlserver_key)
        writer: TableWriter = getattr(context.resources, io_manager_key)
        selected = [by_key[key] for key in by_key if key in context.selected_asset_keys]
        failed_checks: list[tuple[TableSpec, dg.AssetCheckResult]] = []

        def note_failed(spec: TableSpec, results: Iterable[dg.AssetCheckResult]) -> None:
            for failed in _errors(results):
                failed_checks.append((spec, failed))
                context.log.error(f"{spec.qualified}: check {failed.check_name} failed: {failed.description}")

        def rechecked(of: Sequence[TableSpec]) -> Iterator[dg.AssetCheckResult]:
            for spec in of:  # one table at a time: its failures are noted under it
                results = list(recheck(context, [spec], writer.verify_partition, previous_source_types))
                note_failed(spec, results)
                yield from results

        if not selected:  # a run of checks only (the asset's Checks tab): re-evaluate them
            yield from rechecked(specs)
            if failed_checks:
                raise _failure(
                    [],
                    context.partition_key if context.has_partition_key else "(newest)",
                    failed_checks,
                    checks_only=True,
                )
            return
        partition = context.partition_key
        attempt = context.retry_number
        failures: list[tuple[TableSpec, BaseException]] = []
        transforms = step_transforms(op_config, selected)  # every selected table's, checked before any load
        # the tables' descriptions are read ahead in bulk (sqlserver/facts_session.py)
        with sqlserver.facts_session(
            [(spec.schema, spec.table) for spec in selected],
            capture_instances=_capture_instances(config, selected, partition),
        ):
            for spec in selected:
                if attempt and _already_materialized(context, spec.asset_key, partition):
                    # not loaded again; its checks are, since one may have failed after the load (a
                    # verify hiccup) and the retry is there for it too (cheap: the manifest and file sizes)
                    context.log.info(
                        f"{spec.qualified}: already loaded by an earlier attempt of this run; not loaded again, "
                        "its checks are evaluated again",
                        extra=fields("table_skipped", table=spec.qualified, partition=partition),
                    )
                    yield from rechecked([spec])
                    continue
                checks = selected_checks(context, spec.asset_key)
                stream: TableStream | None = None
                try:
                    variables = table_variables(context, spec, database=sqlserver.database, partition_key=partition)
                    previous = previous_source_types(context, spec.asset_key, partition)
                    stream = _open(context, spec, config, sqlserver, variables, transforms[spec.qualified], previous)
                    result = writer.write_stream(
                        stream,
                        asset_key=spec.asset_key,
                        partition_key=partition,
                        run_id=context.run.run_id,
                        attempt=attempt,
                        run_finished=lambda run_id: _run_finished(context.instance, run_id),
                    )
                except Exception as exc:  # noqa: BLE001 - one table's failure must not stop the others
                    failures.append((spec, exc))
                    kind = "permanent" if is_permanent(exc) else "transient"
                    context.log.error(
                        f"{spec.qualified}: load failed ({kind}): {exc}",
                        extra=fields("table_failed", table=spec.qualified, partition=partition, failure=kind),
                    )
                    if not is_permanent(exc):
                        context.log.debug("".join(traceback.format_exception(exc)))
                    yield from failed_load_results(
                        spec.asset_key,
                        partition=partition,
                        error=exc,
                        selected=checks,
                        count=stream.source_count if stream is not None else None,
                    )
                    if is_permanent(exc) and not isinstance(exc, WindowUnavailable):
                        # the CDC sensor holds the table instead of asking again (a window that is gone
                        # is planned again instead: the gap policy, or the current capture instance)
                        yield permanent_failure_observation(spec.asset_key, partition, str(exc))
                    continue
                results = load_check_results(
                    spec.asset_key,
                    checks,
                    partition=partition,
                    stream=stream,
                    written=result,
                    previous=previous,
                    verify=writer.verify_partition,
                )
                note_failed(spec, results)
                yield dg.MaterializeResult(
                    asset_key=spec.asset_key, metadata={**stream.metadata, **dict(result)}, check_results=results
                )
            # checks selected without their table (a person picked both): evaluated as when run alone
            yield from rechecked([s for s in specs if s not in selected])
        if failures or failed_checks:
            retries_left = retry_policy is not None and attempt < (retry_policy.max_retries or 0)
            raise _failure(failures, partition, failed_checks, retries_left=retries_left)

    return load_tables
