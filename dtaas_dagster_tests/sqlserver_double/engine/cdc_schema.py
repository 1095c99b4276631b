"""The ``cdc`` schema of a CDC-enabled database: system tables and change tables.

They are ordinary tables of the engine (DuckDB storage plus the engine's catalog
entries), so ``SELECT * FROM cdc.change_tables`` or ``cdc.dbo_orders_CT`` work
through the normal T-SQL path. They are created through the caller's DuckDB
cursor, inside its transaction, so a transaction that enables CDC can use the
change table at once. State that must be snapshot-consistent (which LSNs
exist, each capture instance's low water mark ``start_lsn``) lives only in
these tables, never only in Python memory.

The double's stand-in for the transaction log lives next to them in the
DuckDB-only schema ``__cdc_log`` (not in the engine's catalog, so T-SQL cannot
see it): one table per capture instance with the change table's columns, and
one ``lsn_time_mapping`` with the commit's wall-clock time. Committing
transactions write there when capture lags (see ``cdc_log``); the capture step
moves rows from there into the change tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..engine_api import SqlType
from . import types as T
from .catalog import Column, Database, Table

CDC_SCHEMA = "cdc"
LOG_SCHEMA = "__cdc_log"  # DuckDB only: committed changes the capture step has not moved yet
CDC_SCHEMA_ID = 5  # SQL Server gives the cdc schema id 5 in a fresh database, too

SYSTEM_TABLES: dict[str, list[tuple[str, str]]] = {
    "change_tables": [
        ("object_id", "int"), ("version", "int"), ("source_object_id", "int"), ("capture_instance", "sysname"),
        ("start_lsn", "binary(10)"), ("end_lsn", "binary(10)"), ("supports_net_changes", "bit"),
        ("has_drop_pending", "bit"), ("role_name", "sysname"), ("index_name", "sysname"),
        ("filegroup_name", "sysname"), ("create_date", "datetime"), ("partition_switch", "bit"),
    ],
    "captured_columns": [
        ("object_id", "int"), ("column_name", "sysname"), ("column_id", "int"), ("column_type", "sysname"),
        ("column_ordinal", "int"), ("is_computed", "bit"),
    ],
    "lsn_time_mapping": [
        ("start_lsn", "binary(10)"), ("tran_begin_time", "datetime"), ("tran_end_time", "datetime"),
        ("tran_id", "varbinary(10)"), ("tran_begin_lsn", "binary(10)"),
    ],
    "ddl_history": [
        ("source_object_id", "int"), ("object_id", "int"), ("required_column_update", "bit"),
        ("ddl_command", "nvarchar(max)"), ("ddl_lsn", "binary(10)"), ("ddl_time", "datetime"),
    ],
    "index_columns": [
        ("object_id", "int"), ("column_name", "sysname"), ("index_ordinal", "tinyint"), ("column_id", "int"),
    ],
}  # fmt: skip

CT_LEADING = [("__$start_lsn", "binary(10)"), ("__$end_lsn", "binary(10)"), ("__$seqval", "binary(10)"),
              ("__$operation", "int"), ("__$update_mask", "varbinary(128)")]  # fmt: skip
CT_TRAILING = [("__$command_id", "int")]


@dataclass
class CapturedColumn:
    name: str
    type: SqlType
    column_id: int  # in the source table, 1-based
    ordinal: int  # in the change table's captured columns, 1-based (bit position of the update mask)


@dataclass
class CaptureInstance:
    """One capture instance: its source table, captured columns and change table."""

    name: str
    source_schema: str
    source_table: str
    source_object_id: int
    change_table: Table
    columns: list[CapturedColumn]
    index_columns: list[str]
    supports_net_changes: bool
    role_name: str | None
    index_name: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def object_id(self) -> int:
        return self.change_table.object_id

    @property
    def log_duck_name(self) -> str:
        """The instance's pending-change table in the double's log (same columns as the change table)."""
        return f"{quote(self.change_table.database.duck_name)}.{quote(LOG_SCHEMA)}.{quote(self.change_table.name)}"

    def is_source(self, schema: str, table: str) -> bool:
        return self.source_schema.lower() == schema.lower() and self.source_table.lower() == table.lower()


def datetime_value(value: dt.datetime) -> dt.datetime:
    """``value`` rounded to SQL Server datetime's 1/300 s ticks, so it survives a round trip exactly."""
    ticks = round(value.microsecond * 300 / 1_000_000)
    base = value.replace(microsecond=0)
    return base + dt.timedelta(milliseconds=round(ticks * 1000 / 300))


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_cdc_schema(cursor: Any, db: Database) -> None:
    """The ``cdc`` schema, its system tables and the double's log schema (idempotent)."""
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(db.duck_name)}.{CDC_SCHEMA}")
    db.schemas.setdefault(CDC_SCHEMA, (CDC_SCHEMA, CDC_SCHEMA_ID))
    for name, columns in SYSTEM_TABLES.items():
        if db.find_table(CDC_SCHEMA, name) is None:
            create_table(cursor, db, CDC_SCHEMA, name, [(c, T.parse_type(t)) for c, t in columns])
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(db.duck_name)}.{quote(LOG_SCHEMA)}")
    mapping = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
    assert mapping is not None
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {log_mapping_name(db)} AS "
        f"SELECT *, CAST(NULL AS DOUBLE) AS commit_epoch FROM {mapping.duck_name} LIMIT 0"
    )


