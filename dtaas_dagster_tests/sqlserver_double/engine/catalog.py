"""The engine's own catalog: SQL Server metadata DuckDB cannot keep.

Databases, schemas, tables and columns with their exact SqlType, identity,
defaults and keys live here (Python objects, guarded by the engine lock). Each
SQL Server database is a DuckDB database attached as ``db_<name>``; tables are
created there without DuckDB constraints, because the engine checks keys and
NOT NULL itself before it writes (a DuckDB constraint error would abort the
whole transaction, which SQL Server does not do).

DDL changes this catalog immediately, not transactionally (a known difference:
rolling back a CREATE TABLE leaves the table's metadata).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..engine_api import SqlServerError, SqlType
from .dialect import quote_duck

_object_ids = itertools.count(245575913, 16)


def next_object_id() -> int:
    """A fresh object_id, unique within the process like SQL Server's within a database."""
    return next(_object_ids)


@dataclass
class Column:
    name: str
    type: SqlType
    identity: tuple[int, int] | None = None
    default_sql: str | None = None  # T-SQL text of the DEFAULT expression
    default_name: str | None = None
    default_object_id: int | None = None  # assigned when a catalog view first lists the DEFAULT


@dataclass
class KeyConstraint:
    name: str
    columns: list[str]
    primary: bool
    object_id: int = field(default_factory=lambda: next(_object_ids))


@dataclass
class Table:
    database: "Database"
    schema: str
    name: str
    columns: list[Column]
    keys: list[KeyConstraint] = field(default_factory=list)
    object_id: int = field(default_factory=lambda: next(_object_ids))
    identity_last: int | None = None
    is_tracked_by_cdc: bool = False

    @property
    def duck_name(self) -> str:
        """Fully quoted DuckDB name: "db_sales"."dbo"."orders"."""
        return ".".join(quote_duck(part) for part in (self.database.duck_name, self.schema, self.name))

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    def require_column(self, name: str) -> Column:
        col = self.column(name)
        if col is None:
            raise SqlServerError(207, f"Invalid column name '{name}'.")
        return col

    @property
    def primary_key(self) -> KeyConstraint | None:
        return next((k for k in self.keys if k.primary), None)

    @property
    def identity_column(self) -> Column | None:
        return next((c for c in self.columns if c.identity), None)


@dataclass
class Database:
    name: str
    database_id: int
    schemas: dict[str, tuple[str, int]] = field(default_factory=dict)  # lower -> (name, schema_id)
    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    allow_snapshot_isolation: bool = False
    read_committed_snapshot: bool = False
    is_cdc_enabled: bool = False

    @property
    def duck_name(self) -> str:
        return "db_" + self.name.lower()

    def schema_name(self, schema: str) -> str:
        found = self.schemas.get(schema.lower())
        if found is None:
            raise SqlServerError(
                2760,
                f'The specified schema name "{schema}" either does not exist or you do not have permission to use it.',
            )
        return found[0]

    def find_table(self, schema: str, name: str) -> Table | None:
        return self.tables.get((schema.lower(), name.lower()))

    def object_by_id(self, object_id: int) -> Table | None:
        return next((t for t in self.tables.values() if t.object_id == object_id), None)


DEFAULT_SCHEMAS = [("dbo", 1), ("guest", 2), ("INFORMATION_SCHEMA", 3), ("sys", 4)]
