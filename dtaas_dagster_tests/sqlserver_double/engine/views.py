"""Catalog views (INFORMATION_SCHEMA.*, sys.*) built from the engine's catalog.

Each referenced view is materialised as an Arrow table when a query names it
and registered on the session's cursor, so joins and WHERE clauses on catalog
views run as ordinary DuckDB queries and always reflect the current catalog.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..engine_api import SqlServerError, SqlType
from . import types as T
from .catalog import Column, Database, Table
from .cdc_views import CDC_VIEWS
from .views_sys import BUILDERS, default_definition, default_object_id, row_counts
from .views_system import BUILDERS as SYSTEM_BUILDERS

_NV = SqlType("nvarchar", 128)
_INT = SqlType("int")


def is_catalog_schema(schema: str) -> bool:
    return schema.lower() in ("sys", "information_schema")


def _view(
    db: Database, schema: str, name: str, spec: list[tuple[str, SqlType]], rows: list[tuple]
) -> tuple[Table, pa.Table]:
    cols = [Column(n, t) for n, t in spec]
    arrays = [
        pa.array([r[i] for r in rows], T.arrow_type(t) if t.name != "uniqueidentifier" else pa.string())
        for i, (_, t) in enumerate(spec)
    ]
    return Table(db, schema, name, cols), pa.table(arrays, names=[n for n, _ in spec])


def catalog_view(session: Any, db: Database, schema: str, name: str) -> tuple[Table, pa.Table]:
    """The catalog view ``schema.name`` of ``db`` as (typed pseudo-table, Arrow rows)."""
    key = f"{schema}.{name}".lower()
    builder = _BUILDERS.get(key)
    if builder is None:
        raise SqlServerError(208, f"Invalid object name '{schema}.{name}'.")
    spec, rows = builder(session, db)
    return _view(db, schema, name, spec, rows)


def _tables(db: Database) -> list[Table]:
    return sorted(db.tables.values(), key=lambda t: (t.schema.lower(), t.name.lower()))


def _info_tables(session: Any, db: Database) -> tuple[list, list]:
    spec = [("TABLE_CATALOG", _NV), ("TABLE_SCHEMA", _NV), ("TABLE_NAME", _NV), ("TABLE_TYPE", SqlType("varchar", 10))]
    return spec, [(db.name, t.schema, t.name, "BASE TABLE") for t in _tables(db)]


def _info_columns(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("TABLE_CATALOG", _NV),
        ("TABLE_SCHEMA", _NV),
        ("TABLE_NAME", _NV),
        ("COLUMN_NAME", _NV),
        ("ORDINAL_POSITION", _INT),
        ("COLUMN_DEFAULT", SqlType("nvarchar", 4000)),
        ("IS_NULLABLE", SqlType("varchar", 3)),
        ("DATA_TYPE", _NV),
        ("CHARACTER_MAXIMUM_LENGTH", _INT),
        ("CHARACTER_OCTET_LENGTH", _INT),
        ("NUMERIC_PRECISION", SqlType("tinyint")),
        ("NUMERIC_PRECISION_RADIX", SqlType("smallint")),
        ("NUMERIC_SCALE", _INT),
        ("DATETIME_PRECISION", SqlType("smallint")),
        ("CHARACTER_SET_NAME", _NV),
        ("COLLATION_NAME", _NV),
    ]
    rows = []
    for t in _tables(db):
        for i, c in enumerate(t.columns, 1):
            ty = c.type
            is_str = ty.name in T.STRING_TYPES or ty.name in T.BINARY_TYPES
            num = _numeric_precision(ty)
            rows.append(
                (
                    db.name,
                    t.schema,
                    t.name,
                    c.name,
                    i,
                    default_definition(c.default_sql) if c.default_sql else None,
                    "YES" if ty.nullable else "NO",
                    ty.name,
                    ty.length if is_str else None,
                    T.max_length_bytes(ty) if is_str else None,
                    num[0],
                    num[1],
                    num[2],
                    ty.scale
                    if ty.name in ("time", "datetime2", "datetimeoffset")
                    else (3 if ty.name == "datetime" else 0 if ty.name in ("date", "smalldatetime") else None),
                    ("UNICODE" if ty.name.startswith("n") else "iso_1") if ty.name in T.STRING_TYPES else None,
                    session.engine.collation if ty.name in T.STRING_TYPES else None,
                )
            )
    return spec, rows


def _numeric_precision(ty: SqlType) -> tuple[int | None, int | None, int | None]:
    fixed = {
        "tinyint": 3,
        "smallint": 5,
        "int": 10,
        "bigint": 19,
        "money": 19,
        "smallmoney": 10,
        "real": 24,
        "float": 53,
    }
    if ty.name in fixed:
        radix = 2 if ty.name in ("real", "float") else 10
        return fixed[ty.name], radix, (None if radix == 2 else 4 if "money" in ty.name else 0)
    if ty.name in ("decimal", "numeric"):
        return ty.precision, 10, ty.scale
    return None, None, None


def precision_and_scale(ty: SqlType) -> tuple[int, int]:
    """sys.columns/sys.types precision and scale: digits for numbers, characters of the text form for
    date/time types (datetime2(7) is 27, 7), 0 for strings and binaries."""
    if ty.name in ("time", "datetime2", "datetimeoffset"):
        scale = 7 if ty.scale is None else ty.scale
        base = {"time": 8, "datetime2": 19, "datetimeoffset": 26}[ty.name]
        return base + (scale + 1 if scale else 0), scale
    fixed = {"bit": (1, 0), "date": (10, 0), "datetime": (23, 3), "smalldatetime": (16, 0)}
    if ty.name in fixed:
        return fixed[ty.name]
    precision, _radix, scale = _numeric_precision(ty)
    return precision or 0, scale or 0


def _info_constraints(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("CONSTRAINT_CATALOG", _NV),
        ("CONSTRAINT_SCHEMA", _NV),
        ("CONSTRAINT_NAME", _NV),
        ("TABLE_CATALOG", _NV),
        ("TABLE_SCHEMA", _NV),
        ("TABLE_NAME", _NV),
        ("CONSTRAINT_TYPE", SqlType("varchar", 11)),
        ("IS_DEFERRABLE", SqlType("varchar", 2)),
        ("INITIALLY_DEFERRED", SqlType("varchar", 2)),
    ]
    rows = [
        (db.name, t.schema, k.name, db.name, t.schema, t.name, "PRIMARY KEY" if k.primary else "UNIQUE", "NO", "NO")
        for t in _tables(db)
        for k in t.keys
    ]
    return spec, rows


def _info_key_columns(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("CONSTRAINT_CATALOG", _NV),
        ("CONSTRAINT_SCHEMA", _NV),
        ("CONSTRAINT_NAME", _NV),
        ("TABLE_CATALOG", _NV),
        ("TABLE_SCHEMA", _NV),
        ("TABLE_NAME", _NV),
        ("COLUMN_NAME", _NV),
        ("ORDINAL_POSITION", _INT),
    ]
    rows = [
        (db.name, t.schema, k.name, db.name, t.schema, t.name, t.require_column(c).name, i)
        for t in _tables(db)
        for k in t.keys
        for i, c in enumerate(k.columns, 1)
    ]
    return spec, rows


def _sys_databases(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("name", _NV),
        ("database_id", _INT),
        ("is_cdc_enabled", SqlType("bit")),
        ("snapshot_isolation_state", SqlType("tinyint")),
        ("snapshot_isolation_state_desc", SqlType("nvarchar", 60)),
        ("is_read_committed_snapshot_on", SqlType("bit")),
        ("collation_name", _NV),
        ("state_desc", SqlType("nvarchar", 60)),
        ("state", SqlType("tinyint")),
    ]
    rows = [
        (
            d.name,
            d.database_id,
            d.is_cdc_enabled,
            1 if d.allow_snapshot_isolation else 0,
            "ON" if d.allow_snapshot_isolation else "OFF",
            d.read_committed_snapshot,
            session.engine.collation,
            "ONLINE",
            0,
        )
        for d in sorted(session.engine.databases.values(), key=lambda d: d.database_id)
    ]
    return spec, rows


def _sys_schemas(session: Any, db: Database) -> tuple[list, list]:
    return [("name", _NV), ("schema_id", _INT), ("principal_id", _INT)], [(n, i, 1) for n, i in db.schemas.values()]


def _info_referential(session: Any, db: Database) -> tuple[list, list]:
    """No FOREIGN KEY support in the double: SQL Server's empty view, so reflection queries run."""
    spec = [
        ("CONSTRAINT_CATALOG", _NV),
        ("CONSTRAINT_SCHEMA", _NV),
        ("CONSTRAINT_NAME", _NV),
        ("UNIQUE_CONSTRAINT_CATALOG", _NV),
        ("UNIQUE_CONSTRAINT_SCHEMA", _NV),
        ("UNIQUE_CONSTRAINT_NAME", _NV),
        ("MATCH_OPTION", SqlType("varchar", 7)),
        ("UPDATE_RULE", SqlType("varchar", 11)),
        ("DELETE_RULE", SqlType("varchar", 11)),
    ]
    return spec, []


