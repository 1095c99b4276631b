"""Retention: ``sys.sp_cdc_cleanup_change_table``, the cleanup job, and the double's purge hook.

Documented rules (pages "sys.sp_cdc_cleanup_change_table" and "Cleanup Job"):

- a non-NULL ``@low_water_mark`` must be the ``start_lsn`` of an entry in
  ``cdc.lsn_time_mapping`` (error 22964 otherwise); when other entries share
  its commit time, the smallest of their LSNs becomes the mark;
- ``@low_water_mark = NULL`` keeps the capture instance's mark and deletes the
  rows below it (how an administrator retries a failed cleanup);
- a mark below the instance's current one is error 22957 (the current page;
  the SQL Server 2008-2014 pages said the mark was left unchanged instead);
- rows with ``__$start_lsn`` below the mark are deleted, at most ``@threshold``
  rows per DELETE statement (default 5000; 22850 unless it is above 0);
- the cleanup job subtracts its retention (minutes) from the newest
  ``tran_end_time`` in ``cdc.lsn_time_mapping``, maps that time to the newest
  entry at or before it (the smallest LSN of that commit time), raises every
  capture instance whose mark is lower to it, and then deletes change rows and
  ``cdc.lsn_time_mapping`` entries below it.

The purge hook (``purge_changes``) is the double's shortcut for "the cleanup
job has removed everything up to this LSN": the new mark is the first commit
LSN after it, so ``sys.fn_cdc_get_min_lsn`` always names a transaction, as on
SQL Server.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ..engine_api import SqlServerError
from .catalog import Database
from .cdc_lsn import lsn_bytes, lsn_int
from .cdc_schema import CDC_SCHEMA, CaptureInstance

if TYPE_CHECKING:
    from .cdc import CdcManager

DEFAULT_THRESHOLD = 5000
DEFAULT_RETENTION_MINUTES = 4320  # three days, SQL Server's default
MAX_RETENTION_MINUTES = 52594800


def check_threshold(threshold: Any) -> int:
    value = DEFAULT_THRESHOLD if threshold is None else int(threshold)
    if value <= 0:
        raise SqlServerError(
            22850, "The threshold value specified for the Change Data Capture cleanup process must be greater than 0. "
            "When creating or modifying the cleanup job, specify a positive threshold value. If this error is "
            "encountered when executing the sys.sp_cdc_cleanup_change_table stored procedure, reset the threshold "
            "value associated with the job to a non-negative value by using the sp_cdc_change_job stored procedure."
        )  # fmt: skip
    return value


def check_retention(minutes: Any) -> float:
    value = float(minutes)
    if not 0 < value <= MAX_RETENTION_MINUTES:
        raise SqlServerError(
            22994, "The retention value specified for the Change Data Capture cleanup process must be greater than 0 "
            "and less than or equal to 52594800. When creating or modifying the cleanup job, specify a retention "
            "value (in minutes) that is within that range."
        )  # fmt: skip
    return value


def _table(db: Database, name: str) -> str:
    table = db.find_table(CDC_SCHEMA, name)
    assert table is not None, f"cdc.{name} missing in CDC-enabled database {db.name}"
    return table.duck_name


def current_mark(cursor: Any, db: Database, instance: CaptureInstance) -> bytes:
    row = cursor.execute(f"SELECT start_lsn FROM {_table(db, 'change_tables')} WHERE object_id = ?",
                         [instance.object_id]).fetchone()  # fmt: skip
    return bytes(row[0]) if row and row[0] is not None else bytes(10)


def commit_time_group_start(cursor: Any, db: Database, lsn: bytes) -> bytes | None:
    """The smallest LSN sharing ``lsn``'s commit time in cdc.lsn_time_mapping; None when ``lsn`` is not there."""
    mapping = _table(db, "lsn_time_mapping")
    row = cursor.execute(
        f"SELECT min(m.start_lsn) FROM {mapping} m JOIN {mapping} x ON m.tran_end_time = x.tran_end_time "
        "WHERE x.start_lsn = ?", [lsn],
    ).fetchone()  # fmt: skip
    return bytes(row[0]) if row and row[0] is not None else None


def raise_mark(cursor: Any, db: Database, instance: CaptureInstance, low_water: bytes) -> None:
    """Set the instance's ``start_lsn`` to ``low_water`` unless it is already at or past it."""
    cursor.execute(
        f"UPDATE {_table(db, 'change_tables')} SET start_lsn = ? WHERE object_id = ? AND start_lsn < ?",
        [low_water, instance.object_id, low_water],
    )


def delete_below(cursor: Any, target: str, column: str, low_water: bytes, threshold: int) -> int:
    """Delete rows of ``target`` with ``column`` below ``low_water``, ``threshold`` rows per statement."""
    deleted = 0
    while True:
        row = cursor.execute(
            f'DELETE FROM {target} WHERE rowid IN (SELECT rowid FROM {target} WHERE "{column}" < ? LIMIT ?)',
            [low_water, threshold],
        ).fetchone()  # fmt: skip
        count = int(row[0]) if row else 0
        deleted += count
        if count < threshold:
            return deleted


