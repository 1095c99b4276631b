"""Every statement dtaas sends to Snowflake, named: constants and small builders.

Rules: values are bound parameters (``?``, the connector's qmark style);
identifiers go through :func:`names.quote` after :func:`names.check_identifier`;
stage paths and local file paths, which Snowflake cannot bind in PUT, COPY,
LIST and REMOVE, are built only from tokens dtaas generates and are checked
against :data:`SAFE_PATH` here. Nothing a user or a source table supplies is
formatted into SQL any other way.

Statements that real Snowflake needs and fakesnow (the test server) lacks are
kept as they are and marked ``fakesnow:`` below; docs/snowflake.md lists them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dtaas_dagster.destinations.snowflake.names import TableName, quote
from dtaas_dagster.destinations.snowflake.types import SnowflakeType

SAFE_PATH = re.compile(r"^[A-Za-z0-9_./\-]+$")
SAFE_STAGE_PATH = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")

# Column names dtaas owns in Snowflake (upper case under every identifier_case).
OP, LSN, SEQVAL, COMMIT_TIME = "_DTAAS_OP", "_DTAAS_LSN", "_DTAAS_SEQVAL", "_DTAAS_COMMIT_TIME"
DELETED, DELETED_AT = "_DTAAS_DELETED", "_DTAAS_DELETED_AT"
CHANGE_COLUMNS = (OP, LSN, SEQVAL, COMMIT_TIME)
SOFT_DELETE_COLUMNS = (
    (DELETED, SnowflakeType("BOOLEAN")),
    (DELETED_AT, SnowflakeType("TIMESTAMP_TZ", fraction_digits=9)),
)
STAGING_PREFIX = "_DTAAS_STG_"


@dataclass(frozen=True)
class Statement:
    """One statement: a name for logs and errors, the SQL text, and its bound values."""

    name: str
    sql: str
    params: tuple[object, ...] = ()


def _check_path(path: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(path) or ".." in path.split("/"):
        raise ValueError(f"{what} {path!r} has characters dtaas does not write into SQL; this is a bug")
    return path


def stage_ref(stage: TableName, path: str = "") -> str:
    """``@"DB"."SCHEMA"."STAGE"/path/``: the stage path is a dtaas token, never user text."""
    if not path:
        return f"@{stage.sql}"
    return f"@{stage.sql}/{_check_path(path.strip('/'), SAFE_STAGE_PATH, 'stage path')}/"


def column_list(columns: Sequence[str], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{quote(c)}" for c in columns)


# --------------------------------------------------------------------------- session and objects

BEGIN = Statement("BEGIN", "BEGIN")
COMMIT = Statement("COMMIT", "COMMIT")
ROLLBACK = Statement("ROLLBACK", "ROLLBACK")


# fakesnow: has no CURRENT_WAREHOUSE(), so the probe asks for the role only.
CURRENT_SESSION = Statement("CURRENT_SESSION", "SELECT CURRENT_ROLE()")


def schema_exists(target: TableName) -> Statement:
    return Statement(
        "SCHEMA_EXISTS",
        f"SELECT COUNT(*) FROM {quote(target.database)}.INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = ?",
        (target.schema,),
    )


def create_schema(target: TableName) -> Statement:
    return Statement("CREATE_SCHEMA", f"CREATE SCHEMA IF NOT EXISTS {target.schema_sql}")


def use_schema(target: TableName) -> Statement:
    # The session works in the target's schema (fakesnow's MERGE needs a current schema too).
    return Statement("USE_SCHEMA", f"USE SCHEMA {target.schema_sql}")


def create_stage(stage: TableName) -> Statement:
    # An internal named stage; COPY names the file format, so the stage needs none.
    return Statement("CREATE_STAGE", f"CREATE STAGE IF NOT EXISTS {stage.sql}")


def table_columns(table: TableName) -> Statement:
    return Statement(
        "TABLE_COLUMNS",
        "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE "
        f"FROM {quote(table.database)}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? "
        "ORDER BY ORDINAL_POSITION",
        (table.schema, table.name),
    )


def tables_like(schema_of: TableName, prefix: str) -> Statement:
    """Tables of the schema whose names start with ``prefix`` (LIKE wildcards in it are escaped)."""
    pattern = re.sub(r"([\\%_])", r"\\\1", prefix) + "%"
    return Statement(
        "LIST_TABLES",
        f"SELECT TABLE_NAME FROM {quote(schema_of.database)}.INFORMATION_SCHEMA.TABLES "
        "WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ? ESCAPE '\\\\'",
        (schema_of.schema, pattern),
    )


def create_table(
    table: TableName,
    columns: Sequence[tuple[str, SnowflakeType]],
    *,
    primary_key: Sequence[str] = (),
    transient: bool = False,
) -> Statement:
    """CREATE TABLE IF NOT EXISTS; key columns NOT NULL and recorded as the (informational) primary key."""
    keys = set(primary_key)
    defs = [f"{quote(name)} {kind.sql}{' NOT NULL' if name in keys else ''}" for name, kind in columns]
    if primary_key:
        defs.append(f"PRIMARY KEY ({column_list(primary_key)})")
    kind = "TRANSIENT TABLE" if transient else "TABLE"
    return Statement(
        "CREATE_STAGING_TABLE" if transient else "CREATE_TABLE",
        f"CREATE {kind} IF NOT EXISTS {table.sql} ({', '.join(defs)})",
    )


def drop_table(table: TableName) -> Statement:
    return Statement("DROP_TABLE", f"DROP TABLE IF EXISTS {table.sql}")


def add_column(table: TableName, column: str, kind: SnowflakeType) -> Statement:
    return Statement("ADD_COLUMN", f"ALTER TABLE {table.sql} ADD COLUMN {quote(column)} {kind.sql}")


def widen_column(table: TableName, column: str, kind: SnowflakeType) -> Statement:
    # fakesnow: refuses to change the type of a primary-key column (DuckDB); Snowflake allows it.
    return Statement("WIDEN_COLUMN", f"ALTER TABLE {table.sql} ALTER COLUMN {quote(column)} SET DATA TYPE {kind.sql}")


def count_rows(table: TableName) -> Statement:
    return Statement("COUNT_ROWS", f"SELECT COUNT(*) FROM {table.sql}")


def select_columns(table: TableName, columns: Sequence[str]) -> Statement:
    return Statement("SELECT_TABLE", f"SELECT {column_list(columns)} FROM {table.sql}")


# --------------------------------------------------------------------------- stage


def put_file(local_path: str, stage: TableName, path: str) -> Statement:
    """Upload one Parquet file as it is: AUTO_COMPRESS=FALSE, or Snowflake (and fakesnow) would gzip it."""
    _check_path(local_path, SAFE_PATH, "local file path")
    return Statement(
        "PUT", f"PUT 'file://{local_path}' {stage_ref(stage, path)} AUTO_COMPRESS = FALSE OVERWRITE = TRUE"
    )


def list_stage(stage: TableName) -> Statement:
    # The whole stage, filtered by the caller: fakesnow's LIST accepts no path or PATTERN.
    return Statement("LIST_STAGE", f"LIST {stage_ref(stage)}")


def remove_stage_path(stage: TableName, path: str) -> Statement:
    # fakesnow: has no REMOVE (a syntax error there); Snowflake needs it to delete
    # files that no COPY purged (a run killed between PUT and COPY).
    return Statement("REMOVE_STAGE_FILES", f"REMOVE {stage_ref(stage, path)}")


def copy_into(staging: TableName, stage: TableName, path: str) -> Statement:
    """Load every file under the load's own stage path, by column name, all or nothing.

    The path is unique to one attempt of one load, so it holds exactly the
    files this attempt PUT; ``FILES = (...)`` would say the same on Snowflake,
    and fakesnow only accepts it for external locations. USE_LOGICAL_TYPE keeps
    Parquet's nanosecond timestamps and decimals exact; BINARY_AS_TEXT=FALSE
    keeps binary columns binary. PURGE removes the files once loaded.
    """
    return Statement(
        "COPY_INTO",
        f"COPY INTO {staging.sql} FROM {stage_ref(stage, path)} "
        "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE BINARY_AS_TEXT = FALSE) "
        "MATCH_BY_COLUMN_NAME = CASE_SENSITIVE ON_ERROR = ABORT_STATEMENT PURGE = TRUE",
    )


# --------------------------------------------------------------------------- replace (snapshots)


def delete_all(table: TableName) -> Statement:
    return Statement("DELETE_TARGET", f"DELETE FROM {table.sql}")


def insert_from_staging(
    target: TableName, staging: TableName, columns: Sequence[str], *, soft_delete: bool
) -> Statement:
    """Copy the staged rows into the target (inside the replace transaction)."""
    into, values = column_list(columns), column_list(columns)
    if soft_delete:
        into += f", {quote(DELETED)}, {quote(DELETED_AT)}"
        values += ", FALSE, NULL"
    return Statement("INSERT_TARGET", f"INSERT INTO {target.sql} ({into}) SELECT {values} FROM {staging.sql}")


# --------------------------------------------------------------------------- apply changes (CDC)

# Ties on (LSN, seqval) for one key (a key-changing update logged as delete +
# insert) are broken in SQL Server's __$operation order: delete, insert, update.
_OP_RANK = f"CASE {quote(OP)} WHEN 'delete' THEN 1 WHEN 'insert' THEN 2 ELSE 4 END"


def newest_changes(staging: TableName, columns: Sequence[str], primary_key: Sequence[str]) -> str:
    """The newest change per key from the first LSN not yet applied (one ``?``); update_before never applies."""
    return (
        f"(SELECT {column_list(columns)}, {quote(OP)}, {quote(COMMIT_TIME)} FROM {staging.sql} "
        f"WHERE {quote(OP)} IN ('insert', 'update', 'delete') AND {quote(LSN)} >= ? "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {column_list(primary_key)} "
        f"ORDER BY {quote(LSN)} DESC, {quote(SEQVAL)} DESC, {_OP_RANK} DESC) = 1)"
    )


def _on(primary_key: Sequence[str]) -> str:
    return " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in primary_key)


def merge_changes(
    target: TableName, staging: TableName, columns: Sequence[str], primary_key: Sequence[str], *, soft_delete: bool
) -> Statement:
    """Apply one window's staged changes (``cdc_apply: merge``): newest change per key wins, deletes applied.

    One bound value: the first LSN not yet applied (changes below it were
    applied by an earlier window and are ignored).
    fakesnow: runs this MERGE only outside a transaction (its MERGE writes a
    temporary table, and a DuckDB transaction writes one database); dtaas runs
    it inside one, so the tests against fakesnow use ``cdc_apply: delete_insert``.
    """
    non_keys = [c for c in columns if c not in set(primary_key)]
    sets = [f"t.{quote(c)} = s.{quote(c)}" for c in non_keys]
    into, values = column_list(columns), column_list(columns, "s.")
    if soft_delete:
        on_delete = f"UPDATE SET t.{quote(DELETED)} = TRUE, t.{quote(DELETED_AT)} = s.{quote(COMMIT_TIME)}"
        sets += [f"t.{quote(DELETED)} = FALSE", f"t.{quote(DELETED_AT)} = NULL"]
        into += f", {quote(DELETED)}, {quote(DELETED_AT)}"
        values += ", FALSE, NULL"
    else:
        on_delete = "DELETE"
    update = f"WHEN MATCHED THEN UPDATE SET {', '.join(sets)} " if sets else ""
    return Statement(
        "MERGE_CHANGES",
        f"MERGE INTO {target.sql} AS t USING {newest_changes(staging, columns, primary_key)} AS s "
        f"ON {_on(primary_key)} "
        f"WHEN MATCHED AND s.{quote(OP)} = 'delete' THEN {on_delete} "
        f"{update}"
        f"WHEN NOT MATCHED AND s.{quote(OP)} <> 'delete' THEN INSERT ({into}) VALUES ({values})",
    )


def delete_insert_changes(
    target: TableName, staging: TableName, columns: Sequence[str], primary_key: Sequence[str], *, soft_delete: bool
) -> list[Statement]:
    """The same change as :func:`merge_changes` as plain DML (``cdc_apply: delete_insert``), each with one ``?``.

    Hard deletes: remove every key that has a newest change, then insert the
    newest row of every key whose newest change is not a delete. Soft deletes:
    flag the keys whose newest change is a delete (kept rows only), then replace
    the others. Same final table as the MERGE, in the same transaction.
    """
    newest = newest_changes(staging, columns, primary_key)
    into, values = column_list(columns), column_list(columns, "s.")
    upserts = f"s.{quote(OP)} <> 'delete'"
    statements = []
    if soft_delete:
        statements.append(
            Statement(
                "FLAG_DELETED",
                f"UPDATE {target.sql} AS t SET {quote(DELETED)} = TRUE, {quote(DELETED_AT)} = s.{quote(COMMIT_TIME)} "
                f"FROM {newest} AS s WHERE {_on(primary_key)} AND s.{quote(OP)} = 'delete'",
            )
        )
        into += f", {quote(DELETED)}, {quote(DELETED_AT)}"
        values += ", FALSE, NULL"
        removed = f"{_on(primary_key)} AND {upserts}"
    else:
        removed = _on(primary_key)
    statements.append(Statement("DELETE_CHANGED", f"DELETE FROM {target.sql} AS t USING {newest} AS s WHERE {removed}"))
    statements.append(
        Statement(
            "INSERT_CHANGED", f"INSERT INTO {target.sql} ({into}) SELECT {values} FROM {newest} AS s WHERE {upserts}"
        )
    )
    return statements


# Why not ALTER TABLE ... SWAP WITH for snapshots: SWAP is DDL, and DDL commits
# the open transaction in Snowflake, so the control-table row could not change
# in the same transaction as the data; SWAP also swaps grants and breaks streams
# on the target. DELETE + INSERT in one transaction is all-or-nothing and
# readers see the old rows until COMMIT. (fakesnow also lacks SWAP WITH.)
