"""DDL: CREATE/DROP DATABASE, CREATE SCHEMA, CREATE/DROP/TRUNCATE/ALTER TABLE.

Tables are created in DuckDB without constraints (the engine enforces keys and
NOT NULL itself, see ``dml.py``); the SQL Server definition lives in the
catalog.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from ..engine_api import Param, SqlServerError, StatementResult, not_supported
from . import types as T
from .catalog import Column, Database, KeyConstraint, Table
from .dialect import quote_duck


def _target(session: Any, table: exp.Table) -> tuple[Database, str, str]:
    db = session.engine.database(table.catalog or session.database)
    schema = db.schema_name(table.db or "dbo")
    return db, schema, table.name


def create(session: Any, node: exp.Create, params: dict[str, Param], text: str) -> StatementResult:
    kind = (node.args.get("kind") or "").upper()
    if kind == "DATABASE":
        session.engine.create_database(node.this.name)
        return StatementResult()
    if kind == "SCHEMA":
        db = session.engine.database(session.database)
        session.engine.create_schema(db, node.this.db or node.this.name)  # sqlglot puts the name in .db
        return StatementResult()
    if kind != "TABLE" or not isinstance(node.this, exp.Schema) or node.expression is not None:
        raise not_supported(text[:200])
    db, schema, name = _target(session, node.this.this)
    columns, keys = _definition(node.this, name)
    create_table(session, db, schema, name, columns, keys)
    return StatementResult()


def create_table(
    session: Any, db: Database, schema: str, name: str, columns: list[Column], keys: list[KeyConstraint]
) -> Table:
    """Register ``db.schema.name`` in the catalog and create its DuckDB storage table."""
    engine = session.engine
    with engine.lock:
        if db.find_table(schema, name) is not None:
            raise SqlServerError(2714, f"There is already an object named '{name}' in the database.")
        table = Table(db, schema, name, columns, keys)
        for key in keys:
            for col_name in key.columns:
                col = table.require_column(col_name)
                if key.primary:
                    col.type = T.SqlType(col.type.name, col.type.length, col.type.precision, col.type.scale, False)
        cols_sql = ", ".join(f"{quote_duck(c.name)} {T.storage_type(c.type)}" for c in columns)
        with session.autocommit_scope():
            session.write(f"CREATE SCHEMA IF NOT EXISTS {quote_duck(db.duck_name)}.{quote_duck(schema)}")
            session.write(f"CREATE TABLE {table.duck_name} ({cols_sql})")
        db.tables[(schema.lower(), name.lower())] = table
    return table


def _definition(schema_node: exp.Schema, table_name: str) -> tuple[list[Column], list[KeyConstraint]]:
    columns: list[Column] = []
    keys: list[KeyConstraint] = []
    for item in schema_node.expressions:
        if isinstance(item, exp.ColumnDef):
            col, key = _column(item, table_name)
            columns.append(col)
            if key:
                keys.append(key)
        elif isinstance(item, (exp.Constraint, exp.PrimaryKey, exp.UniqueColumnConstraint)):
            keys.append(_table_constraint(item, table_name))
        else:
            raise not_supported(item.sql("tsql"))
    if len([k for k in keys if k.primary]) > 1:
        raise SqlServerError(8110, f"Cannot add multiple PRIMARY KEY constraints to table '{table_name}'.")
    return columns, keys


def _column(item: exp.ColumnDef, table_name: str) -> tuple[Column, KeyConstraint | None]:
    kind = item.args.get("kind")
    if kind is None:
        raise not_supported(f"computed column {item.sql('tsql')}")
    t = T.from_datatype(kind)
    nullable, identity, default, key = True, None, None, None
    for c in item.constraints:
        k = c.kind
        if isinstance(k, exp.NotNullColumnConstraint):
            nullable = bool(k.args.get("allow_null"))
        elif isinstance(k, exp.GeneratedAsIdentityColumnConstraint):
            start, inc = k.args.get("start"), k.args.get("increment")
            identity = (int(start.this) if start else 1, int(inc.this) if inc else 1)
            nullable = False
        elif isinstance(k, exp.DefaultColumnConstraint):
            default = k.this.sql("tsql")
        elif isinstance(k, exp.PrimaryKeyColumnConstraint):
            key = KeyConstraint(_key_name("PK", table_name), [item.name], True)
            nullable = False
        elif isinstance(k, exp.UniqueColumnConstraint):
            key = KeyConstraint(_key_name("UQ", table_name), [item.name], False)
        elif isinstance(
            k, (exp.ClusteredColumnConstraint, exp.NonClusteredColumnConstraint, exp.CollateColumnConstraint)
        ):
            continue
        else:
            raise not_supported(f"column constraint {c.sql('tsql')}")
    col = Column(item.name, T.SqlType(t.name, t.length, t.precision, t.scale, nullable), identity, default)
    return col, key


def _key_name(prefix: str, table_name: str) -> str:
    import uuid

    return f"{prefix}__{table_name[:8]}__{uuid.uuid4().hex[:16].upper()}"


def _table_constraint(item: exp.Expression, table_name: str) -> KeyConstraint:
    name = item.name if isinstance(item, exp.Constraint) and item.this else None
    parts = item.expressions if isinstance(item, exp.Constraint) else [item]
    primary = any(isinstance(p, exp.PrimaryKeyColumnConstraint) or isinstance(p, exp.PrimaryKey) for p in parts)
    cols: list[str] = []
    for p in parts:
        for o in p.find_all(exp.Column, exp.Identifier):
            if isinstance(o, exp.Column):
                cols.append(o.name)
        if isinstance(p, exp.PrimaryKey):
            cols = [e.name for e in p.expressions]
        if isinstance(p, exp.UniqueColumnConstraint) and isinstance(p.this, exp.Schema):
            cols = [e.name for e in p.this.expressions]
    if not cols:
        raise not_supported(f"constraint {item.sql('tsql')}")
    return KeyConstraint(name or _key_name("PK" if primary else "UQ", table_name), list(dict.fromkeys(cols)), primary)


def drop(session: Any, node: exp.Drop, params: dict[str, Param], text: str) -> StatementResult:
    kind = (node.args.get("kind") or "").upper()
    if kind == "DATABASE":
        target = node.this if node.this is not None else (node.args.get("tables") or [None])[0]
        if target is None:
            raise not_supported(text[:200])
        if node.args.get("exists") and target.name.lower() not in session.engine.databases:
            return StatementResult()
        session.engine.drop_database(target.name)
        return StatementResult()
    if kind != "TABLE":
        raise not_supported(text[:200])
    # sqlglot 30 lists the tables of DROP TABLE a[, b] in ``tables``; older versions put one in ``this``
    targets = node.args.get("tables") or ([node.this] if node.this is not None else [])
    if not targets:
        raise not_supported(text[:200])
    for target in targets:
        _drop_table(session, target, bool(node.args.get("exists")), text)
    return StatementResult()


def _drop_table(session: Any, target: exp.Table, if_exists: bool, text: str) -> None:
    db, schema, name = _target(session, target)
    table = db.find_table(schema, name)
    if table is None:
        if if_exists:
            return
        raise SqlServerError(
            3701, f"Cannot drop the table '{name}', because it does not exist or you do not have permission."
        )
    with session.autocommit_scope() as txn:
        session.write(f"DROP TABLE {table.duck_name}")
        if table.is_tracked_by_cdc:  # its capture instances and their metadata go with it
            session.engine.cdc.on_ddl(txn, db.name, schema, name, text)
    with session.engine.lock:
        db.tables.pop((schema.lower(), name.lower()), None)


def truncate(session: Any, node: exp.TruncateTable, params: dict[str, Param], text: str) -> StatementResult:
    for target in node.expressions:
        db, schema, name = _target(session, target)
        table = db.find_table(schema, name)
        if table is None:
            raise SqlServerError(
                4701, f'Cannot find the object "{name}" because it does not exist or you do not have permissions.'
            )
        if table.is_tracked_by_cdc:
            raise SqlServerError(
                4711,
                f"Cannot truncate table '{schema}.{name}' because it is published for replication or enabled for Change Data Capture.",
            )
        with session.autocommit_scope():
            session.write(f"DELETE FROM {table.duck_name}")
        if table.identity_column is not None:
            table.identity_last = None
    return StatementResult()


def alter(session: Any, node: exp.Alter, params: dict[str, Param], text: str) -> StatementResult:
    if (node.args.get("kind") or "").upper() != "TABLE":
        raise not_supported(text[:200])
    db, schema, name = _target(session, node.this)
    table = db.find_table(schema, name)
    if table is None:
        raise SqlServerError(
            4902, f'Cannot find the object "{name}" because it does not exist or you do not have permissions.'
        )
    with session.autocommit_scope() as txn:
        for action in node.args.get("actions") or []:
            _alter_action(session, table, action, text)
        if table.is_tracked_by_cdc:
            session.engine.cdc.on_ddl(txn, db.name, schema, name, text)
    return StatementResult()


def _alter_action(session: Any, table: Table, action: exp.Expression, text: str) -> None:
    if isinstance(action, exp.ColumnDef):
        col, key = _column(action, table.name)
        if table.column(col.name):
            raise SqlServerError(
                2705,
                f"Column names in each table must be unique. Column name '{col.name}' in table '{table.name}' is specified more than once.",
            )
        if key or (not col.type.nullable and col.default_sql is None and not col.identity):
            raise not_supported(f"ALTER TABLE ADD with key or NOT NULL without default: {text[:120]}")
        session.write(f"ALTER TABLE {table.duck_name} ADD COLUMN {quote_duck(col.name)} {T.storage_type(col.type)}")
        table.columns.append(col)
    elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
        for target in _dropped_columns(action):
            _drop_column(session, table, target)
    elif isinstance(action, exp.AlterColumn) and action.args.get("dtype") is not None:
        col = table.require_column(action.this.name)
        new = T.from_datatype(action.args["dtype"])
        session.write(f"ALTER TABLE {table.duck_name} ALTER COLUMN {quote_duck(col.name)} TYPE {T.storage_type(new)}")
        col.type = T.SqlType(new.name, new.length, new.precision, new.scale, col.type.nullable)
    else:
        raise not_supported(f"ALTER TABLE action {action.sql('tsql')}")


def _dropped_columns(action: exp.Drop) -> list[str]:
    """Column names of ``DROP COLUMN a[, b]`` (sqlglot 30 puts them in ``tables``, older ones in ``this``)."""
    targets = action.args.get("tables") or ([action.this] if action.this is not None else [])
    if not targets:
        raise not_supported(f"ALTER TABLE action {action.sql('tsql')}")
    return [t.name for t in targets]


def _drop_column(session: Any, table: Table, name: str) -> None:
    col = table.require_column(name)
    key = next((k for k in table.keys if any(c.lower() == col.name.lower() for c in k.columns)), None)
    if key is not None:
        raise SqlServerError(5074, f"The object '{key.name}' is dependent on column '{col.name}'.")
    if len(table.columns) == 1:
        raise SqlServerError(
            4923,
            f"ALTER TABLE DROP COLUMN failed because '{col.name}' is the only data column "
            f"in table '{table.name}'. A table must have at least one data column.",
        )
    session.write(f"ALTER TABLE {table.duck_name} DROP COLUMN {quote_duck(col.name)}")
    table.columns.remove(col)
