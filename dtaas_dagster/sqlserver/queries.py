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


# The same three facts for many tables of one schema at once (a step's tables are
# described ahead in bulk, see facts_session.py); the table names are bound
# parameters, the builders below only repeat the placeholder.
def build_columns_of_tables(count: int) -> str:
    """TABLE_COLUMNS for ``count`` tables of one schema: parameters schema, then the table names."""
    return f"""
SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.CHARACTER_MAXIMUM_LENGTH, c.NUMERIC_PRECISION,
       c.NUMERIC_SCALE, c.DATETIME_PRECISION, c.IS_NULLABLE, c.ORDINAL_POSITION
FROM INFORMATION_SCHEMA.COLUMNS AS c
WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME IN ({_placeholders(count)})
ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION
"""


def build_primary_keys_of_tables(count: int) -> str:
    """PRIMARY_KEY_COLUMNS for ``count`` tables of one schema: parameters schema, then the table names."""
    return f"""
SELECT k.TABLE_NAME, k.COLUMN_NAME
FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS AS tc
JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE AS k
  ON k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
 AND k.TABLE_SCHEMA = tc.TABLE_SCHEMA
 AND k.TABLE_NAME = tc.TABLE_NAME
WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY' AND tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME IN ({_placeholders(count)})
ORDER BY k.TABLE_NAME, k.ORDINAL_POSITION
"""


def build_row_estimates_of_tables(count: int) -> str:
    """TABLE_ROW_ESTIMATE for ``count`` tables of one schema: parameters schema, then the table names."""
    return f"""
SELECT t.name, SUM(ps.row_count)
FROM sys.dm_db_partition_stats AS ps
JOIN sys.tables AS t ON t.object_id = ps.object_id
JOIN sys.schemas AS s ON s.schema_id = t.schema_id
WHERE s.name = ? AND t.name IN ({_placeholders(count)}) AND ps.index_id IN (0, 1)
GROUP BY t.name
"""


def _placeholders(count: int) -> str:
    # SQL Server takes at most 2,100 parameters per statement.
    if not 1 <= count <= 2_000:
        raise ValueError(f"between 1 and 2000 tables per catalog query, not {count}")
    return ", ".join("?" * count)


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
    return f"SELECT {', '.join(_profile_parts(columns))} FROM {qualified_table(schema, table)}"


def _profile_parts(columns: Sequence[ProfileColumn]) -> list[str]:
    parts: list[str] = []
    for column in columns:
        quoted = quote_identifier(column.name)
        if column.kind == "range":
            # MIN/MAX come back through pyodbc to the microsecond; DATEPART(nanosecond)
            # of each gives their full fraction. The third is non-zero when some value
            # has a 100 ns digit.
            parts += [
                f"MIN({quoted})",
                f"MAX({quoted})",
                f"MAX(DATEPART(nanosecond, {quoted}) % 1000)",
                f"DATEPART(nanosecond, MIN({quoted}))",
                f"DATEPART(nanosecond, MAX({quoted}))",
            ]
        elif column.kind == "length":
            parts.append(f"MAX(DATALENGTH({quoted}))")
        else:
            raise ValueError(f"unknown profile kind {column.kind!r}")
    return parts


# --------------------------------------------------------------------------- Change Data Capture
# LSNs travel as bound parameters: pyodbc binds bytes as binary(10); arrow-odbc binds only
# text, so its batches declare binary(10) variables from 20 hex digits (CONVERT style 2).

CDC_MAX_LSN = "SELECT sys.fn_cdc_get_max_lsn() AS max_lsn"
CDC_MIN_LSN = "SELECT sys.fn_cdc_get_min_lsn(?) AS min_lsn"

# Every capture instance of the database with its source table; two per table after DDL.
CAPTURE_INSTANCES = """
SELECT s.name AS source_schema, t.name AS source_table, ct.capture_instance, ct.start_lsn, ct.create_date
FROM cdc.change_tables AS ct
JOIN sys.tables AS t ON t.object_id = ct.source_object_id
JOIN sys.schemas AS s ON s.schema_id = t.schema_id
ORDER BY s.name, t.name, ct.create_date
"""

