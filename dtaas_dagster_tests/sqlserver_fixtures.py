"""The SQL Server the tests talk to: the double by default, a real server when configured.

Set ``DTAAS_TEST_SQLSERVER`` to an ODBC connection string (``SERVER=host,port;
UID=...;PWD=...``, other keys ignored) and the same tests run against that
server instead of starting the double. The fixtures in ``conftest.py`` are thin
wrappers around :class:`SqlServerTarget`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyodbc

from dtaas_dagster.sqlserver.drivers import resolve_driver
from dtaas_dagster_tests.sqlserver_double.process import DoubleControl, DoubleProcess

REAL_SERVER_ENV = "DTAAS_TEST_SQLSERVER"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_ $#@]{0,127}$")


def quote_name(name: str) -> str:
    """[name] after checking it is a plain identifier (test code names only)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier; use letters, digits and '_'")
    return f"[{name}]"


def parse_odbc_string(text: str) -> dict[str, str]:
    """``KEY=value;KEY={va;lue}`` into an upper-cased dict."""
    pairs: dict[str, str] = {}
    for match in re.finditer(r"\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)\s*(?:;|$)", text):
        value = match.group(2)
        if value.startswith("{") and value.endswith("}"):
            value = value[1:-1].replace("}}", "}")
        pairs[match.group(1).upper()] = value
    return pairs


def _odbc_value(value: str) -> str:
    """Brace-quote only when needed: FreeTDS misreads a braced value at the very end of the string."""
    if not any(ch in value for ch in ";{}=") and value == value.strip():
        return value
    return "{" + value.replace("}", "}}") + "}"


