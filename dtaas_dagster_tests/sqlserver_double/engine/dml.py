"""INSERT / UPDATE / DELETE with SQL Server's checks done *before* DuckDB writes.

Every DML statement first materialises what it will write as an Arrow table
("staging"): for INSERT the converted new rows, for UPDATE the affected rows'
rowid, before image and converted new values, for DELETE the rowid and before
image. The engine then checks conversion (245), NOT NULL (515), truncation
(2628), identity (544) and primary/unique keys (2627) on that staging table,
case-insensitively like the default collation, and only then writes with one
set-based DuckDB statement. So a failing statement changes nothing and the
DuckDB transaction stays usable. The same staging tables are the before/after
images handed to the CDC manager.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from ..engine_api import Param, SqlServerError, StatementResult, not_supported
from . import types as T
from .catalog import Column, Table
from .conversion_errors import conversion_error
from .dialect import duck_sql, quote_duck
from .translate import Translator

STAGE = "__dml_stage"
FAST_SOURCE = "__dml_fast_source"


def _table(session: Any, tr: Translator, node: exp.Table) -> Table:
    db = session.engine.database(node.catalog or session.database)
    table = db.find_table(node.db or "dbo", node.name)
    if table is None:
        raise SqlServerError(208, f"Invalid object name '{node.sql('tsql')}'.")
    tr.scope[(node.alias or node.name).lower()] = table
    return table


def _full_name(table: Table) -> str:
    return f"{table.database.name}.{table.schema}.{table.name}"


def _rowcount(session: Any, n: int) -> StatementResult:
    session.rowcount = n
    return StatementResult(rowcount=None if session.nocount else n)


def to_image(table: Table, data: pa.Table) -> pa.Table:
    """Storage-form rows -> the contract's Arrow form, in catalog column order."""
    arrays = [T.to_contract(data.column(c.name), c.type) for c in table.columns]
    return pa.table(arrays, names=[c.name for c in table.columns])


def width_mismatch(values: int, columns: int) -> SqlServerError:
    """109 (more columns than values) or 110 (fewer columns than values), SQL Server's words."""
    more_or_fewer, number = ("more", 109) if columns > values else ("fewer", 110)
    return SqlServerError(
        number,
        f"There are {more_or_fewer} columns in the INSERT statement than values specified "
        "in the VALUES clause. The number of values in the VALUES clause must match the number "
        "of columns specified in the INSERT statement.",
    )


# -- INSERT -----------------------------------------------------------------------------
def insert(session: Any, node: exp.Insert, params: dict[str, Param], text: str) -> StatementResult:
    tr = Translator(session, params)
    target = node.this
    table_node = target.this if isinstance(target, exp.Schema) else target
    table = _table(session, tr, table_node)
    if isinstance(target, exp.Schema) and target.expressions:
        columns = [table.require_column(c.name) for c in target.expressions]
    else:
        columns = [c for c in table.columns if not c.identity]
    source = node.expression
    if isinstance(source, exp.Values):
        width = len(source.expressions[0].expressions)
        alias = exp.TableAlias(
            this=exp.to_identifier("src"), columns=[exp.to_identifier(f"c{i}") for i in range(width)]
        )
        source_sql = duck_sql(
            tr.expression_tree(exp.select("*").from_(exp.Values(expressions=source.expressions, alias=alias)))
        )
    elif isinstance(source, (exp.Select, exp.Union)):
        source_sql = duck_sql(tr.expression_tree(source))
        width = len(columns)
    else:
        raise not_supported(text[:200])
    if width != len(columns):
        raise width_mismatch(width, len(columns))
    for name, data in tr.registrations.items():
        session.cursor.register(name, data)
    stage = stage_rows(session, table, columns, source_sql, tr.bind)
    return write_rows(session, table, columns, stage)