def cleanup_change_table(cursor: Any, db: Database, instance: CaptureInstance, low_water: Any, threshold: int) -> int:
    """``sys.sp_cdc_cleanup_change_table`` on one capture instance; returns the change rows deleted."""
    current = current_mark(cursor, db, instance)
    if low_water is None:
        mark = current
    else:
        requested = lsn_bytes(lsn_int(low_water))
        adjusted = commit_time_group_start(cursor, db, requested)
        if adjusted is None:
            raise SqlServerError(
                22964, f"LSN 0x{requested.hex().upper()}, specified as the new low end point for change table cleanup "
                "must represent the start_lsn value of a current entry in the cdc.lsn_time_mapping table. Choose an "
                "LSN value that satisfies this requirement."
            )  # fmt: skip
        if requested < current:
            high = cursor.execute(f"SELECT max(start_lsn) FROM {_table(db, 'lsn_time_mapping')}").fetchone()[0]
            raise SqlServerError(
                22957, f"LSN 0x{requested.hex().upper()}, specified as the new low end point for the change table "
                f"associated with capture instance '{instance.name}', is not within the Change Data Capture timeline "
                f"[0x{current.hex().upper()}, 0x{bytes(high or b'').hex().upper()}]."
            )  # fmt: skip
        mark = max(adjusted, current)
        raise_mark(cursor, db, instance, mark)
    return delete_below(cursor, instance.change_table.duck_name, "__$start_lsn", mark, threshold)


def retention_low_water_mark(cursor: Any, db: Database, retention_minutes: float) -> bytes | None:
    """The cleanup job's new mark: the newest entry at least ``retention_minutes`` older than the newest one."""
    mapping = _table(db, "lsn_time_mapping")
    newest = cursor.execute(f"SELECT max(tran_end_time) FROM {mapping}").fetchone()[0]
    if newest is None:
        return None
    cutoff = newest - dt.timedelta(minutes=retention_minutes)
    row = cursor.execute(
        f"SELECT max(start_lsn) FROM {mapping} WHERE tran_end_time <= ?", [cutoff]
    ).fetchone()  # fmt: skip
    if row[0] is None:
        return None
    return commit_time_group_start(cursor, db, bytes(row[0]))


def run_cleanup_job(manager: CdcManager, db: Database, retention_minutes: float, threshold: int) -> dict[str, Any]:
    """One run of the cleanup job for ``db``, in its own transaction."""
    cursor = manager.engine.con.cursor()
    cursor.execute("BEGIN TRANSACTION")
    try:
        mark = retention_low_water_mark(cursor, db, retention_minutes)
        deleted = mappings = 0
        if mark is not None:
            instances = list(manager.instances(db).values())
            for instance in instances:  # all marks first, as the job does
                raise_mark(cursor, db, instance, mark)
            for instance in instances:
                deleted += delete_below(cursor, instance.change_table.duck_name, "__$start_lsn", mark, threshold)
            mappings = delete_below(cursor, _table(db, "lsn_time_mapping"), "start_lsn", mark, threshold)
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.close()
    return {"low_water_mark": mark, "deleted_rows": deleted, "deleted_mappings": mappings}


def purge_changes(
    cursor: Any, db: Database, targets: list[CaptureInstance], all_instances: list[CaptureInstance], up_to_lsn: bytes
) -> int:
    """Delete the targets' change rows up to ``up_to_lsn``; their mark becomes the next commit LSN."""
    mapping = _table(db, "lsn_time_mapping")
    row = cursor.execute(f"SELECT min(start_lsn), max(start_lsn) FROM {mapping} WHERE start_lsn > ?",
                         [lsn_bytes(lsn_int(up_to_lsn))]).fetchone()  # fmt: skip
    if row[0] is None:
        newest = cursor.execute(f"SELECT max(start_lsn) FROM {mapping}").fetchone()[0]
        raise SqlServerError(
            22957, f"cannot purge up to 0x{bytes(up_to_lsn).hex().upper()} in database '{db.name}': the new low end "
            "point must be a later commit LSN in cdc.lsn_time_mapping, and the newest one is "
            f"0x{bytes(newest or bytes(10)).hex().upper()} (SQL Server's cleanup always keeps the newest transaction)"
        )  # fmt: skip
    mark = bytes(row[0])
    deleted = 0
    for instance in targets:
        raise_mark(cursor, db, instance, mark)
        deleted += delete_below(cursor, instance.change_table.duck_name, "__$start_lsn", mark, DEFAULT_THRESHOLD)
    lowest = min((current_mark(cursor, db, ci) for ci in all_instances), default=mark)
    delete_below(cursor, mapping, "start_lsn", lowest, DEFAULT_THRESHOLD)
    return deleted
