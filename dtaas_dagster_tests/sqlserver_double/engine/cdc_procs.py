"""The ``sys.sp_cdc_*`` procedures of the double.

Supported: ``sp_cdc_enable_db``, ``sp_cdc_disable_db``, ``sp_cdc_enable_table``,
``sp_cdc_disable_table``, ``sp_cdc_cleanup_change_table`` (rules in
``cdc_retention``), ``sp_cdc_help_change_data_capture``, ``sp_cdc_help_jobs``
and ``sp_cdc_change_job`` for the cleanup job. Error numbers and texts are SQL
Server's message catalog entries ("Database engine events and errors
22000-22999"): 22901 database not enabled, 22907 empty ``@role_name``, 22927
capture instance name over 100 characters, 22926 name already used, 22928 no
such index, 22931 no such source table, 22939 net changes without a key, 22942
unknown column in ``@captured_column_list``, 22943 key column not captured,
22960 no such capture instance for the table, 22962 a third capture instance,
22963 a NULL or empty required name, 22972 only one of schema/name given to
``sp_cdc_help_change_data_capture``, 22974 a table in schema ``cdc``, 22975
reserved column names, 22989 a system database, 201 a missing required
parameter. An unknown capture instance in ``sp_cdc_cleanup_change_table`` is
22981 ("Object does not exist or access is denied.") - our best reading, not
checked against a server.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..engine_api import ResultColumn, ResultSet, SqlServerError, SqlType, StatementResult
from . import types as T
from .catalog import Database, Table
from .cdc_lsn import lsn_bytes
from .cdc_schema import (
    CDC_SCHEMA,
    CapturedColumn,
    CaptureInstance,
    change_table_columns,
    create_log_table,
    create_table,
    drop_log_schema,
    drop_log_table,
    drop_table,
    ensure_cdc_schema,
)

if TYPE_CHECKING:
    from .cdc import CdcManager

ENABLE_TABLE_PARAMS = ["source_schema", "source_name", "role_name", "capture_instance", "supports_net_changes",
                       "index_name", "captured_column_list", "filegroup_name", "allow_partition_switch"]  # fmt: skip
PARAMS = {
    "sp_cdc_enable_db": [],
    "sp_cdc_disable_db": [],
    "sp_cdc_enable_table": ENABLE_TABLE_PARAMS,
    "sp_cdc_disable_table": ["source_schema", "source_name", "capture_instance"],
    "sp_cdc_cleanup_change_table": ["capture_instance", "low_water_mark", "threshold", "fCleanupFailed"],
    "sp_cdc_help_change_data_capture": ["source_schema", "source_name"],
    "sp_cdc_help_jobs": [],
    "sp_cdc_change_job": [
        "job_type",
        "maxtrans",
        "maxscans",
        "continuous",
        "pollinginterval",
        "retention",
        "threshold",
    ],
}
RESERVED_COLUMNS = {"__$start_lsn", "__$end_lsn", "__$seqval", "__$operation", "__$update_mask"}
MAX_CAPTURE_INSTANCE = 100
SYSNAME = SqlType("nvarchar", 128)


class Args:
    """Named (``@name``) and positional procedure arguments, looked up by parameter name."""

    def __init__(self, procedure: str, raw: Any) -> None:
        self.procedure = procedure
        self.values: dict[str, Any] = {}
        names = PARAMS[procedure]
        items = raw.items() if isinstance(raw, dict) else enumerate(raw or [])
        for key, value in items:
            value = getattr(value, "value", value)  # engine_api.Param or a plain value
            if isinstance(key, str) and key.startswith("#") and key[1:].isdigit():
                key = int(key[1:]) - 1  # the engine's name for the n-th positional argument
            if isinstance(key, int):
                if key < len(names):
                    self.values[names[key].lower()] = value
            else:
                self.values[str(key).lstrip("@").lower()] = value

    def has(self, name: str) -> bool:
        return name.lower() in self.values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name.lower(), default)

    def required(self, name: str) -> Any:
        if not self.has(name):
            raise SqlServerError(
                201, f"Procedure or function '{self.procedure}' expects parameter '@{name}', which was not supplied."
            )
        return self.values[name.lower()]

    def name(self, name: str) -> str:
        """A required sysname that cannot be NULL or empty (22963), trimmed on the right like SQL Server."""
        value = self.required(name)
        if value is None or not str(value).strip():
            raise SqlServerError(22963, f"Parameter '@{name}' cannot be null or empty. Specify a value for the named "
                                 "parameter and retry the operation.")  # fmt: skip
        return str(value).rstrip()


def call(manager: CdcManager, txn: Any, name: str, raw_args: Any) -> StatementResult:
    from . import cdc_help

    handlers = {
        "sp_cdc_enable_db": enable_db,
        "sp_cdc_disable_db": disable_db,
        "sp_cdc_enable_table": enable_table,
        "sp_cdc_disable_table": disable_table,
        "sp_cdc_cleanup_change_table": cdc_help.cleanup_change_table_proc,
        "sp_cdc_help_change_data_capture": cdc_help.help_change_data_capture,
        "sp_cdc_help_jobs": cdc_help.help_jobs,
        "sp_cdc_change_job": cdc_help.change_job,
    }
    handler = handlers.get(name)
    if handler is None:
        raise SqlServerError(2812, f"Could not find stored procedure 'sys.{name}'.")
    db = manager.session_database(txn)
    with manager.cursor(txn) as cursor:
        result = handler(manager, cursor, db, Args(name, raw_args))
    if isinstance(result, StatementResult):
        result.return_status = 0
        return result
    return StatementResult(return_status=0)


def result_set(columns: list[tuple[str, SqlType]], rows: list[tuple]) -> StatementResult:
    """A procedure's result set in the contract's Arrow form."""
    result_columns = [ResultColumn(name, sql_type) for name, sql_type in columns]
    arrays = [pa.array([row[i] for row in rows], T.arrow_type(t)) for i, (_, t) in enumerate(columns)]
    table = pa.table(arrays, names=[name for name, _ in columns])
    return StatementResult(result_set=ResultSet(result_columns, table.to_batches()), rowcount=len(rows))


def require_cdc_db(db: Database) -> None:
    if not db.is_cdc_enabled:
        raise SqlServerError(
            22901,
            f"The database '{db.name}' is not enabled for Change Data Capture. Ensure that the correct database "
            "context is set and retry the operation. To report on the databases enabled for Change Data Capture, "
            "query the is_cdc_enabled column in the sys.databases catalog view.",
        )


def require_instance(manager: CdcManager, db: Database, name: Any) -> CaptureInstance:
    instance = manager.find_instance(db, str(name or "").rstrip())
    if instance is None:
        raise SqlServerError(22981, "Object does not exist or access is denied.")
    return instance


def enable_db(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    if db.database_id <= 4:
        raise SqlServerError(22989, f"Could not enable Change Data Capture for database '{db.name}'. Change data "
                             "capture is not supported on system databases, or on a distribution database.")  # fmt: skip
    ensure_cdc_schema(cursor, db)
    db.is_cdc_enabled = True


def disable_db(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    for instance in list(manager.instances(db).values()):
        drop_instance(manager, cursor, db, instance)
    for name in ("change_tables", "captured_columns", "lsn_time_mapping", "ddl_history", "index_columns"):
        table = db.find_table(CDC_SCHEMA, name)
        if table is not None:
            drop_table(cursor, db, table)
    drop_log_schema(cursor, db)
    db.is_cdc_enabled = False


def _source_table(db: Database, schema: str, name: str) -> Table:
    if schema.lower() == CDC_SCHEMA:
        raise SqlServerError(22974, "Tables contained in the cdc schema cannot be enabled for Change Data Capture.")
    table = db.find_table(schema, name)
    if table is None:
        raise SqlServerError(
            22931, f"Source table '{schema}.{name}' does not exist in the current database. Ensure that the correct "
            "database context is set. Specify a valid schema and table name for the database."
        )  # fmt: skip
    return table


def _captured(table: Table, column_list: str | None) -> list[CapturedColumn]:
    if column_list is None or not str(column_list).strip():
        wanted = [c.name for c in table.columns]
        if any(name.lower() in RESERVED_COLUMNS for name in wanted):
            raise SqlServerError(
                22975, f"Source table '{table.name}' contains one of the following reserved column names: "
                "__$start_lsn, __$end_lsn, __$seqval, __$operation, and __$update_mask. To enable Change Data "
                "Capture for this table, specify a captured column list and ensure that these columns are excluded "
                "from the list."
            )  # fmt: skip
    else:
        wanted = [w.strip().strip('[]"').strip() for w in str(column_list).split(",") if w.strip()]
    captured = []
    for ordinal, name in enumerate(wanted, start=1):
        column = table.column(name)
        if column is None or name.lower() in RESERVED_COLUMNS:
            raise SqlServerError(
                22942, f"Columns specified in the captured column list could not be mapped to columns in source table "
                f"'{table.schema}.{table.name}'. Verify that the columns specified in the parameter "
                "@captured_column_list are delimited properly and match columns in the source table."
            )  # fmt: skip
        column_id = next(i for i, c in enumerate(table.columns, start=1) if c is column)
        captured.append(CapturedColumn(column.name, column.type, column_id, ordinal))
    return captured


def _index(table: Table, index_name: str | None, net_changes: bool) -> tuple[str | None, list[str]]:
    if index_name:
        key = next((k for k in table.keys if k.name.lower() == str(index_name).lower()), None)
        if key is None:
            raise SqlServerError(22928, f"Index name '{index_name}' is not an index for table "
                                 f"'{table.schema}.{table.name}'. Specify a valid index name for the table.")  # fmt: skip
        return key.name, list(key.columns)
    if table.primary_key is not None:
        return table.primary_key.name, list(table.primary_key.columns)
    if net_changes:
        raise SqlServerError(
            22939, "The parameter @supports_net_changes is set to 1, but the source table does not have a primary "
            "key defined and no alternate unique index has been specified."
        )  # fmt: skip
    return None, []


def _capture_instance_name(manager: CdcManager, db: Database, table: Table, args: Args) -> str:
    given = args.get("capture_instance")
    name = (str(given) if given is not None and str(given).strip() else f"{table.schema}_{table.name}").rstrip()
    if len(name) > MAX_CAPTURE_INSTANCE:
        raise SqlServerError(22927, f"Capture instance name '{name}' exceeds the length limit of 100 characters. "
                             "Specify a name that satisfies the length constraint.")  # fmt: skip
    if manager.find_instance(db, name) is not None:
        raise SqlServerError(
            22926, f"Could not create a capture instance because the capture instance name '{name}' already exists "
            "in the current database. Specify an explicit unique name for the parameter @capture_instance."
        )  # fmt: skip
    if len(manager.instances_of(db, table.schema, table.name)) >= 2:
        raise SqlServerError(
            22962, f"Two capture instances already exist for source table '{table.schema}.{table.name}'. A table can "
            "have at most two capture instances. If the current tracking options are not appropriate, disable change "
            "tracking for the obsolete instance by using sys.sp_cdc_disable_table and retry the operation."
        )  # fmt: skip
    return name


def _role_name(args: Args) -> str | None:
    role = args.required("role_name")
    if role is not None and not str(role).strip():
        raise SqlServerError(22907, "Parameter @role_name cannot be empty. Specify a value for @role_name and retry "
                             "the operation. Supply null as the value if no role is to be used to gate access to "
                             "captured change data.")  # fmt: skip
    return None if role is None else str(role).rstrip()


def enable_table(manager: CdcManager, cursor: Any, db: Database, args: Args) -> StatementResult:
    require_cdc_db(db)
    table = _source_table(db, args.name("source_schema"), args.name("source_name"))
    role_name = _role_name(args)
    ci_name = _capture_instance_name(manager, db, table, args)
    requested = args.get("supports_net_changes")
    # SQL Server's default: net changes when the table has a key to collapse on
    net = bool(int(requested)) if requested is not None else bool(table.primary_key or args.get("index_name"))
    index_name, index_columns = _index(table, args.get("index_name"), net)
    captured = _captured(table, args.get("captured_column_list"))
    if any(not any(cc.name.lower() == c.lower() for cc in captured) for c in index_columns):
        raise SqlServerError(
            22943, "Columns used to uniquely identify a row for net change tracking must be included in the list of "
            "captured columns. Add either the primary key columns of the source table, or the columns defined for "
            "the index specified in the parameter @index_name to the list of captured columns and retry the operation."
        )  # fmt: skip
    if not index_columns:
        net = False
    change_table = create_table(cursor, db, CDC_SCHEMA, f"{ci_name}_CT", change_table_columns(captured))
    instance = CaptureInstance(ci_name, table.schema, table.name, table.object_id, change_table, captured,
                               index_columns, net, role_name, index_name)  # fmt: skip
    create_log_table(cursor, instance)
    _insert_metadata(manager, cursor, db, table, instance)
    manager.instances(db)[ci_name.lower()] = instance
    manager.job_settings(db).created = True
    table.is_tracked_by_cdc = True
    switch = args.get("allow_partition_switch")
    if switch is not None and not int(switch):  # the double's tables are never partitioned
        return StatementResult(messages=[
            "Warning: The @allow_partition_switch parameter must be 1 for tables that are not partitioned. The "
            "explicit setting of the parameter to 0 was ignored. Refer to books online for more information about "
            "partition switching behavior when using Change Data Capture."])  # fmt: skip
    return StatementResult()


def _insert_metadata(manager: CdcManager, cursor: Any, db: Database, table: Table, ci: CaptureInstance) -> None:
    def insert(name: str, rows: list[list[Any]]) -> None:
        target = db.find_table(CDC_SCHEMA, name)
        assert target is not None, f"cdc.{name} missing in {db.name}"
        marks = ", ".join("?" for _ in target.columns)
        for row in rows:
            cursor.execute(f"INSERT INTO {target.duck_name} VALUES ({marks})", row)

    start_lsn = lsn_bytes(manager.next_lsn())
    ci.extra["create_date"] = dt.datetime.now().replace(microsecond=0)
    # partition_switch is always 1 for a table that is not partitioned (sys.sp_cdc_enable_table)
    insert("change_tables", [[ci.object_id, 0, table.object_id, ci.name, start_lsn, None, ci.supports_net_changes,
                              False, ci.role_name, ci.index_name, None, ci.extra["create_date"], True]])  # fmt: skip
    insert("captured_columns", [[ci.object_id, c.name, c.column_id, c.type.name, c.ordinal, False] for c in ci.columns])
    column_ids = {c.name.lower(): i for i, c in enumerate(table.columns, start=1)}
    insert("index_columns", [[ci.object_id, name, pos, column_ids.get(name.lower(), 0)]
                             for pos, name in enumerate(ci.index_columns, start=1)])  # fmt: skip


def drop_instance(manager: CdcManager, cursor: Any, db: Database, instance: CaptureInstance) -> None:
    for name in ("change_tables", "captured_columns", "index_columns", "ddl_history"):
        table = db.find_table(CDC_SCHEMA, name)
        if table is not None:
            cursor.execute(f"DELETE FROM {table.duck_name} WHERE object_id = ?", [instance.object_id])
    drop_table(cursor, db, instance.change_table)
    drop_log_table(cursor, instance)
    manager.instances(db).pop(instance.name.lower(), None)
    source = db.find_table(instance.source_schema, instance.source_table)
    if source is not None:
        source.is_tracked_by_cdc = bool(manager.instances_of(db, source.schema, source.name))


def disable_table(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    require_cdc_db(db)
    schema, name = args.name("source_schema"), args.name("source_name")
    which = args.name("capture_instance")
    instances = manager.instances_of(db, schema, name)
    if which.lower() != "all":
        instances = [ci for ci in instances if ci.name.lower() == which.lower()]
        if not instances:
            raise SqlServerError(
                22960, f"Change data capture instance '{which}' has not been enabled for the source table "
                f"'{schema}.{name}'. Use sys.sp_cdc_help_change_data_capture to verify the capture instance name and "
                "retry the operation."
            )  # fmt: skip
    for instance in instances:
        drop_instance(manager, cursor, db, instance)
