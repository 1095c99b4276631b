"""Fast seeding: create a table from Arrow and bulk-load it through the DML path.

Rows go through ``dml.write_rows`` (checks, identity, CDC ``on_change``) as one
Arrow table, which DuckDB ingests without per-row Python: a million rows load
in seconds, and CDC captures them when the table is tracked.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..engine_api import SqlServerError
from . import types as T
from .catalog import Column, KeyConstraint
from .ddl import _key_name, create_table
from .dml import write_rows


def seed_table(
    engine: Any,
    database: str,
    schema: str,
    table: str,
    data: pa.Table,
    *,
    columns: dict[str, str] | None = None,
    primary_key: list[str] | None = None,
    create: bool = True,
) -> int:
    """Create ``database.schema.table`` (unless ``create`` is False) and load ``data``; returns rows."""
    session = engine.open_session("sa", database)
    try:
        db = engine.database(database)
        if schema.lower() not in db.schemas:
            engine.create_schema(db, schema)
        if create:
            types = {
                name: T.parse_type(columns[name])
                if columns and name in columns
                else T.infer_from_arrow(data.schema.field(name).type)
                for name in data.column_names
            }
            pk = primary_key or []
            cols = [Column(n, T.SqlType(t.name, t.length, t.precision, t.scale, n not in pk)) for n, t in types.items()]
            keys = [KeyConstraint(_key_name("PK", table), pk, True)] if pk else []
            target = create_table(session, db, db.schema_name(schema), table, cols, keys)
        else:
            target = db.find_table(schema, table)
            if target is None:
                raise SqlServerError(208, f"Invalid object name '{database}.{schema}.{table}'.")
        given = [target.require_column(n) for n in data.column_names]
        stage = pa.table(
            [_storage(data.column(c.name if c.name in data.column_names else c.name), c) for c in given],
            names=[c.name for c in given],
        )
        result = write_rows(session, target, given, stage)
        return data.num_rows if result.rowcount is None else result.rowcount
    finally:
        session.close()


def _storage(array: pa.ChunkedArray, col: Column) -> pa.ChunkedArray:
    """Arrow data -> the column's storage form, rounded to the column's fractional-second scale.

    datetime2(7)/datetimeoffset become their canonical 7-digit text (a zoned timestamp keeps
    its zone's offset); uniqueidentifier is upper-cased text; everything else is an Arrow cast.
    """
    if col.type.name in ("datetime2", "datetimeoffset", "time") and (
        pa.types.is_timestamp(array.type) or pa.types.is_time(array.type)
    ):
        array = T.round_fraction(array, col.type.scale)
    if T.is_text_stored(col.type) and pa.types.is_timestamp(array.type):
        return T.timestamp_text(array, offset=col.type.name == "datetimeoffset")
    target = T.storage_arrow_type(col.type)
    if pa.types.is_timestamp(array.type) and array.type.tz is not None and target.tz is None:
        array = pc.cast(array, pa.timestamp(array.type.unit))  # zoned into datetime2: its UTC time
    return array if array.type == target else pc.cast(array, target)
