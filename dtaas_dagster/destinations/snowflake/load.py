"""One stream into one Snowflake table: a snapshot replaces it, a change window is MERGEd into it.

The order of one load (docs/snowflake.md#how-a-load-runs):

1. the schema, stage and control table exist; the session uses the schema;
2. the control row decides: an older snapshot is refused, a change window
   that would leave a gap is refused (a window at or below the applied LSN is
   still staged, so its rows are counted, and then changes nothing);
3. left-overs of killed loads of this table are removed;
4. the target is created, or reconciled with the source's columns (drift);
5. the stream is staged: Parquet files PUT under the load's own stage path and
   COPYed into the load's own staging table (checked row for row);
6. ONE transaction: the control row is re-read, then a snapshot DELETEs and
   INSERTs the target, or a window MERGEs its newest change per key; the
   control row is compare-and-set; the load is recorded in the load log
   (:mod:`.loads`); COMMIT. Readers see the old table until then;
7. the staging table (and any stage files COPY did not purge) is dropped.

A failure before 6 commits leaves the target and the control row as they were;
a kill leaves at most a staging table and stage files, which step 3 of the next
load of that table removes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dtaas_dagster.cdc.changes import CHANGE_COLUMNS as SOURCE_CHANGE_COLUMNS
from dtaas_dagster.destinations.snowflake import loads, sql, state
from dtaas_dagster.destinations.snowflake.names import (
    TableName,
    load_token,
    object_slug,
    target_columns,
)
from dtaas_dagster.destinations.snowflake.session import Session
from dtaas_dagster.destinations.snowflake.spool import Column
from dtaas_dagster.destinations.snowflake.staging import Staged, stage_stream
from dtaas_dagster.destinations.snowflake.tables import (
    cleanup_leftovers,
    column_types,
    ensure_target,
    prepare_schema,
)
from dtaas_dagster.errors import PermanentLoadError
from dtaas_dagster.stream import TableStream

_LSN = re.compile(r"^[0-9a-f]{20}$")


@dataclass(frozen=True)
class LsnWindow:
    """The LSN range of one change partition: changes with ``from_lsn <= LSN <= to_lsn`` (20 hex digits)."""

    from_lsn: str
    to_lsn: str


def change_window(stream: TableStream) -> LsnWindow | None:
    """The window of a change partition (``kind: cdc``, the manifest's ``cdc`` entries), None for a snapshot."""
    if stream.kind != "cdc":
        return None
    missing = [name for name in ("from_lsn", "to_lsn") if not stream.cdc.get(name)]
    if missing:
        raise PermanentLoadError(
            f"change partition {stream.partition_key} of {stream.table} has no "
            f"{' or '.join(missing)}; re-execute the run its CDC sensor started "
            "(its config holds the window)"
        )
    return LsnWindow(str(stream.cdc["from_lsn"]), str(stream.cdc["to_lsn"]))


def snapshot_next_lsn(stream: TableStream) -> str | None:
    """The first LSN a snapshot does not contain: CDC continues right after its ``start_lsn`` (docs/cdc.md)."""
    start = stream.cdc.get("start_lsn") if stream.kind != "cdc" else None
    return lsn_after(str(start)) if start else None


class OlderSnapshotError(PermanentLoadError):
    """A snapshot partition older than the one already loaded: loading it would replace newer data."""


class WindowGapError(PermanentLoadError):
    """A change window that starts after the next LSN to apply: applying it would skip changes."""


@dataclass(frozen=True)
class LoadSettings:
    """How the destination loads (from its config and the task's)."""

    case: str = "upper"
    stage: str = "_DTAAS_STAGE"
    state_table: str = "_DTAAS_STATE"
    delete_mode: str = "hard"
    cdc_apply: str = "merge"
    schema_drift: str = "evolve"
    file_max_rows: int | None = 1_000_000
    file_max_bytes: int | None = None
    work_dir: str | None = None


@dataclass
class LoadReport:
    """What one load did (becomes materialization metadata)."""

    target: TableName
    kind: str  # "snapshot" or "changes"
    load_id: str
    rows: int = 0
    files: int = 0
    bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    created: bool = False
    drift: tuple[str, ...] = ()
    leftovers: list[str] = field(default_factory=list)
    skipped: str | None = None  # a change window already applied: staged and counted, nothing changed
    merged: dict[str, int] = field(default_factory=dict)
    state: state.TableState | None = None


# --------------------------------------------------------------------------- LSN rules (pure)


def check_lsn(value: str, what: str) -> str:
    if not isinstance(value, str) or not _LSN.match(value):
        raise PermanentLoadError(f"{what} {value!r} is not an LSN as 20 lower-case hex digits")
    return value


def lsn_after(lsn: str) -> str:
    """The next LSN (SQL Server's sys.fn_cdc_increment_lsn on the 10-byte value)."""
    return format(int(check_lsn(lsn, "LSN"), 16) + 1, "020x")


def decide_window(
    previous: state.TableState | None, window: LsnWindow, *, partition: str, target: str
) -> tuple[str | None, str]:
    """(first LSN to apply, or None to skip; the reason) for one change window under the control row."""
    check_lsn(window.from_lsn, "from_lsn")
    check_lsn(window.to_lsn, "to_lsn")
    if window.to_lsn < window.from_lsn:
        raise PermanentLoadError(
            f"change window of partition {partition} ends ({window.to_lsn}) before it starts ({window.from_lsn})"
        )
    span = f"[{window.from_lsn}..{window.to_lsn}]"
    if previous is None or previous.next_lsn is None:
        return window.from_lsn, f"window {span} is the first applied to {target}"
    if window.to_lsn < previous.next_lsn:
        return None, (
            f"window {span} of partition {partition} is at or below the applied LSN "
            f"{previous.applied_lsn or 'of the snapshot'} of {target} (next to apply: {previous.next_lsn}); "
            "nothing to do"
        )
    if window.from_lsn > previous.next_lsn:
        raise WindowGapError(
            f"window {span} of partition {partition} starts at {window.from_lsn}, but {target} has changes only up "
            f"to LSN {previous.applied_lsn or '(snapshot)'}: the changes from {previous.next_lsn} on are missing. "
            "Nothing was applied. Load the partitions between them first, or start a new snapshot."
        )
    return max(window.from_lsn, previous.next_lsn), f"window {span} applies changes from {previous.next_lsn}"


def check_snapshot_order(previous: state.TableState | None, partition: str, *, target: str, task: str) -> None:
    if previous is not None and previous.snapshot_partition and partition < previous.snapshot_partition:
        raise OlderSnapshotError(
            f"snapshot partition {partition} is older than {previous.snapshot_partition}, which is already loaded "
            f"into {target}; loading it would replace newer data, so nothing was changed. For fresh data start a "
            f"new snapshot (job {task}_full_load)."
        )


# --------------------------------------------------------------------------- columns


def plan_columns(stream: TableStream, case: str) -> tuple[list[Column], list[Column]]:
    """(the table's columns, the change columns) of a stream, with their Snowflake names."""
    change = stream.kind == "cdc"
    names = [f.name for f in stream.schema]
    if change:
        missing = [c for c in SOURCE_CHANGE_COLUMNS if c not in names]
        if missing:
            raise PermanentLoadError(
                f"change partition {stream.partition_key} of {stream.table} lacks the change "
                f"columns {', '.join(missing)}"
            )
    table_fields = [f for f in stream.schema if not (change and f.name in SOURCE_CHANGE_COLUMNS)]
    reserved = [*sql.CHANGE_COLUMNS, *(name for name, _ in sql.SOFT_DELETE_COLUMNS)]
    mapping = target_columns([f.name for f in table_fields], case=case, reserved=reserved)
    columns = [Column(f.name, mapping[f.name], f.type) for f in table_fields]
    changes = (
        [
            Column(src, dst, stream.schema.field(src).type)
            for src, dst in zip(SOURCE_CHANGE_COLUMNS, sql.CHANGE_COLUMNS, strict=True)
        ]
        if change
        else []
    )
    return columns, changes


def _target_key(stream: TableStream, columns: Sequence[Column]) -> tuple[str, ...]:
    by_source = {c.source: c.target for c in columns}
    return tuple(by_source[name] for name in stream.primary_key if name in by_source)


# --------------------------------------------------------------------------- the load


def load_stream(
    session: Session,
    stream: TableStream,
    *,
    target: TableName,
    settings: LoadSettings,
    load_id: str,
    run_id: str,
    log: logging.Logger,
) -> LoadReport:
    """Load one stream (see the module docstring); returns what it did."""
    started = time.monotonic()
    window = change_window(stream)
    report = LoadReport(target, "changes" if window else "snapshot", load_id)
    stage, state_table = target.sibling(settings.stage), target.sibling(settings.state_table)
    prepare_schema(session, target, stage=stage, state_table=state_table, loads_table=loads_table_of(target, settings))
    columns, change_columns = plan_columns(stream, settings.case)
    key = _target_key(stream, columns)
    applies = _admit(stream, report, window, state.read(session, state_table, target), key=key, log=log)
    token, slug = load_token(load_id), object_slug(target)
    report.leftovers = cleanup_leftovers(session, target=target, stage=stage, slug=slug, keep=token, log=log)
    soft = settings.delete_mode == "soft"
    # a window already applied changes no table: its columns are not reconciled either (no DDL, no drift error)
    plan = ensure_target(
        session,
        target,
        columns,
        source_types=dict(stream.source_types),
        primary_key=key,
        policy=settings.schema_drift if applies else "ignore",
        extra_columns=sql.SOFT_DELETE_COLUMNS if soft else (),
        log=log,
    )
    report.created, report.drift = plan.created, plan.drift
    staging = target.sibling(f"{sql.STAGING_PREFIX}{slug.upper()}_{token.upper()}")
    path = f"{slug}/{token}"
    copied = False
    try:
        loaded = [*plan.columns, *change_columns]
        staged = stage_stream(
            session,
            stream.batches,
            stream_schema=stream.schema,
            columns=loaded,
            column_types=column_types(loaded, dict(stream.source_types)),
            staging=staging,
            stage=stage,
            path=path,
            max_rows=settings.file_max_rows,
            max_bytes=settings.file_max_bytes,
            work_dir=settings.work_dir,
            log=log,
        )
        copied = True
        report.rows, report.files, report.bytes = staged.rows, staged.files, staged.bytes
        report.seconds.update(staged.seconds)
        _commit(
            session,
            stream,
            report,
            window,
            staged,
            plan.columns,
            key,
            state_table=state_table,
            settings=settings,
            run_id=run_id,
            log=log,
        )
    finally:
        _discard(session, staging, stage, path, files_left=not copied, log=log)
    report.seconds["total_s"] = time.monotonic() - started
    return report


def loads_table_of(target: TableName, settings: LoadSettings) -> TableName:
    """The load log beside the control table (``_DTAAS_STATE`` -> ``_DTAAS_STATE_LOADS``)."""
    return target.sibling(f"{settings.state_table}{loads.SUFFIX}")


def _admit(
    stream: TableStream,
    report: LoadReport,
    window: LsnWindow | None,
    previous: state.TableState | None,
    *,
    key: Sequence[str],
    log: logging.Logger,
) -> bool:
    """Refuse what the control row forbids before anything is staged (the transaction checks again);
    False for a window already applied."""
    if window is None:
        check_snapshot_order(
            previous,
            stream.partition_key,
            target=report.target.display,
            task=str(stream.variables.get("taskName", "<task>")),
        )
        return True
    if not stream.primary_key or len(key) != len(stream.primary_key):
        raise PermanentLoadError(
            f"{stream.table}: applying changes needs the primary key, and it is not among the "
            "loaded columns; set primary_key for the table and keep its columns"
        )
    first_lsn, reason = decide_window(previous, window, partition=stream.partition_key, target=report.target.display)
    # A window already applied is still read and staged (not applied): its rows are counted against
    # SQL Server's count like any load's, so the row_count check holds for a re-executed run too.
    log.info(
        f"{report.target.display}: {reason}"
        + ("; it is staged and counted, and changes nothing" if first_lsn is None else "")
    )
    return first_lsn is not None


def _commit(
    session: Session,
    stream: TableStream,
    report: LoadReport,
    window: LsnWindow | None,
    staged: Staged,
    columns: Sequence[Column],
    key: Sequence[str],
    *,
    state_table: TableName,
    settings: LoadSettings,
    run_id: str,
    log: logging.Logger,
) -> None:
    """The one transaction: re-read the control row, replace or apply the window, compare-and-set the row,
    and record the load in the load log."""
    started = time.monotonic()
    soft = settings.delete_mode == "soft"
    with session.transaction():
        current = state.read(session, state_table, report.target)
        if window is not None:
            new_state = _merge(
                session,
                stream,
                report,
                staged,
                current,
                window,
                columns,
                key,
                soft=soft,
                run_id=run_id,
                cdc_apply=settings.cdc_apply,
            )
        else:
            new_state = _replace(session, stream, report, staged, current, columns, key, soft=soft, run_id=run_id)
        if new_state is not None and new_state is not current:
            state.save(session, state_table, new_state, current)
        loads.record(
            session,
            loads_table_of(report.target, settings),
            loads.LoadRecord(
                target=report.target.sql,
                partition_key=stream.partition_key,
                kind=report.kind,
                rows=report.rows,
                files=report.files,
                from_lsn=window.from_lsn if window else None,
                to_lsn=window.to_lsn if window else None,
                applied=report.skipped is None,
                load_id=report.load_id,
                run_id=run_id,
            ),
        )
    if report.skipped:
        log.info(f"{report.target.display}: skipped: {report.skipped}")
    report.seconds["merge_s" if window else "replace_s"] = time.monotonic() - started
    report.state = new_state


def _loaded_schema(stream: TableStream, columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([stream.schema.field(c.source) for c in columns])


def _replace(
    session: Session,
    stream: TableStream,
    report: LoadReport,
    staged: Staged,
    current: state.TableState | None,
    columns: Sequence[Column],
    key: Sequence[str],
    *,
    soft: bool,
    run_id: str,
) -> state.TableState:
    """Inside the transaction: the target becomes exactly the staged rows."""
    check_snapshot_order(
        current,
        stream.partition_key,
        target=report.target.display,
        task=str(stream.variables.get("taskName", "<task>")),
    )
    targets = [c.target for c in columns]
    session.run(sql.delete_all(report.target))
    inserted = session.scalar(sql.insert_from_staging(report.target, staged.table, targets, soft_delete=soft))
    if int(inserted or 0) != staged.rows:
        raise RuntimeError(f"{report.target.display}: inserted {inserted} rows, staged {staged.rows}; rolled back")
    return state.TableState(
        target=report.target.sql,
        snapshot_partition=stream.partition_key,
        last_partition=stream.partition_key,
        applied_lsn=None,
        next_lsn=snapshot_next_lsn(stream),
        primary_key=tuple(key),
        columns=tuple((c.source, c.target) for c in columns),
        arrow_schema=state.encode_schema(_loaded_schema(stream, columns)),
        load_id=report.load_id,
        run_id=run_id,
    )


def _merge(
    session: Session,
    stream: TableStream,
    report: LoadReport,
    staged: Staged,
    current: state.TableState | None,
    window: LsnWindow,
    columns: Sequence[Column],
    key: Sequence[str],
    *,
    soft: bool,
    run_id: str,
    cdc_apply: str,
) -> state.TableState | None:
    """Inside the transaction: the window's newest change per key, from the first LSN not yet applied.

    Returns the control row unchanged (the same object) when the window is already applied."""
    first_lsn, reason = decide_window(current, window, partition=stream.partition_key, target=report.target.display)
    if first_lsn is None:
        report.skipped = reason
        return current
    targets = [c.target for c in columns]
    if cdc_apply == "merge":
        statement = sql.merge_changes(report.target, staged.table, targets, key, soft_delete=soft)
        report.merged = _merge_counts(session.run(sql.Statement(statement.name, statement.sql, (first_lsn,))))
    else:
        counts = {"FLAG_DELETED": "flagged", "DELETE_CHANGED": "removed", "INSERT_CHANGED": "inserted"}
        for statement in sql.delete_insert_changes(report.target, staged.table, targets, key, soft_delete=soft):
            changed = session.scalar(sql.Statement(statement.name, statement.sql, (first_lsn,)))
            report.merged[counts[statement.name]] = int(changed or 0)
    previous = current or state.TableState(report.target.sql)
    return previous.evolve(
        target=report.target.sql,
        last_partition=stream.partition_key,
        applied_lsn=window.to_lsn,
        next_lsn=lsn_after(window.to_lsn),
        primary_key=tuple(key),
        columns=tuple((c.source, c.target) for c in columns),
        arrow_schema=state.encode_schema(_loaded_schema(stream, columns)),
        load_id=report.load_id,
        run_id=run_id,
    )


def _merge_counts(cursor: Any) -> dict[str, int]:
    """MERGE's result row: number of rows inserted / updated / deleted (columns present depend on the clauses)."""
    row = cursor.fetchone() or ()
    counts = {}
    for description, value in zip(cursor.description or (), row, strict=False):
        name = str(description[0]).lower()
        for word in ("inserted", "updated", "deleted"):
            if word in name:
                counts[word] = int(value or 0)
    return counts


def _discard(
    session: Session, staging: TableName, stage: TableName, path: str, *, files_left: bool, log: logging.Logger
) -> None:
    """Best effort: the staging table, and the stage files when COPY did not purge them."""
    try:
        session.run(sql.drop_table(staging))
    except Exception as exc:  # noqa: BLE001 - the next load of the table removes it
        log.warning(f"could not drop staging table {staging.display} ({exc}); the next load of the table removes it")
    if files_left:
        try:
            listed = [str(row[0]).split("/", 1)[-1] for row in session.rows(sql.list_stage(stage))]
            if any(name.startswith(f"{path}/") for name in listed):
                session.run(sql.remove_stage_path(stage, path))
        except Exception as exc:  # noqa: BLE001 - never loaded; the next load of the table retries
            log.warning(
                f"could not remove stage files @{stage.display}/{path}/ ({exc}); the next load of the table tries again"
            )
