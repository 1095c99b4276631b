"""The SQL Server instance of the double: logins, databases, one DuckDB database.

One in-memory DuckDB database holds everything; each SQL Server database is an
attached in-memory DuckDB catalog (``db_<name>``). Each session gets its own
DuckDB cursor, so DuckDB's MVCC gives every session its own transaction and
snapshot. A single commit lock orders commits so the CDC manager can allocate
LSNs in commit order (see the package README, "CDC hook interface").
"""

from __future__ import annotations

import itertools
import socket
import threading
from typing import Any

import duckdb
import pyarrow as pa

from ..engine_api import SqlServerError, SqlType
from .catalog import DEFAULT_SCHEMAS, Database
from .dialect import quote_duck


class NoopCdcManager:
    """Stands in when ``engine/cdc.py`` is absent: CDC procedures fail clearly."""

    def __init__(self, engine: "DuckDbEngine") -> None:
        self.engine = engine

    def on_change(
        self,
        txn: Any,
        database: str,
        schema: str,
        table: str,
        operation: str,
        before: pa.Table | None,
        after: pa.Table | None,
    ) -> None:
        return None

    def before_commit(self, txn: Any) -> None:
        return None

    def after_rollback(self, txn: Any) -> None:
        return None

    def on_ddl(self, txn: Any, database: str, schema: str, table: str, ddl_text: str) -> None:
        return None

    def call_procedure(self, txn: Any, name: str, args: dict[str, Any]) -> Any:
        raise SqlServerError(2812, f"Could not find stored procedure '{name}'.")

    def scalar_function(self, txn: Any, name: str, args: list[Any]) -> tuple[Any, SqlType]:
        raise SqlServerError(
            4121,
            f'Cannot find either column "sys" or the user-defined function or aggregate "{name}", or the name is ambiguous.',
        )

    def table_function(self, txn: Any, name: str, args: list[Any]) -> tuple[list, pa.Table]:
        raise SqlServerError(208, f"Invalid object name '{name}'.")


def _make_cdc(engine: "DuckDbEngine") -> Any:
    try:
        from .cdc import CdcManager  # type: ignore[import-not-found]
    except ImportError:
        return NoopCdcManager(engine)
    return CdcManager(engine)


class DuckDbEngine:
    """A SQL Server instance backed by DuckDB (implements ``engine_api.Engine``)."""

    def __init__(self, password: str = "Double!Passw0rd", user: str = "sa", server_name: str | None = None) -> None:
        self._user = user
        self._password = password
        self.server_name = server_name or socket.gethostname().split(".")[0].upper()
        self.version = (
            "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) \n"
            "\tOct  8 2022 05:58:25 \n\tCopyright (C) 2022 Microsoft Corporation\n"
            "\tDeveloper Edition (64-bit) on Linux (SQL Server double, DuckDB "
            f"{duckdb.__version__}) <X64>"
        )
        self.product_version = "16.0.1000.6"
        self.collation = "SQL_Latin1_General_CP1_CI_AS"
        self.lock = threading.RLock()  # catalog changes and identity allocation
        self.commit_lock = threading.Lock()  # before_commit + COMMIT, in LSN order
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET GLOBAL default_collation = 'nocase'")
        # SQL Server raises 8134 where DuckDB returns NULL/inf for x / 0
        self.con.execute(
            "CREATE MACRO tsql_nz(d) AS CASE WHEN d = 0 THEN error('Divide by zero error encountered.') ELSE d END"
        )
        self.databases: dict[str, Database] = {}
        self._database_ids = itertools.count(5)
        self._spids = itertools.count(51)
        self._sessions: dict[int, Any] = {}
        for name, db_id in (("master", 1), ("tempdb", 2), ("model", 3), ("msdb", 4)):
            self.create_database(name, db_id)
        self.cdc = _make_cdc(self)

    # -- logins and sessions -------------------------------------------------
    def authenticate(self, user: str, password: str) -> bool:
        return user.lower() == self._user.lower() and password == self._password

    def open_session(self, user: str, database: str | None) -> Any:
        from .session import DuckDbSession

        db = self.database(database or "master")
        session = DuckDbSession(self, user, db.name, next(self._spids))
        with self.lock:
            self._sessions[session.spid] = session
        return session

    def open_sessions(self) -> list[Any]:
        """The sessions not yet closed (for sys.dm_exec_sessions)."""
        with self.lock:
            return list(self._sessions.values())

    def forget_session(self, spid: int) -> None:
        with self.lock:
            self._sessions.pop(spid, None)

    # -- databases -----------------------------------------------------------
    def database(self, name: str) -> Database:
        db = self.databases.get(name.lower())
        if db is None:
            raise SqlServerError(
                911, f"Database '{name}' does not exist. Make sure that the name is entered correctly."
            )
        return db

    def create_database(self, name: str, database_id: int | None = None) -> Database:
        with self.lock:
            if name.lower() in self.databases:
                raise SqlServerError(1801, f"Database '{name}' already exists. Choose a different database name.")
            db = Database(name, database_id or next(self._database_ids))
            self.con.execute(f"ATTACH ':memory:' AS \"{db.duck_name}\"")
            for schema, schema_id in DEFAULT_SCHEMAS:
                db.schemas[schema.lower()] = (schema, schema_id)
            self.con.execute(f'CREATE SCHEMA "{db.duck_name}"."dbo"')
            self.databases[name.lower()] = db
            return db

    def drop_database(self, name: str) -> None:
        with self.lock:
            db = self.database(name)
            if db.database_id <= 4:
                raise SqlServerError(3708, f"Cannot drop the database '{name}' because it is a system database.")
            self.con.execute(f'DETACH "{db.duck_name}"')
            del self.databases[name.lower()]

    def create_schema(self, db: Database, schema: str) -> None:
        with self.lock:
            if schema.lower() in db.schemas:
                raise SqlServerError(2714, f"There is already an object named '{schema}' in the database.")
            db.schemas[schema.lower()] = (schema, 5 + len(db.schemas))
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_duck(db.duck_name)}.{quote_duck(schema)}")

    def next_identity(self, table: Any, count: int) -> int:
        """Reserve ``count`` identity values; returns the first. Not rolled back, as in SQL Server."""
        col = table.identity_column
        seed, step = col.identity
        with self.lock:
            first = seed if table.identity_last is None else table.identity_last + step
            if count:
                table.identity_last = first + step * (count - 1)
            return first

    def seed_table(
        self,
        database: str,
        schema: str,
        table: str,
        data: pa.Table,
        *,
        columns: dict[str, str] | None = None,
        primary_key: list[str] | None = None,
        create: bool = True,
    ) -> int:
        """Create (optionally) and bulk-load a table from Arrow; see ``seed.py``."""
        from .seed import seed_table

        return seed_table(self, database, schema, table, data, columns=columns, primary_key=primary_key, create=create)