def log_mapping_name(db: Database) -> str:
    """The log's ``lsn_time_mapping``: one row per committed, not yet captured transaction."""
    return f"{quote(db.duck_name)}.{quote(LOG_SCHEMA)}.lsn_time_mapping"


def drop_log_schema(cursor: Any, db: Database) -> None:
    cursor.execute(f"DROP SCHEMA IF EXISTS {quote(db.duck_name)}.{quote(LOG_SCHEMA)} CASCADE")


def create_log_table(cursor: Any, instance: CaptureInstance) -> None:
    """The instance's table in the double's log, shaped like its change table."""
    cursor.execute(f"CREATE TABLE {instance.log_duck_name} AS SELECT * FROM {instance.change_table.duck_name} LIMIT 0")


def drop_log_table(cursor: Any, instance: CaptureInstance) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {instance.log_duck_name}")


def retype_captured_column(cursor: Any, instance: CaptureInstance, column: CapturedColumn, new: SqlType) -> None:
    """Give a captured column a new type in the change table and the log, as the capture process does.

    SQL Server propagates a source column's data type change to the change table
    ("About Change Data Capture", Handling Changes to Source Tables); narrowing
    fails there when stored values do not fit (error 22976), and so it does here.
    """
    storage = T.storage_type(new)
    for target in (instance.change_table.duck_name, instance.log_duck_name):
        cursor.execute(f"ALTER TABLE {target} ALTER COLUMN {quote(column.name)} TYPE {storage}")
    column.type = SqlType(new.name, new.length, new.precision, new.scale, True)
    ct_column = instance.change_table.column(column.name)
    if ct_column is not None:
        ct_column.type = column.type


def create_table(cursor: Any, db: Database, schema: str, name: str, columns: list[tuple[str, SqlType]]) -> Table:
    """A table in DuckDB (through ``cursor``) and in the engine's catalog."""
    table = Table(db, schema, name, [Column(col, sql_type) for col, sql_type in columns])
    defs = ", ".join(f"{quote(col)} {T.storage_type(sql_type)}" for col, sql_type in columns)
    cursor.execute(f"CREATE TABLE {table.duck_name} ({defs})")
    db.tables[(schema.lower(), name.lower())] = table
    return table


def drop_table(cursor: Any, db: Database, table: Table) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {table.duck_name}")
    db.tables.pop((table.schema.lower(), table.name.lower()), None)


def change_table_columns(captured: list[CapturedColumn]) -> list[tuple[str, SqlType]]:
    """Columns of ``cdc.<capture_instance>_CT`` in SQL Server's order."""
    leading = [(name, T.parse_type(text)) for name, text in CT_LEADING]
    trailing = [(name, T.parse_type(text)) for name, text in CT_TRAILING]
    return leading + [(c.name, c.type) for c in captured] + trailing