_SYSTEM_TYPE_IDS = {
    "image": 34,
    "text": 35,
    "uniqueidentifier": 36,
    "date": 40,
    "time": 41,
    "datetime2": 42,
    "datetimeoffset": 43,
    "tinyint": 48,
    "smallint": 52,
    "int": 56,
    "smalldatetime": 58,
    "real": 59,
    "money": 60,
    "datetime": 61,
    "float": 62,
    "ntext": 99,
    "bit": 104,
    "decimal": 106,
    "numeric": 108,
    "smallmoney": 122,
    "bigint": 127,
    "varbinary": 165,
    "varchar": 167,
    "binary": 173,
    "char": 175,
    "nvarchar": 231,
    "nchar": 239,
}


def _sys_columns(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("object_id", _INT),
        ("name", _NV),
        ("column_id", _INT),
        ("system_type_id", SqlType("tinyint")),
        ("user_type_id", _INT),
        ("max_length", SqlType("smallint")),
        ("precision", SqlType("tinyint")),
        ("scale", SqlType("tinyint")),
        ("is_nullable", SqlType("bit")),
        ("is_identity", SqlType("bit")),
        ("collation_name", _NV),
        ("default_object_id", _INT),
        ("is_computed", SqlType("bit")),
        ("is_rowguidcol", SqlType("bit")),
        ("is_sparse", SqlType("bit")),
        ("rule_object_id", _INT),
    ]
    rows = []
    for t in _tables(db):
        for i, c in enumerate(t.columns, 1):
            ty = c.type
            prec, scale = precision_and_scale(ty)
            rows.append(
                (
                    t.object_id,
                    c.name,
                    i,
                    _SYSTEM_TYPE_IDS.get(ty.name, 0),
                    _SYSTEM_TYPE_IDS.get(ty.name, 0),
                    T.max_length_bytes(ty),
                    prec,
                    scale,
                    ty.nullable,
                    c.identity is not None,
                    session.engine.collation if ty.name in T.STRING_TYPES else None,
                    default_object_id(t, i - 1) or 0,
                    False,
                    False,
                    False,
                    0,
                )
            )
    return spec, rows