CAPTURED_COLUMNS = """
SELECT cc.column_name
FROM cdc.captured_columns AS cc
JOIN cdc.change_tables AS ct ON ct.object_id = cc.object_id
WHERE ct.capture_instance = ?
ORDER BY cc.column_ordinal
"""


def build_change_facts(*, with_key: bool) -> str:
    """One batch for what a change window's plan needs, one result set each: [the source
    table's primary key columns (params: schema, table),] the captured columns (capture
    instance), the change table's columns ('cdc', change table name) and the instance's min
    LSN (capture instance). One round trip instead of four."""
    statements = [PRIMARY_KEY_COLUMNS] if with_key else []
    statements += [CAPTURED_COLUMNS, TABLE_COLUMNS, CDC_MIN_LSN]
    return ";\n".join(["SET NOCOUNT ON", *(s.strip() for s in statements)]) + ";"


def build_change_facts_of_windows(count: int) -> str:
    """build_change_facts for ``count`` change windows of source tables of one schema, one result
    set each, every row led by its table or capture instance: the source tables' primary key
    columns (params: schema, the table names), the captured columns (the capture instances), the
    change tables' columns ('cdc', the change table names) and the instances' min LSNs (per
    instance: its name, its name). A step's windows are described ahead in one round trip
    (facts_session.py)."""
    captured = f"""
SELECT ct.capture_instance, cc.column_name
FROM cdc.captured_columns AS cc
JOIN cdc.change_tables AS ct ON ct.object_id = cc.object_id
WHERE ct.capture_instance IN ({_placeholders(count)})
ORDER BY ct.capture_instance, cc.column_ordinal
"""
    min_lsns = "\nUNION ALL\n".join(["SELECT ? AS capture_instance, sys.fn_cdc_get_min_lsn(?) AS min_lsn"] * count)
    statements = [build_primary_keys_of_tables(count), captured, build_columns_of_tables(count), min_lsns]
    return ";\n".join(["SET NOCOUNT ON", *(s.strip() for s in statements)]) + ";"


MAP_TIME_TO_LSN = "SELECT sys.fn_cdc_map_time_to_lsn(N'smallest greater than or equal', ?) AS lsn"

# The server's offset from UTC now: cdc.lsn_time_mapping keeps local commit times.
SERVER_UTC_OFFSET_MINUTES = "SELECT DATEDIFF(minute, SYSUTCDATETIME(), SYSDATETIME()) AS offset_minutes"


def change_table(capture_instance: str) -> str:
    """cdc.[<instance>_CT], the change table of a capture instance found in cdc.change_tables."""
    return f"{quote_identifier('cdc')}.{quote_identifier(capture_instance + '_CT')}"


def changes_function(capture_instance: str) -> str:
    """cdc.[fn_cdc_get_all_changes_<instance>] for a capture instance found in cdc.change_tables."""
    return f"{quote_identifier('cdc')}.{quote_identifier('fn_cdc_get_all_changes_' + capture_instance)}"


def build_cdc_probe(capture_instances: Sequence[str]) -> str:
    """One batch for a sensor tick: the max LSN, then per capture instance its min LSN and the
    first change at or after a given LSN (parameters per instance: name, name, from LSN).

    Every instance is one SELECT of a UNION ALL, so a tick is one round trip whatever
    the number of tables.
    """
    parts = [
        "SELECT ? AS capture_instance, sys.fn_cdc_get_min_lsn(?) AS min_lsn, "
        f"(SELECT MIN(c.__$start_lsn) FROM {change_table(name)} AS c "
        "WHERE c.__$start_lsn >= ? AND c.__$start_lsn <= @max_lsn) AS first_change_lsn"
        for name in capture_instances
    ]
    statements = [
        "SET NOCOUNT ON",
        "DECLARE @max_lsn binary(10) = sys.fn_cdc_get_max_lsn()",
        "SELECT @max_lsn AS max_lsn",
    ]
    if parts:
        statements.append("\nUNION ALL\n".join(parts))
    return ";\n".join(statements) + ";"


