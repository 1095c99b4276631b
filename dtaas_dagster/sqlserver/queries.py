"""Every T-SQL statement the product sends to SQL Server, by name.

Rules (DESIGN.md, "T-SQL is named"):

- values are bound parameters (``?``), never formatted into the text;
- identifiers (schema, table, column names) are first checked against the
  catalog by the caller, then bracket-quoted with :func:`quote_identifier`;
- the few statements that need identifiers are small builders here, so a
  reviewer can see every shape of SQL we can send in one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SERVER_INFO = """
SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version,
       CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition,
       DB_NAME() AS database_name,
       @@VERSION AS version_text
"""

DATABASE_OPTIONS = """
SELECT d.snapshot_isolation_state, d.is_cdc_enabled, d.is_read_committed_snapshot_on
FROM sys.databases AS d
WHERE d.name = DB_NAME()
"""

LIST_TABLES = """
SELECT s.name AS schema_name,
       t.name AS table_name,
       SUM(ps.row_count) AS row_estimate
FROM sys.tables AS t
JOIN sys.schemas AS s ON s.schema_id = t.schema_id
LEFT JOIN sys.dm_db_partition_stats AS ps
       ON ps.object_id = t.object_id AND ps.index_id IN (0, 1)
WHERE s.name NOT IN (N'cdc', N'sys')
GROUP BY s.name, t.name
ORDER BY s.name, t.name
"""

TABLE_COLUMNS = """
SELECT c.COLUMN_NAME, c.DATA_TYPE, c.CHARACTER_MAXIMUM_LENGTH, c.NUMERIC_PRECISION,
       c.NUMERIC_SCALE, c.DATETIME_PRECISION, c.IS_NULLABLE, c.ORDINAL_POSITION
FROM INFORMATION_SCHEMA.COLUMNS AS c
WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ?
ORDER BY c.ORDINAL_POSITION
"""

PRIMARY_KEY_COLUMNS = """
SELECT k.COLUMN_NAME
FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS AS tc
JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE AS k
  ON k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
 AND k.TABLE_SCHEMA = tc.TABLE_SCHEMA
 AND k.TABLE_NAME = tc.TABLE_NAME
WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY' AND tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME = ?
ORDER BY k.ORDINAL_POSITION
"""

TABLE_ROW_ESTIMATE = """
SELECT SUM(ps.row_count)
FROM sys.dm_db_partition_stats AS ps
JOIN sys.tables AS t ON t.object_id = ps.object_id
JOIN sys.schemas AS s ON s.schema_id = t.schema_id
WHERE s.name = ? AND t.name = ? AND ps.index_id IN (0, 1)
"""

# Run before the snapshot SELECT on the same connection: a single SELECT under
# SNAPSHOT isolation reads one transactionally consistent version of the table.
SET_SNAPSHOT_ISOLATION = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT"
SET_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"

# Sent in the same batch right after the snapshot SELECT: how many rows SQL Server
# says it sent. arrow-odbc over Driver 18 has been seen to end a result quietly
# when the connection drops mid-result (measured: 6,500 of 10,000 rows, no error),
# so the reader compares this count with what it received.
ROWS_SENT = "SELECT ROWCOUNT_BIG() AS rows_sent"


def snapshot_batch(select_sql: str, *, snapshot_isolation: bool) -> str:
    """The bulk-read batch: [SET SNAPSHOT;] SELECT ...; SELECT ROWCOUNT_BIG()."""
    statements = [SET_SNAPSHOT_ISOLATION] if snapshot_isolation else []
    return ";\n".join([*statements, select_sql, ROWS_SENT]) + ";"


def quote_identifier(name: str) -> str:
    """Bracket-quote one identifier that the caller has already found in the catalog."""
    if not name or "\x00" in name or len(name) > 128:
        raise ValueError(f"not a valid SQL Server identifier: {name!r}")
    return "[" + name.replace("]", "]]") + "]"


def qualified_table(schema: str, table: str) -> str:
    return f"{quote_identifier(schema)}.{quote_identifier(table)}"


def build_snapshot_select(schema: str, table: str, columns: Sequence[str]) -> str:
    """SELECT [c1], [c2], ... FROM [schema].[table]: the full-load read of one table."""
    if not columns:
        raise ValueError(f"no columns selected for {schema}.{table}")
    column_list = ", ".join(quote_identifier(column) for column in columns)
    return f"SELECT {column_list} FROM {qualified_table(schema, table)}"


@dataclass(frozen=True)
class ProfileColumn:
    """A column whose value range or size must be known before the bulk read."""

    name: str
    kind: str  # "range" (MIN/MAX of a datetime2(7)) or "length" (MAX(DATALENGTH) of a (max) column)


def build_profile_select(schema: str, table: str, columns: Sequence[ProfileColumn]) -> str:
    """One pass over the table for MIN/MAX of datetime2(7) columns and the longest (max) value.

    The bulk reader needs both up front: the Arrow type of a datetime2(7)
    column depends on whether every value fits nanoseconds, and arrow-odbc
    needs a bound on the longest text/binary value to size its buffers.
    """
    parts: list[str] = []
    for column in columns:
        quoted = quote_identifier(column.name)
        if column.kind == "range":
            # MIN/MAX come back through pyodbc to the microsecond; DATEPART(nanosecond)
            # of each gives their full fraction. The third is non-zero when some value
            # has a 100 ns digit.
            parts += [
                f"MIN({quoted})", f"MAX({quoted})", f"MAX(DATEPART(nanosecond, {quoted}) % 1000)",
                f"DATEPART(nanosecond, MIN({quoted}))", f"DATEPART(nanosecond, MAX({quoted}))",
            ]
        elif column.kind == "length":
            parts.append(f"MAX(DATALENGTH({quoted}))")
        else:
            raise ValueError(f"unknown profile kind {column.kind!r}")
    return f"SELECT {', '.join(parts)} FROM {qualified_table(schema, table)}"