def insert_fast(session: Any, insert: Any, params: dict[str, Param], text: str) -> StatementResult | None:
    """A literal/parameter INSERT ... VALUES scanned by ``fast_insert``; None to take the parsed path.

    A one-row INSERT first tries ``single_insert`` (one DuckDB statement per row).
    """
    from .fast_insert import source_table
    from .single_insert import try_insert

    names = insert.table
    db = session.engine.database(names[-3] if len(names) == 3 else session.database)
    table = db.find_table(names[-2] if len(names) >= 2 else "dbo", names[-1])
    if table is None:
        raise SqlServerError(208, f"Invalid object name '{'.'.join(names)}'.")
    if insert.columns is not None:
        columns = [table.require_column(c) for c in insert.columns]
    else:
        columns = [c for c in table.columns if not c.identity]
    if len(insert.rows) == 1 and len(insert.rows[0]) == len(columns):
        done = try_insert(session, insert, table, columns, params, text)
        if done is not None:
            return done
    source = source_table(insert, params)
    if source is None:
        return None
    if source.num_columns != len(columns):
        raise width_mismatch(source.num_columns, len(columns))
    session.cursor.register(FAST_SOURCE, source)
    try:
        stage = stage_rows(session, table, columns, f'SELECT * FROM "{FAST_SOURCE}"', {})
    finally:
        session.cursor.unregister(FAST_SOURCE)
    return write_rows(session, table, columns, stage)


def stage_rows(session: Any, table: Table, columns: list[Column], source_sql: str, bind: dict[str, Any]) -> pa.Table:
    """Convert source rows to the target columns' storage form; 245 on failure."""
    names = ", ".join(f'"s{i}"' for i in range(len(columns)))
    parts = []
    for i, col in enumerate(columns):
        conv = T.conversion_sql(f'src."s{i}"', col.type)
        parts.append(f"{conv} AS {quote_duck(col.name)}")
        parts.append(f'(src."s{i}" IS NOT NULL AND {conv} IS NULL) AS "__bad{i}"')
        parts.append(f'CAST(src."s{i}" AS VARCHAR) AS "__raw{i}"')
        parts.append(f'typeof(src."s{i}") AS "__type{i}"')
    sql = f"SELECT {', '.join(parts)} FROM ({source_sql}) AS src({names})"
    data = session.cursor.execute(sql, bind).to_arrow_table()
    for i, col in enumerate(columns):
        bad = data.column(f"__bad{i}")
        if pc.any(bad).as_py():
            raw = pc.filter(data.column(f"__raw{i}"), bad)[0].as_py()
            raise conversion_error(raw, data.column(f"__type{i}")[0].as_py(), col.type)
    return data.select([c.name for c in columns])


def write_rows(session: Any, table: Table, columns: list[Column], stage: pa.Table) -> StatementResult:
    """Complete, check and append rows given in storage form for ``columns``."""
    identity = table.identity_column
    explicit_identity = identity is not None and any(c is identity for c in columns)
    if explicit_identity and table.object_id not in session.identity_insert:
        raise SqlServerError(
            544,
            f"Cannot insert explicit value for identity column in table '{table.name}' when IDENTITY_INSERT is set to OFF.",
        )
    given = {c.name for c in columns}
    full = {c.name: stage.column(c.name) for c in columns}
    n = stage.num_rows
    for col in table.columns:
        if col.name in given:
            continue
        if col is identity:
            first = session.engine.next_identity(table, n)
            step = identity.identity[1]
            full[col.name] = (
                pa.array(range(first, first + step * n, step), T.storage_arrow_type(col.type))
                if n
                else pa.array([], T.storage_arrow_type(col.type))
            )
            session.last_identity = first + step * (n - 1) if n else session.last_identity
        elif col.default_sql is not None:
            full[col.name] = _default(session, col, n)
        else:
            full[col.name] = pa.nulls(n, _arrow_of(stage, col))
    if explicit_identity and n:
        top = pc.max(full[identity.name]).as_py()
        if top is not None and (table.identity_last is None or top > table.identity_last):
            table.identity_last = int(top)
        session.last_identity = int(full[identity.name][n - 1].as_py())
    rows = pa.table([full[c.name] for c in table.columns], names=[c.name for c in table.columns])
    check_rows(session, table, rows, "INSERT")
    check_keys(session, table, rows, exclude_rowids=None)
    with session.autocommit_scope() as txn:
        session.write(f"INSERT INTO {table.duck_name} SELECT * FROM {STAGE}", registrations={STAGE: rows})
        if n:
            txn.changed = True
            session.engine.cdc.on_change(
                txn, table.database.name, table.schema, table.name, "insert", None, to_image(table, rows)
            )
    return _rowcount(session, n)


def _arrow_of(stage: pa.Table, col: Column) -> pa.DataType:
    return T.storage_arrow_type(col.type) if col.type.name != "uniqueidentifier" else pa.string()


