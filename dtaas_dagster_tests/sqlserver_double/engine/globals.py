"""Values of @@globals and constant functions (SERVERPROPERTY, DB_NAME, OBJECT_ID, ...)."""

from __future__ import annotations

from typing import Any

from ..engine_api import SqlServerError, SqlType
from .dialect import split_multipart

_NV128 = SqlType("nvarchar", 128)


def global_value(session: Any, name: str) -> tuple[Any, SqlType]:
    """@@VERSION, @@SPID, @@TRANCOUNT, @@ROWCOUNT, @@SERVERNAME, @@IDENTITY, ..."""
    engine = session.engine
    values: dict[str, tuple[Any, SqlType]] = {
        "version": (engine.version, SqlType("nvarchar", 300)),
        "spid": (session.spid, SqlType("smallint")),
        "trancount": (session.trancount, SqlType("int")),
        "rowcount": (session.rowcount, SqlType("int")),
        "servername": (engine.server_name, _NV128),
        "servicename": ("MSSQLSERVER", _NV128),
        "identity": (session.last_identity, SqlType("numeric", precision=38, scale=0)),
        "language": ("us_english", _NV128),
        "langid": (0, SqlType("smallint")),
        "options": (5496, SqlType("int")),
        "lock_timeout": (-1, SqlType("int")),
        "textsize": (2147483647, SqlType("int")),
        "max_precision": (38, SqlType("tinyint")),
        "datefirst": (7, SqlType("tinyint")),
        "microsofts": (0, SqlType("int")),
    }
    found = values.get(name.lower())
    if found is None:
        raise SqlServerError(137, f'Must declare the scalar variable "@@{name}".')
    return found


def function_value(session: Any, name: str, args: list[Any]) -> tuple[Any, SqlType]:
    """Constant functions evaluated by the engine before DuckDB runs the query."""
    engine = session.engine
    if name == "rowcount_big":
        return session.rowcount, SqlType("bigint")
    if name == "scope_identity":
        return session.last_identity, SqlType("numeric", precision=38, scale=0)
    if name == "db_name":
        if not args or args[0] is None:
            return session.database, _NV128
        db = next((d for d in engine.databases.values() if d.database_id == args[0]), None)
        return (db.name if db else None), _NV128
    if name == "db_id":
        db = engine.databases.get(str(args[0]).lower()) if args else engine.database(session.database)
        return (db.database_id if db else None), SqlType("int")
    if name == "schema_name":
        if not args or args[0] is None:
            return "dbo", _NV128
        found = [n for n, i in engine.database(session.database).schemas.values() if i == args[0]]
        return (found[0] if found else None), _NV128
    if name == "schema_id":
        schemas = engine.database(session.database).schemas
        if not args or args[0] is None:
            return schemas["dbo"][1], SqlType("int")
        found = schemas.get(str(args[0]).strip("[]").lower())
        return (found[1] if found else None), SqlType("int")
    if name in ("suser_sname", "suser_name", "user_name", "original_login", "system_user"):
        return session.user if name != "user_name" else "dbo", _NV128
    if name == "serverproperty":
        return _server_property(engine, str(args[0]) if args else ""), SqlType("sql_variant") if False else SqlType(
            "nvarchar", 128
        )
    if name == "object_id":
        return _object_id(session, str(args[0]) if args and args[0] is not None else ""), SqlType("int")
    if name == "is_srvrolemember":
        return 1, SqlType("int")
    if name == "has_perms_by_name":
        return 1, SqlType("int")
    raise SqlServerError(195, f"'{name}' is not a recognized built-in function name.")


def _server_property(engine: Any, prop: str) -> Any:
    props = {
        "productversion": engine.product_version,
        "productmajorversion": "16",
        "productminorversion": "0",
        "productlevel": "RTM",
        "edition": "Developer Edition (64-bit)",
        "engineedition": 3,
        "servername": engine.server_name,
        "machinename": engine.server_name,
        "instancename": None,
        "collation": engine.collation,
        "isclustered": 0,
        "ishadrenabled": 0,
        "isintegratedsecurityonly": 0,
    }
    return props.get(prop.lower())


def _object_id(session: Any, name: str) -> int | None:
    parts = split_multipart(name)
    if not parts or not parts[-1]:
        return None
    db = session.engine.databases.get((parts[-3] if len(parts) >= 3 else session.database).lower())
    if db is None:
        return None
    schema = parts[-2] if len(parts) >= 2 and parts[-2] else "dbo"
    table = db.find_table(schema, parts[-1])
    return table.object_id if table else None
