"""OBJECT_ID() and OBJECTPROPERTY() over non-constant arguments.

With a constant argument the engine evaluates OBJECT_ID itself (``globals.py``).
Catalog queries such as SQLAlchemy's build the name from columns
(``OBJECT_ID(c.TABLE_SCHEMA + '.' + c.CONSTRAINT_NAME)``), so the translator
registers one Arrow table of the database's object names and rewrites the call
into a scalar subquery on it. Names are stored lower-case without brackets, in
every spelling SQL Server resolves: ``name`` (default schema dbo),
``schema.name`` and ``database.schema.name``.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from ..engine_api import SqlServerError
from .catalog import Database

REGISTRATION = "__tsql_objects"
# OBJECTPROPERTY(id, property) -> column of the registered table
PROPERTIES = {
    "cnstisclustkey": "clustered_key",
    "cnstisnonclustkey": "nonclustered_key",
    "isusertable": "user_table",
    "istable": "user_table",
    "isprimarykey": "primary_key",
}


def object_names(db: Database) -> pa.Table:
    names: list[str] = []
    ids: list[int] = []
    flags: dict[str, list[int]] = {col: [] for col in set(PROPERTIES.values())}

    def add(schema: str, name: str, object_id: int, **props: int) -> None:
        spellings = {f"{schema}.{name}", f"{db.name}.{schema}.{name}"} | ({name} if schema.lower() == "dbo" else set())
        for spelling in spellings:
            names.append(spelling.lower())
            ids.append(object_id)
            for col in flags:
                flags[col].append(props.get(col, 0))

    for t in db.tables.values():
        add(t.schema, t.name, t.object_id, user_table=1)
        for k in t.keys:
            add(
                t.schema,
                k.name,
                k.object_id,
                primary_key=int(k.primary),
                clustered_key=int(k.primary),
                nonclustered_key=int(not k.primary),
            )
    return pa.table(
        {
            "name": pa.array(names, pa.string()),
            "object_id": pa.array(ids, pa.int32()),
            **{col: pa.array(v, pa.int32()) for col, v in flags.items()},
        }
    )


def _lookup(column: str, where: exp.Expression) -> exp.Expression:
    select = exp.select(exp.column(column)).from_(exp.table_(REGISTRATION, quoted=True)).where(where).limit(1)
    return exp.Subquery(this=select)


def object_id_subquery(name: exp.Expression) -> exp.Expression:
    """(SELECT object_id FROM __tsql_objects WHERE name = lower(<name without brackets>))."""
    no_open = exp.Replace(this=name, expression=exp.Literal.string("["), replacement=exp.Literal.string(""))
    stripped = exp.Replace(this=no_open, expression=exp.Literal.string("]"), replacement=exp.Literal.string(""))
    return _lookup("object_id", exp.EQ(this=exp.column("name"), expression=exp.Lower(this=stripped)))


def property_subquery(object_id: exp.Expression, prop: exp.Expression) -> exp.Expression:
    """OBJECTPROPERTY(id, 'CnstIsClustKey') and friends; NULL for an unknown id, as SQL Server."""
    if not isinstance(prop, exp.Literal) or not prop.is_string:
        raise SqlServerError(102, "not supported by the SQL Server double: OBJECTPROPERTY with a non-literal property")
    column = PROPERTIES.get(prop.this.lower())
    if column is None:
        raise SqlServerError(102, f"not supported by the SQL Server double: OBJECTPROPERTY(..., '{prop.this}')")
    return _lookup(column, exp.EQ(this=exp.column("object_id"), expression=object_id))


def schema_lookup(db: Database, argument: exp.Expression, *, by_id: bool) -> exp.Expression:
    """SCHEMA_NAME(column) / SCHEMA_ID(column): a CASE over the database's schemas (NULL when unknown)."""
    ifs = []
    for name, schema_id in db.schemas.values():
        key = exp.Literal.number(schema_id) if by_id else exp.Literal.string(name)
        value = exp.Literal.string(name) if by_id else exp.Literal.number(schema_id)
        ifs.append(exp.If(this=exp.EQ(this=argument.copy(), expression=key), true=value))
    return exp.Case(ifs=ifs, default=exp.Null())
