"""The CDC sensor ``<task>_cdc``: polls SQL Server's LSNs and requests change-window runs.

Each tick (at most every ``cdc.poll_seconds``):

- asks SQL Server one batch for the max LSN and, per capture instance of the
  task's tables, its min LSN and whether it has changes after the table's
  position (:meth:`SqlServerResource.cdc_probe`);
- reads the status of the runs it requested earlier, and the newest snapshot of
  each table (asset materialization metadata ``dtaas/cdc_start_lsn``);
- decides with :func:`dtaas_dagster.cdc.state.tick` (pure, unit-tested);
- returns one ``SensorResult``: a new dynamic partition for the tick's window,
  one run of ``<task>_tables`` for the tables that changed (their windows in
  the run config and tags, so a re-execution reads the same windows), a
  snapshot run when one is needed, and the new cursor; its runs select the
  tables' step checks explicitly (not the scheduled CDC checks); an idle table's
  new position is reported as an asset observation (``dtaas/cdc_loaded_through``).

Every tick logs what it saw and did (the tick log in the UI).
"""

import datetime as dt
import hashlib
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import dagster as dg

from dtaas_dagster.assets import LOAD_ERROR_KEY, LOAD_FAILED_KEY
from dtaas_dagster.cdc.lag import POSITION_KEY
from dtaas_dagster.cdc.state import (
    FAILED,
    IN_FLIGHT,
    PERMANENT,
    SUCCESS,
    TICK_SLACK_SECONDS,
    Pending,
    SnapshotInfo,
    TableInfo,
    TableState,
    TickInput,
    dump_cursor,
    load_cursor,
    load_cursor_meta,
    status_key,
    tick,
)
from dtaas_dagster.checks import metadata_value, step_check_keys
from dtaas_dagster.config import CdcConfig
from dtaas_dagster.jobs import TASK_TAG, TRIGGER_TAG, load_run_tags
from dtaas_dagster.logs import job_run_config
from dtaas_dagster.partitions import change_key, partitions_def_name, snapshot_key
from dtaas_dagster.sqlserver.cdc import instances_of
from dtaas_dagster.sqlserver.lsn import ZERO, Lsn
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.table_load import TableSpec

REQUEST_TAG = "dtaas/request"


def sensor_interval_seconds(poll_seconds: int) -> int:
    """The sensor's ``minimum_interval_seconds`` for ``cdc.poll_seconds``: one second less.

    The daemon checks sensors on a 5-second loop and compares the time since the last tick's
    start with the minimum interval. With both at 5 s, a check that comes a few
    milliseconds early skips the sensor until the next loop, and ticks land every 10 s
    instead of 5 (measured: most gaps were 10 s). A second of slack keeps the ticks
    ``poll_seconds`` apart (rounded up to the daemon's loop); below the loop it changes nothing.
    """
    return max(1, poll_seconds - TICK_SLACK_SECONDS)


def cdc_sensor_name(task: str) -> str:
    return f"{task}_cdc"


def position_observation(asset_key: dg.AssetKey, loaded_through: Lsn) -> dg.AssetObservation:
    """An idle table's position: every change up to this LSN is loaded (there were none since its last load)."""
    return dg.AssetObservation(
        asset_key=asset_key,
        metadata={
            POSITION_KEY: dg.MetadataValue.text(loaded_through.hex),
            "dtaas/cdc_note": dg.MetadataValue.text("no changes since the previous position; CDC is up to date here"),
        },
    )


