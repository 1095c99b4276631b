"""The SQL Server side of CDC health: where each capture instance's waiting changes start, and the retention.

:func:`lag_probe` sends one batch (:func:`queries.build_cdc_lag_probe`): the max
LSN, the server's UTC time, and per capture instance its min LSN and the first
change at or after a given LSN with its commit time. :func:`cleanup_retention_minutes`
reads the cleanup job's retention. What the numbers mean is decided in
:mod:`dtaas_dagster.cdc.lag`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.cdc import database_not_enabled, probe_parameters
from dtaas_dagster.sqlserver.errors import SqlServerPermissionDenied
from dtaas_dagster.sqlserver.lsn import Lsn
from dtaas_dagster.sqlserver.resource import SqlServerResource


@dataclass(frozen=True)
class WaitingChanges:
    """One capture instance seen from a position: its min LSN and the first change after the position."""

    name: str
    min_lsn: Lsn
    first_lsn: Lsn | None  # the first change at or after the asked LSN, up to the max LSN
    committed_at: dt.datetime | None  # that change's commit time, UTC


@dataclass(frozen=True)
class LagProbe:
    max_lsn: Lsn
    now: dt.datetime  # the server's clock, UTC (commit times are on the same clock)
    instances: dict[str, WaitingChanges]


def lag_probe(sqlserver: SqlServerResource, froms: Mapping[str, Lsn]) -> LagProbe:
    """For each capture instance, the first change at or after ``froms[instance]`` (one round trip)."""
    names, params = probe_parameters(dict(froms))
    with sqlserver.connect() as connection:
        cursor = connection.cursor().execute(queries.build_cdc_lag_probe(names), *params)
        row = cursor.fetchone()
        if row is None or row[0] is None:
            raise database_not_enabled(sqlserver.database, sqlserver.source_name)
        max_lsn, now, offset = Lsn.from_bytes(bytes(row[0])), row[1], int(row[2] or 0)
        found: dict[str, WaitingChanges] = {}
        if names and cursor.nextset():
            for name, min_lsn, first, committed in cursor.fetchall():
                local = committed if committed is None else committed - dt.timedelta(minutes=offset)
                found[str(name)] = WaitingChanges(
                    str(name),
                    Lsn.from_bytes(bytes(min_lsn)) if min_lsn else Lsn(0),
                    None if first is None else Lsn.from_bytes(bytes(first)),
                    None if local is None else local.replace(tzinfo=dt.UTC),
                )
    return LagProbe(max_lsn, now.replace(tzinfo=dt.UTC), found)


def cleanup_retention_minutes(sqlserver: SqlServerResource) -> int | None:
    """The cleanup job's retention in minutes; None when the database has no cleanup job (nothing is purged).

    ``sys.sp_cdc_help_jobs`` needs db_owner; a login with SELECT on
    ``msdb.dbo.cdc_jobs`` is read from there instead.
    """
    import pyodbc

    with sqlserver.connect() as connection:
        cursor = connection.cursor()
        try:
            cursor.execute(queries.CDC_JOBS)
            while cursor.description is None and cursor.nextset():
                pass
            columns = [d[0].lower() for d in cursor.description or []]
            rows = cursor.fetchall() if cursor.description else []
            jobs = [dict(zip(columns, row)) for row in rows]
            cleanup = [job for job in jobs if str(job.get("job_type", "")).strip().lower() == "cleanup"]
            return int(cleanup[0]["retention"]) if cleanup else None
        except pyodbc.Error as first:
            try:
                row = cursor.execute(queries.CDC_CLEANUP_RETENTION_MSDB).fetchone()
            except pyodbc.Error:
                raise SqlServerPermissionDenied(
                    f"cannot read the CDC cleanup job's retention of database {sqlserver.database} (source "
                    f"'{sqlserver.source_name}'): sys.sp_cdc_help_jobs needs db_owner, or GRANT SELECT ON "
                    f"msdb.dbo.cdc_jobs TO [{sqlserver.user}]. SQL Server said: "
                    f"{sqlserver.safe_message(str(first))}"
                ) from None
            return None if row is None or row[0] is None else int(row[0])
