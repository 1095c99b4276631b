"""DDL on a table that has capture instances ("About Change Data Capture", Handling Changes to Source Tables).

- ``ALTER TABLE ... ADD/DROP COLUMN``: the change table keeps its shape (a
  dropped column is NULL from then on; an added one is not captured) and the
  statement is recorded in ``cdc.ddl_history``;
- ``ALTER TABLE ... ALTER COLUMN`` changing a captured column's type: the type
  change is propagated to the change table (and ``cdc.captured_columns``), so
  capture loses no data, and ``cdc.ddl_history.required_column_update`` is 1;
- ``DROP TABLE``: the table's capture instances go with it (change table,
  ``cdc.change_tables``/``captured_columns``/``index_columns`` rows).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import duckdb

from ..engine_api import SqlServerError
from .catalog import Database, Table
from .cdc_lsn import lsn_bytes
from .cdc_schema import CDC_SCHEMA, CaptureInstance, datetime_value, retype_captured_column

if TYPE_CHECKING:
    from .cdc import CdcManager


def on_ddl(manager: CdcManager, txn: Any, database: str, schema: str, table: str, ddl_text: str) -> None:
    from .cdc_procs import drop_instance

    db = manager.engine.database(database)
    instances = manager.instances_of(db, schema, table) if db.is_cdc_enabled else []
    if not instances:
        return
    with manager.cursor(txn) as cursor:
        if ddl_text.lstrip().upper().startswith("DROP"):
            for instance in instances:
                drop_instance(manager, cursor, db, instance)
            return
        source = db.find_table(schema, table)
        lsn = lsn_bytes(manager.next_lsn())
        for instance in instances:
            retyped = _propagate_types(cursor, db, instance, source) if source is not None else False
            _record_history(cursor, db, instance, ddl_text, lsn, retyped)


def _propagate_types(cursor: Any, db: Database, instance: CaptureInstance, source: Table) -> bool:
    """Alter the change table where a captured column's type changed in the source; True when any did."""
    captured_columns = db.find_table(CDC_SCHEMA, "captured_columns")
    assert captured_columns is not None
    changed = False
    for column in instance.columns:
        current = source.column(column.name)
        if current is None or _same_type(current.type, column.type):
            continue
        try:
            retype_captured_column(cursor, instance, column, current.type)
        except duckdb.Error as exc:
            raise SqlServerError(
                22976, f"Could not alter column '{column.name}' of change table '{instance.change_table.name}' in "
                f"response to a data type change in the corresponding column of the source table "
                f"'{source.schema}.{source.name}'. ({exc})"
            ) from exc  # fmt: skip
        cursor.execute(
            f"UPDATE {captured_columns.duck_name} SET column_type = ? WHERE object_id = ? AND column_name = ?",
            [current.type.name, instance.object_id, column.name],
        )
        changed = True
    return changed


def _same_type(a: Any, b: Any) -> bool:
    return (a.name, a.length, a.precision, a.scale) == (b.name, b.length, b.precision, b.scale)


def _record_history(cursor: Any, db: Database, instance: CaptureInstance, ddl_text: str, lsn: bytes,
                    required_column_update: bool) -> None:  # fmt: skip
    history = db.find_table(CDC_SCHEMA, "ddl_history")
    assert history is not None
    cursor.execute(
        f"INSERT INTO {history.duck_name} VALUES (?, ?, ?, ?, ?, ?)",
        [instance.source_object_id, instance.object_id, required_column_update, ddl_text, lsn,
         datetime_value(dt.datetime.now())],
    )  # fmt: skip