def _sys_types(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("name", _NV),
        ("system_type_id", SqlType("tinyint")),
        ("user_type_id", _INT),
        ("schema_id", _INT),
        ("max_length", SqlType("smallint")),
        ("precision", SqlType("tinyint")),
        ("scale", SqlType("tinyint")),
        ("collation_name", _NV),
        ("is_nullable", SqlType("bit")),
        ("is_user_defined", SqlType("bit")),
    ]
    rows = []
    for n, i in _SYSTEM_TYPE_IDS.items():
        ty = T.parse_type(n)
        collation = session.engine.collation if ty.name in T.STRING_TYPES else None
        length = {
            "varchar": 8000,
            "char": 8000,
            "nvarchar": 8000,
            "nchar": 8000,
            "varbinary": 8000,
            "binary": 8000,
            "text": 16,
            "ntext": 16,
            "image": 16,
        }.get(n, T.max_length_bytes(ty))
        rows.append((n, i, i, 4, length, *precision_and_scale(ty), collation, True, False))
    return spec, rows


def _partition_stats(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("object_id", _INT),
        ("index_id", _INT),
        ("partition_number", _INT),
        ("row_count", SqlType("bigint")),
        ("rows", SqlType("bigint")),
        ("in_row_data_page_count", SqlType("bigint")),
    ]
    rows = []
    counts = row_counts(session, db)
    for t in _tables(db):
        count = counts[t.object_id]
        rows.append((t.object_id, 1 if t.primary_key else 0, 1, count, count, max(1, count // 100)))
    return spec, rows


_BUILDERS: dict[str, Any] = {
    "information_schema.tables": _info_tables,
    "information_schema.columns": _info_columns,
    "information_schema.table_constraints": _info_constraints,
    "information_schema.key_column_usage": _info_key_columns,
    "information_schema.referential_constraints": _info_referential,
    "sys.databases": _sys_databases,
    "sys.schemas": _sys_schemas,
    "sys.columns": _sys_columns,
    "sys.types": _sys_types,
    "sys.dm_db_partition_stats": _partition_stats,
    **BUILDERS,
    **CDC_VIEWS,
    **SYSTEM_BUILDERS,
}


def catalog_view_names() -> list[tuple[str, str]]:
    """(schema, view) of every catalog view the double implements, spelled as SQL Server spells them."""
    names = []
    for key in _BUILDERS:
        schema, name = key.split(".")
        names.append(("INFORMATION_SCHEMA", name.upper()) if schema == "information_schema" else ("sys", name))
    return names