def build_cdc_lag_probe(capture_instances: Sequence[str]) -> str:
    """One batch for lag and retention headroom (``dtaas health``, the CDC asset checks).

    First result: the max LSN, the server's UTC time and its offset from UTC (minutes).
    Then per capture instance (parameters per instance: name, name, the first LSN not
    yet loaded): its min LSN, the first change at or after that LSN (up to the max
    LSN) and that change's commit time (``cdc.lsn_time_mapping``, server local time).
    """
    parts = [
        "SELECT ? AS capture_instance, sys.fn_cdc_get_min_lsn(?) AS min_lsn, f.first_lsn, "
        "m.tran_end_time "
        f"FROM (SELECT MIN(c.__$start_lsn) AS first_lsn FROM {change_table(name)} AS c "
        "WHERE c.__$start_lsn >= ? AND c.__$start_lsn <= @max_lsn) AS f "
        "LEFT JOIN cdc.lsn_time_mapping AS m ON m.start_lsn = f.first_lsn"
        for name in capture_instances
    ]
    statements = [
        "SET NOCOUNT ON",
        "DECLARE @max_lsn binary(10) = sys.fn_cdc_get_max_lsn()",
        "SELECT @max_lsn AS max_lsn, SYSUTCDATETIME() AS now_utc, "
        "DATEDIFF(minute, SYSUTCDATETIME(), SYSDATETIME()) AS utc_offset_minutes",
    ]
    if parts:
        statements.append("\nUNION ALL\n".join(parts))
    return ";\n".join(statements) + ";"


# The cleanup job's retention (minutes; a row with job_type cleanup). sys.sp_cdc_help_jobs needs
# db_owner; msdb.dbo.cdc_jobs is the fallback for a login granted SELECT on it.
CDC_JOBS = "EXEC sys.sp_cdc_help_jobs"
CDC_CLEANUP_RETENTION_MSDB = """
SELECT j.retention
FROM msdb.dbo.cdc_jobs AS j
WHERE j.database_id = DB_ID() AND j.job_type = N'cleanup'
"""


CHANGE_META = ("__$start_lsn", "__$seqval", "__$operation")


def build_changes_batch(capture_instance: str, columns: Sequence[str]) -> str:
    """The bulk read of one change window (parameters: from LSN, to LSN as 20 hex digits).

    Rows come in commit order, ``(__$start_lsn, __$seqval, __$operation)``, with
    update before-images; the commit time joins from cdc.lsn_time_mapping
    (local time, converted to UTC by the server's current offset). Ends with
    ROWCOUNT_BIG() for the completeness check.
    """
    if not columns:
        raise ValueError(f"capture instance {capture_instance} has no columns to read")
    column_list = ", ".join(f"c.{quote_identifier(name)}" for name in columns)
    select = (
        "SELECT c.__$start_lsn AS [__dtaas_lsn], c.__$seqval AS [__dtaas_seqval], "
        "c.__$operation AS [__dtaas_operation], "
        "DATEADD(minute, @utc_offset, m.tran_end_time) AS [__dtaas_commit_time], "
        f"{column_list} "
        f"FROM {changes_function(capture_instance)}(@from_lsn, @to_lsn, N'all update old') AS c "
        "LEFT JOIN cdc.lsn_time_mapping AS m ON m.start_lsn = c.__$start_lsn "
        "ORDER BY c.__$start_lsn, c.__$seqval, c.__$operation"
    )
    return (
        ";\n".join(
            [
                "SET NOCOUNT ON",
                "DECLARE @from_lsn binary(10) = CONVERT(binary(10), ?, 2)",
                "DECLARE @to_lsn binary(10) = CONVERT(binary(10), ?, 2)",
                "DECLARE @utc_offset int = DATEDIFF(minute, SYSDATETIME(), SYSUTCDATETIME())",
                select,
                ROWS_SENT,
            ]
        )
        + ";"
    )


def build_changes_profile(capture_instance: str, columns: Sequence[ProfileColumn]) -> str:
    """The profile query (see build_profile_select) over one change window (params: from, to LSN)."""
    parts = _profile_parts(columns)
    return (
        ";\n".join(
            [
                "SET NOCOUNT ON",
                "DECLARE @from_lsn binary(10) = CONVERT(binary(10), ?, 2)",
                "DECLARE @to_lsn binary(10) = CONVERT(binary(10), ?, 2)",
                f"SELECT {', '.join(parts)} FROM {changes_function(capture_instance)}"
                "(@from_lsn, @to_lsn, N'all update old') AS c",
            ]
        )
        + ";"
    )
