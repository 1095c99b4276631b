"""The load log (``_DTAAS_STATE_LOADS``): one row per committed load of a partition into a target table.

A Snowflake table holds the state after its newest load, not one copy per
partition, so there is no per-partition manifest to check. The load log is its
counterpart: the row is inserted in the same transaction as the data (the
replace or the MERGE) and the control row, so it exists exactly when that
partition's rows are in the table. The ``manifest`` asset check reads it
(``SnowflakeIOManager.verify_partition``); people can query it too.

Columns::

    TARGET_TABLE     "DB"."SCHEMA"."TABLE"
    PARTITION_KEY    the Dagster partition (a snapshot, or a CDC window)
    KIND             snapshot or changes
    ROWS_LOADED      rows staged and checked by COPY (a window: its change rows)
    FILES            Parquet files staged
    FROM_LSN, TO_LSN the change window (NULL for a snapshot)
    APPLIED          FALSE for a window that was already applied (staged, changed nothing)
    LOAD_ID, RUN_ID  which attempt of which run
    LOADED_AT        commit time
"""

from __future__ import annotations

from dataclasses import dataclass

from dtaas_dagster.destinations.snowflake.names import TableName
from dtaas_dagster.destinations.snowflake.session import Session
from dtaas_dagster.destinations.snowflake.sql import Statement

SUFFIX = "_LOADS"


@dataclass(frozen=True)
class LoadRecord:
    target: str
    partition_key: str
    kind: str
    rows: int
    files: int
    from_lsn: str | None
    to_lsn: str | None
    applied: bool
    load_id: str
    run_id: str


def create_statement(loads_table: TableName) -> Statement:
    return Statement(
        "CREATE_LOADS_TABLE",
        f"CREATE TABLE IF NOT EXISTS {loads_table.sql} ("
        '"TARGET_TABLE" VARCHAR NOT NULL, "PARTITION_KEY" VARCHAR NOT NULL, "KIND" VARCHAR, '
        '"ROWS_LOADED" NUMBER(38,0), '
        '"FILES" NUMBER(38,0), "FROM_LSN" VARCHAR(20), "TO_LSN" VARCHAR(20), "APPLIED" BOOLEAN, "LOAD_ID" VARCHAR, '
        '"RUN_ID" VARCHAR, "LOADED_AT" TIMESTAMP_TZ(9))',
    )


def record(session: Session, loads_table: TableName, load: LoadRecord) -> None:
    """Insert the load's row; call inside the load's transaction."""
    session.run(
        Statement(
            "INSERT_LOAD",
            f'INSERT INTO {loads_table.sql} ("TARGET_TABLE", "PARTITION_KEY", "KIND", "ROWS_LOADED", "FILES", '
            '"FROM_LSN", "TO_LSN", "APPLIED", "LOAD_ID", "RUN_ID", "LOADED_AT") '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP())",
            (
                load.target,
                load.partition_key,
                load.kind,
                load.rows,
                load.files,
                load.from_lsn,
                load.to_lsn,
                load.applied,
                load.load_id,
                load.run_id,
            ),
        )
    )


def newest(session: Session, loads_table: TableName, target: TableName, partition_key: str) -> LoadRecord | None:
    """The newest committed load of ``partition_key`` into ``target`` (None when there is none)."""
    rows = session.rows(
        Statement(
            "READ_LOAD",
            'SELECT "TARGET_TABLE", "PARTITION_KEY", "KIND", "ROWS_LOADED", "FILES", "FROM_LSN", "TO_LSN", "APPLIED", '
            f'"LOAD_ID", "RUN_ID" FROM {loads_table.sql} WHERE "TARGET_TABLE" = ? AND "PARTITION_KEY" = ? '
            'ORDER BY "LOADED_AT" DESC LIMIT 1',
            (target.sql, partition_key),
        )
    )
    if not rows:
        return None
    t, p, kind, count, files, from_lsn, to_lsn, applied, load_id, run_id = rows[0]
    return LoadRecord(
        str(t),
        str(p),
        str(kind),
        int(count or 0),
        int(files or 0),
        from_lsn,
        to_lsn,
        bool(applied),
        str(load_id),
        str(run_id),
    )
