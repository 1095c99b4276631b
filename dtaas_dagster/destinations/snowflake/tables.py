"""The target schema's objects: schema, stage, control table, the target table and its drift, left-overs.

Everything here is DDL or a catalog query, so it runs before the load's
transaction (DDL commits in Snowflake). A target created here is empty until
the load's transaction commits; a column added by ``schema_drift: evolve``
stays if the load then fails (it is NULL in the rows already there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from dtaas_dagster.destinations.snowflake import loads, sql, state
from dtaas_dagster.destinations.snowflake.names import TableName, display
from dtaas_dagster.destinations.snowflake.session import Session
from dtaas_dagster.destinations.snowflake.spool import Column
from dtaas_dagster.destinations.snowflake.types import (
    Drift,
    SnowflakeType,
    from_information_schema,
    plan_drift,
    snowflake_type,
)
from dtaas_dagster.errors import PermanentLoadError


class SchemaDriftError(PermanentLoadError):
    """The source's columns differ from the target's and the policy (or Snowflake) does not allow the change."""


@dataclass(frozen=True)
class TargetPlan:
    """What the load writes: the columns (source -> target) and whether the table was created."""

    columns: tuple[Column, ...]
    created: bool
    drift: tuple[str, ...] = ()


def prepare_schema(
    session: Session, target: TableName, *, stage: TableName, state_table: TableName, loads_table: TableName
) -> None:
    """The schema (created when missing), the session's current schema, the stage, the control table and
    the load log."""
    if not session.scalar(sql.schema_exists(target)):
        session.run(sql.create_schema(target))
    session.run(sql.use_schema(target))
    session.run(sql.create_stage(stage))
    session.run(state.create_statement(state_table))
    session.run(loads.create_statement(loads_table))


def existing_columns(session: Session, table: TableName) -> dict[str, SnowflakeType]:
    """The table's columns and types, in order ({} when the table does not exist)."""
    return {
        name: from_information_schema(data_type, length, precision, scale)
        for name, data_type, length, precision, scale in session.rows(sql.table_columns(table))
    }


def column_types(columns: Sequence[Column], source_types: dict[str, str]) -> list[tuple[str, SnowflakeType]]:
    return [(c.target, snowflake_type(c.arrow_type, source_types.get(c.source), column=c.source)) for c in columns]


def ensure_target(
    session: Session,
    target: TableName,
    columns: Sequence[Column],
    *,
    source_types: dict[str, str],
    primary_key: Sequence[str],
    policy: str,
    extra_columns: Sequence[tuple[str, SnowflakeType]] = (),
    log: logging.Logger,
) -> TargetPlan:
    """Create the target, or reconcile it with the load's columns under the drift policy.

    ``extra_columns`` (soft-delete flags) are dtaas's own: always added when missing.
    Returns the columns to load: all of them, except under ``ignore``, where only the
    ones the target has.
    """
    wanted = column_types(columns, source_types)
    existing = existing_columns(session, target)
    if not existing:
        session.run(sql.create_table(target, [*wanted, *extra_columns], primary_key=primary_key))
        log.info(
            f"{target.display}: created ({len(wanted)} columns"
            + (f", primary key {', '.join(map(display, primary_key))})" if primary_key else ")")
        )
        return TargetPlan(tuple(columns), created=True)
    for name, kind in extra_columns:
        if name not in existing:
            session.run(sql.add_column(target, name, kind))
    own = frozenset(name for name, _ in extra_columns)
    drift = plan_drift(existing, wanted, system_columns=own)
    if not drift.any:
        return TargetPlan(tuple(columns), created=False)
    return _apply_policy(session, target, columns, drift, policy=policy, log=log)


def _apply_policy(
    session: Session, target: TableName, columns: Sequence[Column], drift: Drift, *, policy: str, log: logging.Logger
) -> TargetPlan:
    lines = drift.lines()
    listing = "; ".join(lines)
    if policy == "fail":
        raise SchemaDriftError(
            f"{target.display} differs from the source (schema_drift: fail): {listing}. "
            "Change the table in Snowflake, or set schema_drift: evolve or ignore for the task."
        )
    if policy == "ignore":
        keep = {name for name, _ in drift.added}
        loaded = tuple(c for c in columns if c.target not in keep)
        log.warning(
            f"{target.display}: schema drift ignored (schema_drift: ignore): {listing}; "
            f"loading the {len(loaded)} columns the table has"
        )
        return TargetPlan(loaded, created=False, drift=tuple(lines))
    if drift.incompatible:
        raise SchemaDriftError(
            f"{target.display}: Snowflake cannot change these columns in place: "
            + "; ".join(str(c) for c in drift.incompatible)
            + ". Alter or recreate the table in Snowflake (then re-run), or exclude the columns (columns_exclude)."
        )
    for name, kind in drift.added:
        session.run(sql.add_column(target, name, kind))
    for change in drift.widened:
        session.run(sql.widen_column(target, change.column, change.new))
    if drift.missing:
        log.warning(
            f"{target.display}: columns {', '.join(drift.missing)} are no longer in the source; "
            "they are kept and loaded as NULL"
        )
    log.info(f"{target.display}: schema evolved: {listing}")
    return TargetPlan(tuple(columns), created=False, drift=tuple(lines))


def cleanup_leftovers(
    session: Session, *, target: TableName, stage: TableName, slug: str, keep: str, log: logging.Logger
) -> list[str]:
    """Drop staging tables and stage files of this target that earlier (killed) loads left behind.

    One load per target table runs at a time (docs/snowflake.md#guarantees),
    so everything of this target's but the current load's (``keep``) is left over.
    Failures only warn: left-overs are never read.
    """
    removed = []
    prefix = f"{sql.STAGING_PREFIX}{slug.upper()}_"
    for (name,) in session.rows(sql.tables_like(target, prefix)):
        if name != f"{prefix}{keep.upper()}":
            session.run(sql.drop_table(target.sibling(name)))
            removed.append(display(name))
    paths = set()
    for row in session.rows(sql.list_stage(stage)):
        # LIST names files "<stage name in lower case>/<path>"
        relative = str(row[0]).split("/", 1)[-1]
        parts = relative.split("/")
        if len(parts) >= 3 and parts[0] == slug and parts[1] != keep:
            paths.add(f"{parts[0]}/{parts[1]}")
    for path in sorted(paths):
        try:
            session.run(sql.remove_stage_path(stage, path))
            removed.append(f"@{stage.name}/{path}/")
        except Exception as exc:  # noqa: BLE001 - best effort, see the docstring
            log.warning(
                f"could not remove left-over stage files @{stage.display}/{path}/ ({exc}); "
                "they are never loaded; remove them with REMOVE when convenient"
            )
    if removed:
        log.info(f"{target.display}: removed left-overs of earlier loads: {', '.join(removed)}")
    return removed
