"""Catalog views that describe the server rather than the user's tables.

Peer tools probe these before they reflect anything: SQLAlchemy looks up
``sys.system_views`` for ``dm_exec_sessions`` and then reads the session's
isolation level from ``sys.dm_exec_sessions``; Sling lists ``sys.synonyms``
next to tables and views; SQLAlchemy's ``get_schema_names`` reads
``INFORMATION_SCHEMA.SCHEMATA``.

``sys.system_views`` lists the catalog views the double implements (so a
client that checks for a view before using it sees the truth), under object
ids that are negative as SQL Server's are; the ids themselves are the
double's own. The double has no synonyms, so ``sys.synonyms`` is empty.
"""

from __future__ import annotations

import zlib
from typing import Any

from ..engine_api import SqlType
from .catalog import Database
from .views_sys import _BIT, _DATETIME, _INT, _NV, OBJECT_COLUMNS

_SMALL = SqlType("smallint")
# transaction_isolation_level codes of sys.dm_exec_sessions
_ISOLATION_CODES = {"READ UNCOMMITTED": 1, "READ COMMITTED": 2, "REPEATABLE READ": 3, "SERIALIZABLE": 4, "SNAPSHOT": 5}


def system_view_object_id(schema: str, name: str) -> int:
    """A stable negative object id for a catalog view (SQL Server's system objects have negative ids)."""
    return -(zlib.crc32(f"{schema}.{name}".lower().encode()) % 1_000_000_000 + 1)


def sys_system_views(session: Any, db: Database) -> tuple[list, list]:
    from .views import catalog_view_names

    spec = OBJECT_COLUMNS + [
        ("is_replicated", _BIT),
        ("has_replication_filter", _BIT),
        ("has_opaque_metadata", _BIT),
        ("has_unchecked_assembly_data", _BIT),
        ("with_check_option", _BIT),
        ("is_date_correlation_view", _BIT),
    ]
    rows = []
    for schema, name in catalog_view_names():
        schema_id = db.schemas[schema.lower()][1]
        rows.append(
            (
                name,
                system_view_object_id(schema, name),
                None,
                schema_id,
                0,
                "V ",
                "VIEW",
                None,
                None,
                True,
                False,
                False,
                False,
                False,
                False,
                False,
                False,
                False,
            )
        )
    return spec, rows


def sys_synonyms(session: Any, db: Database) -> tuple[list, list]:
    return OBJECT_COLUMNS + [("base_object_name", SqlType("nvarchar", 1035))], []


def sys_dm_exec_sessions(session: Any, db: Database) -> tuple[list, list]:
    """One row per open session of the engine (every login is ``sa``, so it may see them all)."""
    spec = [
        ("session_id", _SMALL),
        ("login_time", _DATETIME),
        ("host_name", _NV),
        ("program_name", _NV),
        ("login_name", _NV),
        ("status", SqlType("nvarchar", 30)),
        ("database_id", _SMALL),
        ("transaction_isolation_level", _SMALL),
        ("open_transaction_count", _INT),
        ("is_user_process", _BIT),
    ]
    rows = []
    for other in sorted(session.engine.open_sessions(), key=lambda s: s.spid):
        database = session.engine.databases.get(other.database.lower())
        rows.append(
            (
                other.spid,
                other.login_time,
                None,
                None,
                other.user,
                "running" if other is session else "sleeping",
                database.database_id if database else None,
                _ISOLATION_CODES.get(other.options.get("isolation", ""), 2),
                other.trancount,
                True,
            )
        )
    return spec, rows


def info_schemata(session: Any, db: Database) -> tuple[list, list]:
    spec = [
        ("CATALOG_NAME", _NV),
        ("SCHEMA_NAME", _NV),
        ("SCHEMA_OWNER", _NV),
        ("DEFAULT_CHARACTER_SET_CATALOG", SqlType("varchar", 6)),
        ("DEFAULT_CHARACTER_SET_SCHEMA", SqlType("varchar", 3)),
        ("DEFAULT_CHARACTER_SET_NAME", _NV),
    ]
    owners = {"sys": "sys", "guest": "guest", "information_schema": "INFORMATION_SCHEMA"}
    rows = [
        (db.name, name, owners.get(name.lower(), "dbo"), None, None, "iso_1")
        for name, _ in sorted(db.schemas.values(), key=lambda s: s[1])
    ]
    return spec, rows


BUILDERS = {
    "sys.system_views": sys_system_views,
    "sys.synonyms": sys_synonyms,
    "sys.dm_exec_sessions": sys_dm_exec_sessions,
    "information_schema.schemata": info_schemata,
}
