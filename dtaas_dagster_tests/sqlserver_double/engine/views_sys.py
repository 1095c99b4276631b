"""sys.* catalog views about objects, keys and indexes (see ``views.py`` for the mechanism).

What the double models: every table is a heap or has one clustered index, the
index of its PRIMARY KEY (index_id 1); each UNIQUE constraint is a
nonclustered index (index_id 2, 3, ...). Tables in schema ``cdc`` are marked
``is_ms_shipped`` like SQL Server marks its change tables. There are no
computed columns or extended properties, so those views exist and are empty:
clients such as SQLAlchemy join them and must get SQL Server's empty answer.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from ..engine_api import SqlType
from .catalog import Database, KeyConstraint, Table, next_object_id

_NV = SqlType("nvarchar", 128)
_INT = SqlType("int")
_BIT = SqlType("bit")
_TINY = SqlType("tinyint")
_DESC = SqlType("nvarchar", 60)
_DATETIME = SqlType("datetime")


def tables(db: Database) -> list[Table]:
    return sorted(db.tables.values(), key=lambda t: (t.schema.lower(), t.name.lower()))


def row_counts(session: Any, db: Database) -> dict[int, int]:
    """Rows of every table of ``db`` by object_id, in ONE DuckDB statement.

    One ``count(*)`` statement per table made every query on a row-count view
    cost O(tables) statements: 0.4 s per query at 500 tables, which a client
    that asks for one table's estimate per table pays 500 times.
    """
    listed = tables(db)
    if not listed:
        return {}
    union = " UNION ALL ".join(f"SELECT {t.object_id}, count(*) FROM {t.duck_name}" for t in listed)
    return {int(object_id): int(count) for object_id, count in session.cursor.execute(union).fetchall()}


def schema_id(db: Database, table: Table) -> int:
    return db.schemas[table.schema.lower()][1]


def is_ms_shipped(table: Table) -> bool:
    return table.schema.lower() == "cdc"


def indexes_of(table: Table) -> list[tuple[int, KeyConstraint | None]]:
    """(index_id, key) pairs: 0 for a heap, 1 for the clustered PK, 2.. for UNIQUE keys."""
    out: list[tuple[int, KeyConstraint | None]] = [(1, table.primary_key) if table.primary_key else (0, None)]
    unique = [k for k in table.keys if not k.primary]
    out += [(i, k) for i, k in enumerate(unique, 2)]
    return out


def default_definition(default_sql: str) -> str:
    """The DEFAULT as SQL Server stores it: ``((0))`` for a number, ``('x')`` for a string,
    ``(getdate())`` for a function (names in lower case), each wrapped in parentheses."""
    from .translate import parse

    node = parse(f"SELECT {default_sql}").expressions[0]
    while isinstance(node, exp.Paren):
        node = node.this
    if (
        isinstance(node, exp.Literal)
        and not node.is_string
        or isinstance(node, exp.Neg)
        and isinstance(node.this, exp.Literal)
    ):
        return f"(({node.sql('tsql')}))"
    if isinstance(node, exp.CurrentTimestamp):
        return "(getdate())"
    if isinstance(node, exp.Uuid):
        return "(newid())"
    if isinstance(node, exp.Anonymous) and not node.expressions:
        return f"({node.name.lower()}())"
    return f"({node.sql('tsql')})"


def default_object_id(table: Table, column_index: int) -> int | None:
    column = table.columns[column_index]
    if column.default_sql is None:
        return None
    if column.default_object_id is None:
        column.default_object_id = next_object_id()
    return column.default_object_id


# sys.objects' columns; sys.synonyms, sys.system_views, ... add their own to these
OBJECT_COLUMNS = [
    ("name", _NV),
    ("object_id", _INT),
    ("principal_id", _INT),
    ("schema_id", _INT),
    ("parent_object_id", _INT),
    ("type", SqlType("char", 2)),
    ("type_desc", _DESC),
    ("create_date", _DATETIME),
    ("modify_date", _DATETIME),
    ("is_ms_shipped", _BIT),
    ("is_published", _BIT),
    ("is_schema_published", _BIT),
]


def sys_objects(session: Any, db: Database) -> tuple[list, list]:
    spec = OBJECT_COLUMNS
    created = None  # the double keeps no creation times
    rows: list[tuple] = []
    for t in tables(db):
        sid = schema_id(db, t)
        rows.append(
            (t.name, t.object_id, None, sid, 0, "U ", "USER_TABLE", created, created, is_ms_shipped(t), False, False)
        )
        for k in t.keys:
            kind = ("PK", "PRIMARY_KEY_CONSTRAINT") if k.primary else ("UQ", "UNIQUE_CONSTRAINT")
            rows.append(
                (
                    k.name,
                    k.object_id,
                    None,
                    sid,
                    t.object_id,
                    kind[0],
                    kind[1],
                    created,
                    created,
                    is_ms_shipped(t),
                    False,
                    False,
                )
            )
        for i, c in enumerate(t.columns):
            oid = default_object_id(t, i)
            if oid is not None:
                rows.append(
                    (
                        c.default_name or f"DF_{t.name}_{c.name}",
                        oid,
                        None,
                        sid,
                        t.object_id,
                        "D ",
                        "DEFAULT_CONSTRAINT",
                        created,
                        created,
                        is_ms_shipped(t),
                        False,
                        False,
                    )
                )
    return spec, rows


def sys_tables(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("name", _NV),
        ("object_id", _INT),
        ("principal_id", _INT),
        ("schema_id", _INT),
        ("parent_object_id", _INT),
        ("type", SqlType("char", 2)),
        ("type_desc", _DESC),
        ("is_ms_shipped", _BIT),
        ("is_tracked_by_cdc", _BIT),
        ("temporal_type", _TINY),
        ("is_memory_optimized", _BIT),
        ("is_external", _BIT),
        ("lob_data_space_id", _INT),
    ]
    rows = [
        (
            t.name,
            t.object_id,
            None,
            schema_id(db, t),
            0,
            "U ",
            "USER_TABLE",
            is_ms_shipped(t),
            t.is_tracked_by_cdc,
            0,
            False,
            False,
            0,
        )
        for t in tables(db)
    ]
    return spec, rows


def sys_indexes(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("object_id", _INT),
        ("name", _NV),
        ("index_id", _INT),
        ("type", _TINY),
        ("type_desc", _DESC),
        ("is_unique", _BIT),
        ("data_space_id", _INT),
        ("ignore_dup_key", _BIT),
        ("is_primary_key", _BIT),
        ("is_unique_constraint", _BIT),
        ("fill_factor", _TINY),
        ("is_padded", _BIT),
        ("is_disabled", _BIT),
        ("is_hypothetical", _BIT),
        ("allow_row_locks", _BIT),
        ("allow_page_locks", _BIT),
        ("has_filter", _BIT),
        ("filter_definition", SqlType("nvarchar", -1)),
    ]
    rows = []
    for t in tables(db):
        for index_id, key in indexes_of(t):
            if key is None:
                rows.append(
                    (
                        t.object_id,
                        None,
                        0,
                        0,
                        "HEAP",
                        False,
                        1,
                        False,
                        False,
                        False,
                        0,
                        False,
                        False,
                        False,
                        True,
                        True,
                        False,
                        None,
                    )
                )
                continue
            kind = (1, "CLUSTERED") if key.primary else (2, "NONCLUSTERED")
            rows.append(
                (
                    t.object_id,
                    key.name,
                    index_id,
                    kind[0],
                    kind[1],
                    True,
                    1,
                    False,
                    key.primary,
                    not key.primary,
                    0,
                    False,
                    False,
                    False,
                    True,
                    True,
                    False,
                    None,
                )
            )
    return spec, rows


def sys_index_columns(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("object_id", _INT),
        ("index_id", _INT),
        ("index_column_id", _INT),
        ("column_id", _INT),
        ("key_ordinal", _TINY),
        ("partition_ordinal", _TINY),
        ("is_descending_key", _BIT),
        ("is_included_column", _BIT),
    ]
    rows = []
    for t in tables(db):
        positions = {c.name.lower(): i for i, c in enumerate(t.columns, 1)}
        for index_id, key in indexes_of(t):
            for ordinal, name in enumerate(key.columns if key else [], 1):
                rows.append((t.object_id, index_id, ordinal, positions[name.lower()], ordinal, 0, False, False))
    return spec, rows


def sys_key_constraints(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("name", _NV),
        ("object_id", _INT),
        ("principal_id", _INT),
        ("schema_id", _INT),
        ("parent_object_id", _INT),
        ("type", SqlType("char", 2)),
        ("type_desc", _DESC),
        ("unique_index_id", _INT),
        ("is_system_named", _BIT),
        ("is_ms_shipped", _BIT),
    ]
    rows = []
    for t in tables(db):
        for index_id, key in indexes_of(t):
            if key is not None:
                kind = ("PK", "PRIMARY_KEY_CONSTRAINT") if key.primary else ("UQ", "UNIQUE_CONSTRAINT")
                rows.append(
                    (
                        key.name,
                        key.object_id,
                        None,
                        schema_id(db, t),
                        t.object_id,
                        kind[0],
                        kind[1],
                        index_id,
                        False,
                        is_ms_shipped(t),
                    )
                )
    return spec, rows


def sys_partitions(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("partition_id", SqlType("bigint")),
        ("object_id", _INT),
        ("index_id", _INT),
        ("partition_number", _INT),
        ("hobt_id", SqlType("bigint")),
        ("rows", SqlType("bigint")),
        ("data_compression", _TINY),
        ("data_compression_desc", _DESC),
    ]
    rows = []
    counts = row_counts(session, db)
    for t in tables(db):
        count = counts[t.object_id]
        for index_id, _ in indexes_of(t):
            pid = t.object_id * 1000 + index_id
            rows.append((pid, t.object_id, index_id, 1, pid, count, 0, "NONE"))
    return spec, rows


def sys_default_constraints(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("name", _NV),
        ("object_id", _INT),
        ("schema_id", _INT),
        ("parent_object_id", _INT),
        ("type", SqlType("char", 2)),
        ("type_desc", _DESC),
        ("parent_column_id", _INT),
        ("definition", SqlType("nvarchar", -1)),
        ("is_system_named", _BIT),
    ]
    rows = []
    for t in tables(db):
        for i, c in enumerate(t.columns):
            oid = default_object_id(t, i)
            if oid is not None:
                rows.append(
                    (
                        c.default_name or f"DF_{t.name}_{c.name}",
                        oid,
                        schema_id(db, t),
                        t.object_id,
                        "D ",
                        "DEFAULT_CONSTRAINT",
                        i + 1,
                        default_definition(c.default_sql),
                        c.default_name is None,
                    )
                )
    return spec, rows


def sys_identity_columns(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("object_id", _INT),
        ("name", _NV),
        ("column_id", _INT),
        ("is_identity", _BIT),
        ("seed_value", SqlType("bigint")),
        ("increment_value", SqlType("bigint")),
        ("last_value", SqlType("bigint")),
    ]
    rows = [
        (t.object_id, c.name, i, True, c.identity[0], c.identity[1], t.identity_last)
        for t in tables(db)
        for i, c in enumerate(t.columns, 1)
        if c.identity
    ]
    return spec, rows


def sys_computed_columns(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("object_id", _INT),
        ("name", _NV),
        ("column_id", _INT),
        ("definition", SqlType("nvarchar", -1)),
        ("is_persisted", _BIT),
    ]
    return spec, []


def sys_extended_properties(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("class", _TINY),
        ("class_desc", _DESC),
        ("major_id", _INT),
        ("minor_id", _INT),
        ("name", _NV),
        ("value", SqlType("nvarchar", 4000)),
    ]
    return spec, []


def sys_foreign_keys(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("name", _NV),
        ("object_id", _INT),
        ("schema_id", _INT),
        ("parent_object_id", _INT),
        ("referenced_object_id", _INT),
        ("key_index_id", _INT),
        ("is_disabled", _BIT),
        ("delete_referential_action_desc", _DESC),
        ("update_referential_action_desc", _DESC),
    ]
    return spec, []


def sys_foreign_key_columns(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("constraint_object_id", _INT),
        ("constraint_column_id", _INT),
        ("parent_object_id", _INT),
        ("parent_column_id", _INT),
        ("referenced_object_id", _INT),
        ("referenced_column_id", _INT),
    ]
    return spec, []


def sys_views(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("name", _NV),
        ("object_id", _INT),
        ("schema_id", _INT),
        ("type", SqlType("char", 2)),
        ("is_ms_shipped", _BIT),
    ]
    return spec, []


BUILDERS = {
    "sys.objects": sys_objects,
    "sys.all_objects": sys_objects,
    "sys.tables": sys_tables,
    "sys.indexes": sys_indexes,
    "sys.index_columns": sys_index_columns,
    "sys.key_constraints": sys_key_constraints,
    "sys.partitions": sys_partitions,
    "sys.default_constraints": sys_default_constraints,
    "sys.identity_columns": sys_identity_columns,
    "sys.computed_columns": sys_computed_columns,
    "sys.extended_properties": sys_extended_properties,
    "sys.foreign_keys": sys_foreign_keys,
    "sys.foreign_key_columns": sys_foreign_key_columns,
    "sys.views": sys_views,
}