def _default(session: Any, col: Column, n: int) -> pa.ChunkedArray | pa.Array:
    tr = Translator(session, {})
    from .translate import parse

    expr = duck_sql(tr.expression_tree(parse(f"SELECT {col.default_sql}")))
    conv = T.conversion_sql("d.v", col.type)
    value = session.cursor.execute(f"SELECT {conv} FROM ({expr}) AS d(v)", tr.bind).to_arrow_table().column(0)
    if col.type.name == "uniqueidentifier" or "newid" in col.default_sql.lower():
        data = session.cursor.execute(
            f"SELECT {conv} FROM (SELECT {expr.replace('SELECT', '', 1)} FROM range({n})) AS d(v)", tr.bind
        ).to_arrow_table()
        return data.column(0)
    return pa.repeat(value[0], n) if n else value.slice(0, 0)


def check_rows(session: Any, table: Table, rows: pa.Table, verb: str) -> None:
    """NOT NULL (515) and string/binary truncation (2628) checks on storage-form rows."""
    for col in table.columns:
        data = rows.column(col.name)
        if not col.type.nullable and data.null_count:
            raise SqlServerError(
                515,
                f"Cannot insert the value NULL into column '{col.name}', table '{_full_name(table)}'; column does not allow nulls. {verb} fails.",
            )
        limit = col.type.length
        if limit is None or limit < 0 or not (col.type.name in T.STRING_TYPES or col.type.name in T.BINARY_TYPES):
            continue
        if col.type.name in T.BINARY_TYPES:
            lengths = pc.binary_length(data)
        else:  # n-types count UTF-16 code units, as SQL Server does
            lengths = T.utf16_length(data) if col.type.name in ("nchar", "nvarchar") else pc.utf8_length(data)
        too_long = pc.greater(lengths, limit)
        if pc.any(too_long).as_py():
            value = pc.filter(data, too_long)[0].as_py()
            shown = value[:limit] if isinstance(value, str) else value[:limit].hex()
            raise SqlServerError(
                2628,
                f"String or binary data would be truncated in table '{_full_name(table)}', column '{col.name}'. Truncated value: '{shown}'.",
            )


def check_keys(session: Any, table: Table, rows: pa.Table, exclude_rowids: pa.Array | None) -> None:
    """Primary key / unique violations (2627), compared like the collation compares: case-insensitively
    and without trailing blanks (``'a'`` and ``'a '`` are the same key)."""
    for key in table.keys:
        cols = ", ".join(key_value(table, c) for c in key.columns)
        on = " AND ".join(f"{key_value(table, c, 's')} = {key_value(table, c, 't')}" for c in key.columns)
        not_null = " AND ".join(f"{quote_duck(c)} IS NOT NULL" for c in key.columns)
        session.cursor.register(STAGE, rows)
        try:
            dup = session.cursor.execute(
                f"SELECT {cols} FROM {STAGE} WHERE {not_null} GROUP BY {cols} HAVING count(*) > 1 LIMIT 1"
            ).fetchall()
            dup = dup[0] if dup else None
            if dup is None:
                exclude = "" if exclude_rowids is None else "AND t.rowid NOT IN (SELECT r FROM __dml_excl)"
                if exclude_rowids is not None:
                    session.cursor.register("__dml_excl", pa.table({"r": exclude_rowids}))
                dup = session.cursor.execute(
                    f"SELECT {', '.join('s.' + quote_duck(c) for c in key.columns)} FROM {STAGE} s "
                    f"JOIN {table.duck_name} t ON {on} {exclude} LIMIT 1"
                ).fetchall()
                dup = dup[0] if dup else None
        finally:
            session.cursor.unregister(STAGE)
        if dup is not None:
            kind = "PRIMARY KEY" if key.primary else "UNIQUE KEY"
            shown = ", ".join(str(v) for v in dup)
            raise SqlServerError(
                2627,
                f"Violation of {kind} constraint '{key.name}'. Cannot insert duplicate key in object '{table.schema}.{table.name}'. The duplicate key value is ({shown}).",
            )


def key_value(table: Table, column: str, alias: str | None = None) -> str:
    """DuckDB SQL of a key column as keys compare: strings without their trailing blanks."""
    ref = f"{alias}.{quote_duck(column)}" if alias else quote_duck(column)
    return f"rtrim({ref})" if table.require_column(column).type.name in T.STRING_TYPES else ref


# -- UPDATE / DELETE --------------------------------------------------------------------
def _where(tr: Translator, node: exp.Expression) -> str:
    where = node.args.get("where")
    return f"WHERE {duck_sql(tr.expression_tree(where.this))}" if where is not None else ""