@dataclass
class SqlServerTarget:
    """Where the tests' SQL Server is, how to connect, and how to seed it."""

    host: str
    port: int
    user: str
    password: str
    double: DoubleProcess | None = None

    @property
    def is_double(self) -> bool:
        return self.double is not None

    @property
    def control(self) -> DoubleControl:
        if self.double is None:
            raise RuntimeError(f"no control channel: the tests run against a real SQL Server (${REAL_SERVER_ENV})")
        return self.double.control

    def connection_string(self, database: str | None = None, driver: str = "msodbc18") -> str:
        resolved = resolve_driver(driver)
        parts = [f"DRIVER={_odbc_value(resolved.value)}"]
        if resolved.is_freetds:
            parts += [f"SERVER={self.host}", f"PORT={self.port}", "TDS_Version=7.4", "ClientCharset=UTF-8"]
        else:
            parts += [f"SERVER={self.host},{self.port}", "Encrypt=no", "TrustServerCertificate=yes"]
        if database:
            parts.append(f"DATABASE={database}")
        parts += [f"UID={self.user}", f"PWD={_odbc_value(self.password)}"]
        return ";".join(parts) + ";"

    def connect(
        self, database: str | None = None, driver: str = "msodbc18", autocommit: bool = True
    ) -> pyodbc.Connection:
        """A pyodbc connection (note: ``with conn:`` commits but does not close; use contextlib.closing)."""
        return pyodbc.connect(self.connection_string(database, driver), autocommit=autocommit, timeout=15)

    def create_database(self, name: str, snapshot_isolation: bool = True, cdc: bool = False) -> None:
        if self.double is not None:
            self.double.create_database(name, snapshot_isolation=snapshot_isolation, cdc=cdc)
            return
        with closing(self.connect()) as conn:
            conn.execute(f"CREATE DATABASE {quote_name(name)}")
            if snapshot_isolation:
                conn.execute(f"ALTER DATABASE {quote_name(name)} SET ALLOW_SNAPSHOT_ISOLATION ON")
        if cdc:
            with closing(self.connect(name)) as conn:
                conn.execute("EXEC sys.sp_cdc_enable_db")

    def drop_database(self, name: str) -> None:
        if self.double is not None:
            self.double.drop_database(name)
            return
        with closing(self.connect()) as conn:
            try:  # end other sessions (a CDC capture job, a leaked test connection) so DROP succeeds
                conn.execute(f"ALTER DATABASE {quote_name(name)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
            except pyodbc.Error:
                pass  # not allowed or not supported: DROP DATABASE reports what is in the way
            conn.execute(f"DROP DATABASE {quote_name(name)}")

    def seed_table(
        self,
        database: str,
        schema: str,
        table: str,
        arrow_table: pa.Table,
        columns: Mapping[str, str] | None = None,
        primary_key: Sequence[str] | None = None,
    ) -> int:
        """Create ``schema.table`` and load ``arrow_table`` into it.

        ``columns`` maps column name -> T-SQL type text (``"nvarchar(100) NOT NULL"``);
        missing columns get a type inferred from the Arrow type.
        """
        if self.double is not None:
            return self.double.seed_table(
                database, schema, table, arrow_table, columns=dict(columns or {}) or None, primary_key=primary_key
            )
        return _seed_real_server(self, database, schema, table, arrow_table, columns or {}, primary_key)

    def stop(self) -> None:
        if self.double is not None:
            self.double.stop()


def arrow_to_tsql_type(data_type: pa.DataType) -> str:
    """A T-SQL type that holds values of ``data_type`` (for seeding a real server)."""
    if pa.types.is_decimal(data_type):
        return f"decimal({data_type.precision},{data_type.scale})"
    if pa.types.is_timestamp(data_type):
        return "datetime2(7)" if data_type.tz is None else "datetimeoffset(7)"
    simple = {
        pa.bool_(): "bit", pa.int8(): "smallint", pa.uint8(): "tinyint", pa.int16(): "smallint",
        pa.int32(): "int", pa.int64(): "bigint", pa.float32(): "real", pa.float64(): "float",
        pa.string(): "nvarchar(max)", pa.large_string(): "nvarchar(max)", pa.binary(): "varbinary(max)",
        pa.large_binary(): "varbinary(max)", pa.date32(): "date", pa.time64("us"): "time(6)",
    }  # fmt: skip
    if data_type in simple:
        return simple[data_type]
    raise ValueError(f"no T-SQL type for Arrow type {data_type}; pass columns={{name: 'type'}}")


def _seed_real_server(
    target: SqlServerTarget,
    database: str,
    schema: str,
    table: str,
    data: pa.Table,
    columns: Mapping[str, str],
    primary_key: Sequence[str] | None,
) -> int:
    name = f"{quote_name(schema)}.{quote_name(table)}"
    defs = [f"{quote_name(f.name)} {columns.get(f.name) or arrow_to_tsql_type(f.type)}" for f in data.schema]
    if primary_key:
        defs.append(f"PRIMARY KEY ({', '.join(quote_name(c) for c in primary_key)})")
    with closing(target.connect(database, autocommit=False)) as conn:
        cursor = conn.cursor()
        if schema.lower() != "dbo":
            cursor.execute(f"IF SCHEMA_ID(?) IS NULL EXEC('CREATE SCHEMA {quote_name(schema)}')", schema)
        cursor.execute(f"CREATE TABLE {name} ({', '.join(defs)})")
        if data.num_rows:
            cursor.fast_executemany = True
            marks = ", ".join("?" for _ in data.schema)
            rows = list(zip(*(col.to_pylist() for col in data.columns)))
            cursor.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
        conn.commit()
    return data.num_rows


def start_target() -> SqlServerTarget:
    """The double in a child process, or the real server named by ``DTAAS_TEST_SQLSERVER``."""
    configured = os.environ.get(REAL_SERVER_ENV, "").strip()
    if configured:
        keys = parse_odbc_string(configured)
        server = keys.get("SERVER", "127.0.0.1").removeprefix("tcp:")
        host, _, port = server.partition(",")
        return SqlServerTarget(
            host=host,
            port=int(port or keys.get("PORT", "1433")),
            user=keys.get("UID", "sa"),
            password=keys.get("PWD", ""),
        )
    double = DoubleProcess(port=0)
    return SqlServerTarget(
        host=double.host, port=double.port, user=double.user, password=double.password, double=double
    )


def unique_database_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass
class SqlServerDatabase:
    """A fresh database of the test target, by name."""

    target: SqlServerTarget
    name: str

    def connection_string(self, driver: str = "msodbc18") -> str:
        return self.target.connection_string(self.name, driver)

    def connect(self, driver: str = "msodbc18", autocommit: bool = True) -> pyodbc.Connection:
        return self.target.connect(self.name, driver, autocommit)

    def seed_table(self, schema: str, table: str, arrow_table: pa.Table, **kwargs: Any) -> int:
        return self.target.seed_table(self.name, schema, table, arrow_table, **kwargs)

    def __str__(self) -> str:
        return self.name


# --------------------------------------------------------------------------- CDC helpers for tests
# The double captures at commit; a real SQL Server's capture job lags a few
# seconds, so readers poll sys.fn_cdc_get_max_lsn() until it moves.

SELECT_MAX_LSN = "SELECT sys.fn_cdc_get_max_lsn()"
SELECT_MIN_LSN = "SELECT sys.fn_cdc_get_min_lsn(?)"


def enable_cdc(
    conn: pyodbc.Connection,
    schema: str,
    table: str,
    *,
    capture_instance: str | None = None,
    supports_net_changes: bool = True,
    captured_columns: str | None = None,
) -> None:
    """sys.sp_cdc_enable_table with bound parameters (the database must be CDC-enabled)."""
    conn.execute(
        "EXEC sys.sp_cdc_enable_table @source_schema = ?, @source_name = ?, @role_name = NULL, "
        "@capture_instance = ?, @supports_net_changes = ?, @captured_column_list = ?",
        schema, table, capture_instance, 1 if supports_net_changes else 0, captured_columns,
    )  # fmt: skip


def max_lsn(conn: pyodbc.Connection) -> bytes | None:
    value = conn.execute(SELECT_MAX_LSN).fetchone()[0]
    return None if value is None else bytes(value)


def wait_for_lsn_after(conn: pyodbc.Connection, lsn: bytes | None, timeout: float = 60.0) -> bytes:
    """The max LSN once it is greater than ``lsn`` (immediate on the double)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        current = max_lsn(conn)
        if current is not None and (lsn is None or current > lsn):
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"sys.fn_cdc_get_max_lsn() stayed at {lsn!r}; is the CDC capture job running?")
        time.sleep(0.5)


def cdc_changes(
    conn: pyodbc.Connection,
    capture_instance: str,
    row_filter: str = "all",
    from_lsn: bytes | None = None,
    to_lsn: bytes | None = None,
    kind: str = "all",
) -> list[dict[str, Any]]:
    """Rows of cdc.fn_cdc_get_<kind>_changes_<ci> as dicts (whole validity interval by default)."""
    if not re.match(r"^\w+$", capture_instance) or kind not in ("all", "net"):
        raise ValueError(f"bad capture instance {capture_instance!r} or kind {kind!r}")
    low = from_lsn if from_lsn is not None else bytes(conn.execute(SELECT_MIN_LSN, capture_instance).fetchone()[0])
    high = to_lsn if to_lsn is not None else max_lsn(conn)
    cursor = conn.execute(
        f"SELECT * FROM cdc.fn_cdc_get_{kind}_changes_{capture_instance}(?, ?, ?)", low, high, row_filter
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
