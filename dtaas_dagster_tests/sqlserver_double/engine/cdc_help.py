"""The reporting and job procedures: ``sys.sp_cdc_help_change_data_capture``, ``sys.sp_cdc_help_jobs``,
``sys.sp_cdc_change_job`` (cleanup job) and ``sys.sp_cdc_cleanup_change_table``.

Result sets have the columns and types of SQL Server's documentation pages of
the same names. ``index_column_list``/``captured_column_list`` are the
bracket-quoted names joined with ", ". The capture job's settings are shown
with SQL Server's defaults (maxtrans 500, maxscans 10, continuous 1,
pollinginterval 5); changing them is refused because the double's capture
timing is its capture lag (``CdcManager.set_capture_lag``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ..engine_api import SqlServerError, SqlType, StatementResult, not_supported
from .catalog import Database
from .cdc_procs import SYSNAME, Args, require_cdc_db, require_instance, result_set
from .cdc_retention import check_retention, check_threshold, cleanup_change_table, current_mark
from .cdc_schema import CaptureInstance

if TYPE_CHECKING:
    from .cdc import CdcManager

HELP_COLUMNS = [
    ("source_schema", SYSNAME), ("source_table", SYSNAME), ("capture_instance", SYSNAME),
    ("object_id", SqlType("int")), ("source_object_id", SqlType("int")), ("start_lsn", SqlType("binary", 10)),
    ("end_lsn", SqlType("binary", 10)), ("supports_net_changes", SqlType("bit")), ("has_drop_pending", SqlType("bit")),
    ("role_name", SYSNAME), ("index_name", SYSNAME), ("filegroup_name", SYSNAME), ("create_date", SqlType("datetime")),
    ("index_column_list", SqlType("nvarchar", -1)), ("captured_column_list", SqlType("nvarchar", -1)),
]  # fmt: skip
JOB_COLUMNS = [
    ("job_id", SqlType("uniqueidentifier")), ("job_type", SqlType("nvarchar", 20)), ("maxtrans", SqlType("int")),
    ("maxscans", SqlType("int")), ("continuous", SqlType("bit")), ("pollinginterval", SqlType("bigint")),
    ("retention", SqlType("bigint")), ("threshold", SqlType("bigint")),
]  # fmt: skip


def cleanup_change_table_proc(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    require_cdc_db(db)
    instance = require_instance(manager, db, args.name("capture_instance"))
    threshold = check_threshold(args.get("threshold"))
    cleanup_change_table(cursor, db, instance, args.required("low_water_mark"), threshold)


def _quoted_list(names: list[str]) -> str:
    return ", ".join("[" + name.replace("]", "]]") + "]" for name in names)


def help_change_data_capture(manager: CdcManager, cursor: Any, db: Database, args: Args) -> StatementResult:
    require_cdc_db(db)
    schema, name = args.get("source_schema"), args.get("source_name")
    given = [bool(v is not None and str(v).strip()) for v in (schema, name)]
    if any(given) and not all(given):
        raise SqlServerError(22972, "When calling stored procedure [sys].sp_cdc_help_change_data capture, if either "
                             "@source_schema or @source_name is non-null and non-empty, the other parameter must also "
                             "be non-null and non-empty.")  # fmt: skip
    instances: list[CaptureInstance] = sorted(manager.instances(db).values(), key=lambda ci: ci.name.lower())
    if all(given):
        if db.find_table(str(schema), str(name)) is None:
            raise SqlServerError(22931, f"Source table '{schema}.{name}' does not exist in the current database. "
                                 "Ensure that the correct database context is set. Specify a valid schema and table "
                                 "name for the database.")  # fmt: skip
        instances = [ci for ci in instances if ci.is_source(str(schema), str(name))]
    rows = [
        (ci.source_schema, ci.source_table, ci.name, ci.object_id, ci.source_object_id,
         current_mark(cursor, db, ci), None, ci.supports_net_changes, False, ci.role_name, ci.index_name, None,
         ci.extra.get("create_date"), _quoted_list(ci.index_columns) or None,
         _quoted_list([c.name for c in ci.columns]))
        for ci in instances
    ]  # fmt: skip
    return result_set(HELP_COLUMNS, rows)


def help_jobs(manager: CdcManager, cursor: Any, db: Database, args: Args) -> StatementResult:
    require_cdc_db(db)
    settings = manager.job_settings(db)
    if not settings.created:  # the jobs appear with the database's first capture instance
        return result_set(JOB_COLUMNS, [])
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"{db.name}/{db.database_id}/{kind}")).upper()
           for kind in ("capture", "cleanup")]  # fmt: skip
    rows = [
        (ids[0], "capture", 500, 10, True, 5, 0, 0),
        (ids[1], "cleanup", 0, 0, False, 0, int(settings.retention_minutes), settings.threshold),
    ]
    return result_set(JOB_COLUMNS, rows)


def change_job(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    require_cdc_db(db)
    job_type = str(args.get("job_type") or "capture").strip().lower()
    if job_type not in ("capture", "cleanup"):
        raise SqlServerError(22992, f"The specified @job_type, {job_type}, is not supported. The value specified for "
                             "the parameter @job_type must be N'capture' to indicate a capture job, or N'cleanup' to "
                             "indicate a cleanup job.")  # fmt: skip
    if job_type == "capture":
        raise not_supported("sys.sp_cdc_change_job for the capture job; the double's capture timing is its capture "
                            "lag (DoubleProcess.set_capture_lag)")  # fmt: skip
    settings = manager.job_settings(db)
    if args.get("retention") is not None:
        settings.retention_minutes = check_retention(int(args.get("retention")))
    if args.get("threshold") is not None:
        settings.threshold = check_threshold(args.get("threshold"))