def _run_status(
    instance: dg.DagsterInstance,
    sensor: str,
    pending: Mapping[str, Pending],
    specs: Mapping[str, TableSpec],
    held: Collection[str] = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """Each pending table's outcome in the runs of its request (``status_key(run_key, table)``), and
    the error of each PERMANENT one.

    A table counts as loaded only when one of its request's runs materialized its partition: a
    run loads several tables, a failed run keeps the tables it loaded, and a successful run (a
    re-execution of a subset, or of the checks) may not have loaded this one. A re-execution of
    the run (same request tag) counts too. A table that failed with an error a retry cannot fix
    has a permanent-failure observation on its partition from that run
    (assets.permanent_failure_observation): PERMANENT. A ``held`` table stays PERMANENT until
    one of its request's later runs loads it; held requests are looked up by their tags, in one
    query (they may be old).
    """
    found: dict[str, str] = {}
    errors: dict[str, str] = {}
    fresh = {table: p for table, p in pending.items() if table not in held}
    runs_by_key: dict[str, list[dg.DagsterRun]] = {}
    if fresh:
        since = min(p.since for p in fresh.values())
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                tags={"dagster/sensor_name": sensor},
                created_after=dt.datetime.fromtimestamp(since - 60, tz=dt.UTC),
            ),
            limit=1000,
        )
        wanted = {p.run_key for p in fresh.values()}
        for record in records:
            key = record.dagster_run.tags.get(REQUEST_TAG)
            if key in wanted:
                runs_by_key.setdefault(key, []).append(record.dagster_run)
    held_keys = sorted({pending[t].run_key for t in held if t in pending} - set(runs_by_key))
    if held_keys:
        for record in instance.get_run_records(filters=dg.RunsFilter(tags={REQUEST_TAG: held_keys}), limit=1000):
            runs_by_key.setdefault(record.dagster_run.tags.get(REQUEST_TAG, ""), []).append(record.dagster_run)
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    for table, request in pending.items():
        runs = runs_by_key.get(request.run_key, [])
        if not runs:
            continue
        key = status_key(request.run_key, table)
        done = [run for run in runs if run.status in finished]
        if table in held and len(runs) == 1:
            found[key] = PERMANENT  # only the run that failed: nothing new to look at
            continue
        partition = dg.AssetRecordsFilter(asset_key=specs[table].asset_key, asset_partitions=[request.partition])
        run_ids = {run.run_id for run in runs}
        loaded = bool(done) and any(
            r.run_id in run_ids for r in instance.fetch_materializations(partition, limit=10).records
        )
        if loaded:
            found[key] = SUCCESS
        elif len(done) < len(runs):
            found[key] = IN_FLIGHT
        elif table in held:
            found[key] = PERMANENT
        else:
            error = _permanent_error(instance, partition, run_ids)
            found[key] = FAILED if error is None else PERMANENT
            if error is not None:
                errors[key] = error
    return found, errors


def _permanent_error(instance: dg.DagsterInstance, partition: dg.AssetRecordsFilter, run_ids: set[str]) -> str | None:
    """The error of a load that failed for good in one of these runs (its observation), if any."""
    for record in instance.fetch_observations(partition, limit=20).records:
        observation = record.asset_observation
        if record.run_id not in run_ids or observation is None:
            continue
        if metadata_value(observation.metadata.get(LOAD_FAILED_KEY)) == "permanent":
            return str(metadata_value(observation.metadata.get(LOAD_ERROR_KEY)) or "")
    return None


def _snapshot_of(event: Any, run_id: str) -> SnapshotInfo | None:
    if event is None or event.partition is None:
        return None
    kind = event.metadata.get("dtaas/kind")
    start = event.metadata.get("dtaas/cdc_start_lsn")
    if kind is None or kind.value != "snapshot" or start is None:
        return None
    return SnapshotInfo(run_id, event.partition, Lsn.from_hex(str(start.value)))


def _snapshots(instance: dg.DagsterInstance, specs: Sequence[TableSpec], detailed: set[str]) -> dict[str, SnapshotInfo]:
    """The newest snapshot per table: from the latest materializations (one query), and looked for
    further back only for tables in ``detailed`` (without a position, or blocked)."""
    found: dict[str, SnapshotInfo] = {}
    by_key = {spec.asset_key: spec for spec in specs}
    for record in instance.get_asset_records(list(by_key)):
        last = record.asset_entry.last_materialization_record
        if last is None:
            continue
        info = _snapshot_of(last.event_log_entry.asset_materialization, last.run_id)
        if info is not None:
            found[record.asset_entry.asset_key.to_user_string()] = info
    for spec in specs:
        name = spec.asset_key.to_user_string()
        if name in found or name not in detailed:
            continue
        history = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=spec.asset_key), limit=100).records
        for event in history:
            info = _snapshot_of(event.asset_materialization, event.run_id)
            if info is not None:
                found[name] = info
                break
    return found


