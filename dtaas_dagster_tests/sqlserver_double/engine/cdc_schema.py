"""The ``cdc`` schema of a CDC-enabled database: system tables and change tables.

They are ordinary tables of the engine (DuckDB storage plus the engine's catalog
entries), so ``SELECT * FROM cdc.change_tables`` or ``cdc.dbo_orders_CT`` work
through the normal T-SQL path. They are created through the caller's DuckDB
cursor, inside its transaction, so a transaction that enables CDC can use the
change table at once. State that must be snapshot-consistent (which LSNs
exist, each capture instance's low water mark ``start_lsn``) lives only in
these tables, never only in Python memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engine_api import SqlType
from . import types as T
from .catalog import Column, Database, Table

CDC_SCHEMA = "cdc"
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

    def is_source(self, schema: str, table: str) -> bool:
        return self.source_schema.lower() == schema.lower() and self.source_table.lower() == table.lower()


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_cdc_schema(cursor: Any, db: Database) -> None:
    """The ``cdc`` schema and its system tables (idempotent)."""
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(db.duck_name)}.{CDC_SCHEMA}")
    db.schemas.setdefault(CDC_SCHEMA, (CDC_SCHEMA, CDC_SCHEMA_ID))
    for name, columns in SYSTEM_TABLES.items():
        if db.find_table(CDC_SCHEMA, name) is None:
            create_table(cursor, db, CDC_SCHEMA, name, [(c, T.parse_type(t)) for c, t in columns])


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