def update(session: Any, node: exp.Update, params: dict[str, Param], text: str) -> StatementResult:
    if node.args.get("from") or node.args.get("from_") or node.args.get("joins"):
        raise not_supported(f"UPDATE ... FROM: {text[:120]}")
    tr = Translator(session, params)
    table = _table(session, tr, node.this)
    alias = quote_duck(node.this.alias or node.this.name)
    sets: list[tuple[Column, str]] = []
    for assignment in node.expressions:
        col = table.require_column(assignment.this.name)
        if col.identity:
            raise SqlServerError(8102, f"Cannot update identity column '{col.name}'.")
        value = duck_sql(tr.expression_tree(assignment.expression))
        sets.append((col, value))
    where = _where(tr, node)
    for name, data in tr.registrations.items():
        session.cursor.register(name, data)
    before_cols = ", ".join(f"{alias}.{quote_duck(c.name)}" for c in table.columns)
    new_cols = ", ".join(
        f"{T.conversion_sql(v, c.type)} AS {quote_duck('__new_' + c.name)}, ({v}) IS NOT NULL AND "
        f"{T.conversion_sql(v, c.type)} IS NULL AS {quote_duck('__bad_' + c.name)}, "
        f"CAST(({v}) AS VARCHAR) AS {quote_duck('__raw_' + c.name)}, "
        f"typeof({v}) AS {quote_duck('__type_' + c.name)}"
        for c, v in sets
    )
    sql = f"SELECT {alias}.rowid AS __rowid, {before_cols}, {new_cols} FROM {table.duck_name} AS {alias} {where}"
    data = session.cursor.execute(sql, tr.bind).to_arrow_table()
    for col, _ in sets:
        bad = data.column(f"__bad_{col.name}")
        if pc.any(bad).as_py():
            raw = pc.filter(data.column(f"__raw_{col.name}"), bad)[0].as_py()
            raise conversion_error(raw, data.column(f"__type_{col.name}")[0].as_py(), col.type)
    before = data.select([c.name for c in table.columns])
    after = before
    for col, _ in sets:
        idx = after.schema.get_field_index(col.name)
        after = after.set_column(idx, col.name, data.column(f"__new_{col.name}").cast(after.schema.field(idx).type))
    check_rows(session, table, after, "UPDATE")
    touched = {c.name for c, _ in sets}
    if any(set(k.columns) & touched for k in table.keys):
        check_keys(session, table, after, exclude_rowids=data.column("__rowid"))
    stage = after.append_column("__rowid", data.column("__rowid"))
    assignments = ", ".join(f"{quote_duck(c.name)} = {STAGE}.{quote_duck(c.name)}" for c, _ in sets)
    with session.autocommit_scope() as txn:
        if data.num_rows:
            session.write(
                f"UPDATE {table.duck_name} SET {assignments} FROM {STAGE} "
                f"WHERE {table.duck_name}.rowid = {STAGE}.__rowid",
                registrations={STAGE: stage},
            )
            txn.changed = True
            session.engine.cdc.on_change(
                txn,
                table.database.name,
                table.schema,
                table.name,
                "update",
                to_image(table, before),
                to_image(table, after),
            )
    return _rowcount(session, data.num_rows)


def delete(session: Any, node: exp.Delete, params: dict[str, Param], text: str) -> StatementResult:
    if node.args.get("using") or node.args.get("joins"):
        raise not_supported(f"DELETE ... FROM join: {text[:120]}")
    tr = Translator(session, params)
    table = _table(session, tr, node.this)
    alias = quote_duck(node.this.alias or node.this.name)
    where = _where(tr, node)
    for name, data in tr.registrations.items():
        session.cursor.register(name, data)
    cols = ", ".join(f"{alias}.{quote_duck(c.name)}" for c in table.columns)
    data = session.cursor.execute(
        f"SELECT {alias}.rowid AS __rowid, {cols} FROM {table.duck_name} AS {alias} {where}", tr.bind
    ).to_arrow_table()
    with session.autocommit_scope() as txn:
        if data.num_rows:
            session.write(
                f"DELETE FROM {table.duck_name} WHERE rowid IN (SELECT __rowid FROM {STAGE})",
                registrations={STAGE: data.select(["__rowid"])},
            )
            txn.changed = True
            session.engine.cdc.on_change(
                txn,
                table.database.name,
                table.schema,
                table.name,
                "delete",
                to_image(table, data.select([c.name for c in table.columns])),
                None,
            )
    return _rowcount(session, data.num_rows)