def _needs_history(state: TableState | None) -> bool:
    """Tables whose newest snapshot is looked for beyond the latest materialization."""
    if state is None or not state.next_lsn or state.blocked:
        return True
    return state.pending is not None and state.pending.kind == "snapshot"


def _fingerprint(spec: TableSpec) -> str:
    """A digest of a table's config (columns, key, transforms, schema_drift, ...): a held table is
    released when it changes, since the change may be the fix."""
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:16]


def _cdc_start(cdc: CdcConfig, sqlserver: SqlServerResource) -> str:
    """cdc.start as now / earliest / an LSN (a UTC time is mapped to the first LSN at or after it)."""
    if cdc.start in ("now", "earliest") or len(cdc.start) == 20:
        return cdc.start
    lsn = sqlserver.map_time_to_lsn(dt.datetime.fromisoformat(cdc.start))
    return (lsn or sqlserver.cdc_max_lsn() or ZERO).hex


def build_cdc_sensor(
    *,
    task: str,
    mode: str,
    cdc: CdcConfig,
    specs: Sequence[TableSpec],
    op_names: Mapping[dg.AssetKey, str],
    sqlserver_key: str,
    tables_job: Any,
) -> dg.SensorDefinition:
    """The sensor ``<task>_cdc`` (see the module docstring)."""
    name = cdc_sensor_name(task)
    tables = [TableInfo(s.asset_key.to_user_string(), s.schema, s.table, s.qualified, _fingerprint(s)) for s in specs]
    spec_of = {s.asset_key.to_user_string(): s for s in specs}
    step_checks = specs[0].step_checks if specs else ()

    def checks_of(selection: list[dg.AssetKey]) -> list[dg.AssetCheckKey]:
        return step_check_keys(selection, step_checks)

    @dg.sensor(
        name=name,
        job=tables_job,
        minimum_interval_seconds=sensor_interval_seconds(cdc.poll_seconds),
        required_resource_keys={sqlserver_key},
        description=(
            f"Change Data Capture for task {task}: every {cdc.poll_seconds}s, asks SQL Server for new "
            f"changes and requests a run of {task}_tables for the tables that changed."
        ),
    )
    def cdc_sensor(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SensorResult:
        # (direct invocation in tests passes required resources as keywords; they are on context too)
        started = time.monotonic()
        now = time.time()
        sqlserver: SqlServerResource = getattr(context.resources, sqlserver_key)
        states = load_cursor(context.cursor)
        instances = sqlserver.capture_instances()
        froms: dict[str, Lsn] = {}
        for info in tables:
            state = states.get(info.name)
            position = Lsn.from_hex(state.next_lsn) if state and state.next_lsn else ZERO
            for instance in instances_of(instances, info.schema, info.table):
                froms[instance.name] = min(froms.get(instance.name, position), position)
        probe = sqlserver.cdc_probe(froms)
        # only the task's tables now: a table removed from the config keeps its state in the cursor
        # (its position, should it come back), but nothing of it is looked up
        pending = {table: s.pending for table, s in states.items() if s.pending and table in spec_of}
        needs_start = any(not (states.get(t.name) and states[t.name].next_lsn) for t in tables)
        detailed = {t.name for t in tables if _needs_history(states.get(t.name))}
        held = {table for table, s in states.items() if s.held}
        run_status, run_errors = _run_status(context.instance, name, pending, spec_of, held)
        given = TickInput(
            task=task,
            mode=mode,
            start=_cdc_start(cdc, sqlserver) if needs_start and mode == "cdc" else cdc.start,
            on_retention_gap=cdc.on_retention_gap,
            poll_seconds=cdc.poll_seconds,
            now=now,
            instances=instances,
            probe=probe,
            run_status=run_status,
            run_errors=run_errors,
            snapshots=_snapshots(context.instance, specs, detailed),
            report_seconds=cdc.position_report_seconds,
        )
        out = tick(tables, states, given)
        meta = load_cursor_meta(context.cursor)
        waited = now - float(meta.get("last_window_at", 0))
        wait = cdc.min_window_seconds - waited
        if out.windows and cdc.min_window_seconds and wait > TICK_SLACK_SECONDS and not out.gaps:
            out.log.append(
                f"{len(out.windows)} table(s) changed; coalescing into the next window in "
                f"{wait:.0f}s (cdc.min_window_seconds)"
            )
            out.windows = {}
        if out.windows:
            meta["last_window_at"] = now
        requests: list[dg.RunRequest] = []
        partitions: list[str] = []
        if out.windows:
            key = change_key(dt.datetime.fromtimestamp(now, tz=dt.UTC))
            partitions.append(key)
            ops: dict[str, Any] = {}
            tags = {**load_run_tags(task, key, trigger="cdc"), REQUEST_TAG: key}
            for table, window in out.windows.items():
                spec = spec_of[table]
                ops.setdefault(op_names[spec.asset_key], {"config": {"cdc_windows": {}}})["config"]["cdc_windows"][
                    spec.qualified
                ] = window.as_config()
                tags[f"dtaas/cdc.{'.'.join(spec.asset_key.path[1:])}"[: 63 + len("dtaas/")]] = (
                    f"{window.capture_instance}:{window.from_lsn.hex}-{window.to_lsn.hex}"
                )
                out.states[table].pending = Pending(key, key, "cdc", now, window.as_config())
            # A request's own run config replaces the job's default, so the JSON loggers go in too.
            run_config: dict[str, Any] = {**(job_run_config() or {}), "ops": ops}
            if len(ops) == 1:  # one step: no need for a second process
                run_config["execution"] = {"config": {"in_process": True}}
            selection = [spec_of[t].asset_key for t in out.windows]
            requests.append(
                dg.RunRequest(
                    run_key=key,
                    partition_key=key,
                    run_config=run_config,
                    tags=tags,
                    asset_selection=selection,
                    asset_check_keys=checks_of(selection),
                )
            )
        snapshot_tables = [t for t in out.snapshot_tables if out.states[t].pending is None]
        if snapshot_tables:
            key = snapshot_key(dt.datetime.fromtimestamp(now, tz=dt.UTC), "cdc")
            partitions.append(key)
            for table in snapshot_tables:
                out.states[table].pending = Pending(key, key, "snapshot", now)
            selection = [spec_of[t].asset_key for t in snapshot_tables]
            requests.append(
                dg.RunRequest(
                    run_key=key,
                    partition_key=key,
                    asset_selection=selection,
                    asset_check_keys=checks_of(selection),
                    tags={**load_run_tags(task, key, trigger="cdc_snapshot"), REQUEST_TAG: key},
                )
            )
        for line in out.log:
            context.log.info(line)
        summary = (
            f"max LSN {probe.max_lsn.hex}; {len(out.windows)} table(s) with changes"
            f"{' (' + ', '.join(spec_of[t].qualified for t in out.windows) + ')' if out.windows else ''}; "
            f"{len(snapshot_tables)} snapshot(s) requested; tick took {time.monotonic() - started:.2f}s"
        )
        context.log.info(summary)
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=(
                [dg.AddDynamicPartitionsRequest(partitions_def_name(task), partitions)] if partitions else []
            ),
            cursor=dump_cursor(out.states, meta),
            skip_reason=None if requests else summary,
            asset_events=[position_observation(spec_of[t].asset_key, lsn) for t, lsn in sorted(out.positions.items())],
        )

    return cdc_sensor


__all__ = ["REQUEST_TAG", "TASK_TAG", "TRIGGER_TAG", "build_cdc_sensor", "cdc_sensor_name"]
