"""The ``sys.sp_cdc_*`` procedures of the double.

Supported: ``sp_cdc_enable_db``, ``sp_cdc_disable_db``, ``sp_cdc_enable_table``,
``sp_cdc_disable_table``, ``sp_cdc_cleanup_change_table``. Error numbers are
SQL Server's where we know them (22901 database not enabled, 22962 a third
capture instance, 22926 a capture instance name already used, 22939 net changes
without a key, 201 a missing required parameter); texts are close to SQL
Server's, not always identical.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ..engine_api import SqlServerError, StatementResult
from .catalog import Database, Table
from .cdc_lsn import lsn_bytes, lsn_int
from .cdc_schema import (
    CDC_SCHEMA,
    CapturedColumn,
    CaptureInstance,
    change_table_columns,
    create_table,
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
}


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


def call(manager: CdcManager, txn: Any, name: str, raw_args: Any) -> StatementResult:
    handlers = {
        "sp_cdc_enable_db": enable_db,
        "sp_cdc_disable_db": disable_db,
        "sp_cdc_enable_table": enable_table,
        "sp_cdc_disable_table": disable_table,
        "sp_cdc_cleanup_change_table": cleanup_change_table,
    }
    handler = handlers.get(name)
    if handler is None:
        raise SqlServerError(2812, f"Could not find stored procedure 'sys.{name}'.")
    db = manager.session_database(txn)
    with manager.cursor(txn) as cursor:
        handler(manager, cursor, db, Args(name, raw_args))
    return StatementResult(return_status=0)


def require_cdc_db(db: Database) -> None:
    if not db.is_cdc_enabled:
        raise SqlServerError(
            22901,
            f"The database '{db.name}' is not enabled for Change Data Capture. Ensure that the correct database "
            "context is set and retry the operation. To report on the databases enabled for Change Data Capture, "
            "query the is_cdc_enabled column in the sys.databases catalog view.",
        )


def enable_db(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    if db.database_id <= 4:
        raise SqlServerError(22988, f"Change data capture cannot be enabled on system database '{db.name}'.")
    ensure_cdc_schema(cursor, db)
    db.is_cdc_enabled = True


def disable_db(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    for instance in list(manager.instances(db).values()):
        drop_instance(manager, cursor, db, instance)
    for name in ("change_tables", "captured_columns", "lsn_time_mapping", "ddl_history", "index_columns"):
        table = db.find_table(CDC_SCHEMA, name)
        if table is not None:
            drop_table(cursor, db, table)
    db.is_cdc_enabled = False


def _source_table(db: Database, schema: str, name: str) -> Table:
    table = db.find_table(schema, name)
    if table is None or schema.lower() == CDC_SCHEMA:
        raise SqlServerError(
            22931, f"Source table '{schema}.{name}' does not exist in the current database '{db.name}'. "
            "Ensure that the correct database context is set. Specify a valid schema and table name for the database."
        )  # fmt: skip
    return table


def _captured(table: Table, column_list: str | None) -> list[CapturedColumn]:
    if column_list is None or not str(column_list).strip():
        wanted = [c.name for c in table.columns]
    else:
        wanted = [w.strip().strip("[]\"").strip() for w in str(column_list).split(",") if w.strip()]
    captured = []
    for ordinal, name in enumerate(wanted, start=1):
        column = table.column(name)
        if column is None:
            raise SqlServerError(
                22833, f"Could not find column '{name}' of @captured_column_list in source table "
                f"'{table.schema}.{table.name}'. Check the column names and retry."
            )  # fmt: skip
        column_id = next(i for i, c in enumerate(table.columns, start=1) if c is column)
        captured.append(CapturedColumn(column.name, column.type, column_id, ordinal))
    return captured


def _index(table: Table, index_name: str | None, net_changes: bool) -> tuple[str | None, list[str]]:
    if index_name:
        key = next((k for k in table.keys if k.name.lower() == str(index_name).lower()), None)
        if key is None:
            raise SqlServerError(22932, f"Could not locate index '{index_name}' on source table '{table.schema}.{table.name}'.")
        return key.name, list(key.columns)
    if table.primary_key is not None:
        return table.primary_key.name, list(table.primary_key.columns)
    if net_changes:
        raise SqlServerError(
            22939, f"The parameter @supports_net_changes is set to 1, but the source table '{table.schema}.{table.name}' "
            "does not have a primary key defined and no alternate unique index has been specified."
        )  # fmt: skip
    return None, []


def enable_table(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    require_cdc_db(db)
    schema, name = str(args.required("source_schema")), str(args.required("source_name"))
    role_name = args.required("role_name")
    table = _source_table(db, schema, name)
    ci_name = str(args.get("capture_instance") or f"{table.schema}_{table.name}")
    if manager.find_instance(db, ci_name) is not None:
        raise SqlServerError(
            22926, f"Could not create a capture instance because the capture instance name '{ci_name}' already "
            "exists in the current database. Specify an explicit unique name for the parameter @capture_instance."
        )  # fmt: skip
    if len(manager.instances_of(db, table.schema, table.name)) >= 2:
        raise SqlServerError(
            22962, f"Two capture instances already exist for source table '{table.schema}.{table.name}'. A table can "
            "have a maximum of two capture instances. If this is not the desired configuration, use the stored "
            "procedure sys.sp_cdc_disable_table to disable one of the capture instances."
        )  # fmt: skip
    requested = args.get("supports_net_changes")
    # SQL Server's default: net changes when the table has a key to collapse on
    net = bool(int(requested)) if requested is not None else bool(table.primary_key or args.get("index_name"))
    index_name, index_columns = _index(table, args.get("index_name"), net)
    captured = _captured(table, args.get("captured_column_list"))
    missing = [c for c in index_columns if not any(cc.name.lower() == c.lower() for cc in captured)]
    if missing:
        raise SqlServerError(22945, f"Could not create capture instance: index column '{missing[0]}' of "
                             f"'{index_name}' must be in @captured_column_list.")  # fmt: skip
    if not index_columns:
        net = False
    change_table = create_table(cursor, db, CDC_SCHEMA, f"{ci_name}_CT", change_table_columns(captured))
    instance = CaptureInstance(ci_name, table.schema, table.name, table.object_id, change_table, captured,
                               index_columns, net, role_name, index_name)  # fmt: skip
    _insert_metadata(manager, cursor, db, table, instance)
    manager.instances(db)[ci_name.lower()] = instance
    table.is_tracked_by_cdc = True


def _insert_metadata(manager: CdcManager, cursor: Any, db: Database, table: Table, ci: CaptureInstance) -> None:
    def insert(name: str, rows: list[list[Any]]) -> None:
        target = db.find_table(CDC_SCHEMA, name)
        assert target is not None, f"cdc.{name} missing in {db.name}"
        marks = ", ".join("?" for _ in target.columns)
        for row in rows:
            cursor.execute(f"INSERT INTO {target.duck_name} VALUES ({marks})", row)

    start_lsn = lsn_bytes(manager.next_lsn())
    insert("change_tables", [[ci.object_id, 0, table.object_id, ci.name, start_lsn, None, ci.supports_net_changes,
                              False, ci.role_name, ci.index_name, None, dt.datetime.now(), False]])  # fmt: skip
    insert("captured_columns", [[ci.object_id, c.name, c.column_id, c.type.name, c.ordinal, False] for c in ci.columns])
    column_ids = {c.name.lower(): i for i, c in enumerate(table.columns, start=1)}
    insert("index_columns", [[ci.object_id, name, pos, column_ids.get(name.lower(), 0)]
                             for pos, name in enumerate(ci.index_columns, start=1)])  # fmt: skip


def drop_instance(manager: CdcManager, cursor: Any, db: Database, instance: CaptureInstance) -> None:
    for name in ("change_tables", "captured_columns", "index_columns"):
        table = db.find_table(CDC_SCHEMA, name)
        if table is not None:
            cursor.execute(f"DELETE FROM {table.duck_name} WHERE object_id = ?", [instance.object_id])
    drop_table(cursor, db, instance.change_table)
    manager.instances(db).pop(instance.name.lower(), None)
    source = db.find_table(instance.source_schema, instance.source_table)
    if source is not None:
        source.is_tracked_by_cdc = bool(manager.instances_of(db, source.schema, source.name))


def disable_table(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    require_cdc_db(db)
    schema, name = str(args.required("source_schema")), str(args.required("source_name"))
    which = str(args.required("capture_instance"))
    instances = manager.instances_of(db, schema, name)
    if which.lower() != "all":
        instances = [ci for ci in instances if ci.name.lower() == which.lower()]
        if not instances:
            raise SqlServerError(
                22904, f"Could not find capture instance '{which}' for source table '{schema}.{name}'. "
                "Query cdc.change_tables for the capture instances of the table."
            )  # fmt: skip
    for instance in instances:
        drop_instance(manager, cursor, db, instance)


def move_low_water_mark(cursor: Any, db: Database, instance: CaptureInstance, low_water: bytes) -> int:
    """Delete change rows below ``low_water`` and raise the instance's start_lsn to it; returns rows deleted."""
    ct = instance.change_table.duck_name
    deleted = cursor.execute(f'SELECT count(*) FROM {ct} WHERE "__$start_lsn" < ?', [low_water]).fetchone()[0]
    cursor.execute(f'DELETE FROM {ct} WHERE "__$start_lsn" < ?', [low_water])
    change_tables = db.find_table(CDC_SCHEMA, "change_tables")
    assert change_tables is not None
    cursor.execute(
        f"UPDATE {change_tables.duck_name} SET start_lsn = ? WHERE object_id = ? AND start_lsn < ?",
        [low_water, instance.object_id, low_water],
    )
    return int(deleted)


def cleanup_change_table(manager: CdcManager, cursor: Any, db: Database, args: Args) -> None:
    require_cdc_db(db)
    ci_name = str(args.required("capture_instance"))
    instance = manager.find_instance(db, ci_name)
    if instance is None:
        raise SqlServerError(22964, f"Capture instance '{ci_name}' does not exist in database '{db.name}'.")
    low_water = args.get("low_water_mark")
    max_lsn = manager.max_lsn(cursor, db)
    if low_water is None:
        low_water = max_lsn
    current = manager.min_lsn(cursor, db, instance.name)
    if lsn_int(low_water) < lsn_int(current) or lsn_int(low_water) > lsn_int(max_lsn):
        raise SqlServerError(
            22957, f"LSN {lsn_bytes(lsn_int(low_water)).hex()}, specified as the new low endpoint for the change table "
            f"associated with capture instance '{instance.name}', is not within the Change Data Capture timeline "
            f"[{bytes(current).hex()}, {bytes(max_lsn or b'').hex()}]."
        )  # fmt: skip
    move_low_water_mark(cursor, db, instance, lsn_bytes(lsn_int(low_water)))
