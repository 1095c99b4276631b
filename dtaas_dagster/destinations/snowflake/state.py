"""The control table (``_DTAAS_STATE``): one row per target table, changed only inside load transactions.

Columns::

    TARGET_TABLE        "DB"."SCHEMA"."TABLE" (the key)
    SNAPSHOT_PARTITION  the newest snapshot partition key loaded into the table
    LAST_PARTITION      the partition whose load committed last (snapshot or change window)
    APPLIED_LSN         the last LSN whose changes are in the table (to_lsn of the last window)
    NEXT_LSN            changes from this LSN on are not in the table yet (NULL: no CDC baseline)
    PRIMARY_KEY         JSON list of the target's key columns
    COLUMNS             JSON [[source name, Snowflake name], ...] of the loaded columns
    ARROW_SCHEMA        base64 Arrow IPC schema of those columns (source names): load_input casts to it
    LOAD_ID             the load (one attempt of one run) that wrote the row: the compare-and-set token
    RUN_ID, UPDATED_AT  who wrote the row, when

Every change goes through :func:`save` inside the transaction that changes
the data, as a compare-and-set on the row read at the start of that
transaction: if another load changed the row in between, the UPDATE matches
nothing and the transaction is rolled back instead of overwriting newer state.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from dtaas_dagster.destinations.snowflake.names import TableName, quote
from dtaas_dagster.destinations.snowflake.session import Session
from dtaas_dagster.destinations.snowflake.sql import Statement

_COLUMNS = (
    "TARGET_TABLE",
    "SNAPSHOT_PARTITION",
    "LAST_PARTITION",
    "APPLIED_LSN",
    "NEXT_LSN",
    "PRIMARY_KEY",
    "COLUMNS",
    "ARROW_SCHEMA",
    "LOAD_ID",
    "RUN_ID",
)


class ConcurrentLoadError(RuntimeError):
    """Another load changed the table's control row during this load (retry: it re-reads the state)."""


@dataclass(frozen=True)
class TableState:
    target: str
    snapshot_partition: str | None = None
    last_partition: str | None = None
    applied_lsn: str | None = None
    next_lsn: str | None = None
    primary_key: tuple[str, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()
    arrow_schema: str | None = None
    load_id: str | None = None
    run_id: str | None = None

    def schema(self) -> pa.Schema | None:
        if not self.arrow_schema:
            return None
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.arrow_schema)))

    def evolve(self, **changes: Any) -> TableState:
        return replace(self, **changes)


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def create_statement(state_table: TableName) -> Statement:
    return Statement(
        "CREATE_STATE_TABLE",
        f"CREATE TABLE IF NOT EXISTS {state_table.sql} ("
        '"TARGET_TABLE" VARCHAR NOT NULL, "SNAPSHOT_PARTITION" VARCHAR, "LAST_PARTITION" VARCHAR, '
        '"APPLIED_LSN" VARCHAR(20), "NEXT_LSN" VARCHAR(20), "PRIMARY_KEY" VARCHAR, "COLUMNS" VARCHAR, '
        '"ARROW_SCHEMA" VARCHAR, "LOAD_ID" VARCHAR, "RUN_ID" VARCHAR, "UPDATED_AT" TIMESTAMP_TZ(9), '
        'PRIMARY KEY ("TARGET_TABLE"))',
    )


def _select(state_table: TableName, target: TableName) -> Statement:
    return Statement(
        "READ_STATE",
        f'SELECT {", ".join(quote(c) for c in _COLUMNS)} FROM {state_table.sql} WHERE "TARGET_TABLE" = ?',
        (target.sql,),
    )


def read(session: Session, state_table: TableName, target: TableName) -> TableState | None:
    rows = session.rows(_select(state_table, target))
    if not rows:
        return None
    row = dict(zip(_COLUMNS, rows[0], strict=True))
    return TableState(
        target=row["TARGET_TABLE"],
        snapshot_partition=row["SNAPSHOT_PARTITION"],
        last_partition=row["LAST_PARTITION"],
        applied_lsn=row["APPLIED_LSN"],
        next_lsn=row["NEXT_LSN"],
        primary_key=tuple(json.loads(row["PRIMARY_KEY"] or "[]")),
        columns=tuple((a, b) for a, b in json.loads(row["COLUMNS"] or "[]")),
        arrow_schema=row["ARROW_SCHEMA"],
        load_id=row["LOAD_ID"],
        run_id=row["RUN_ID"],
    )


def _values(state: TableState) -> tuple[object, ...]:
    return (
        state.snapshot_partition,
        state.last_partition,
        state.applied_lsn,
        state.next_lsn,
        json.dumps(list(state.primary_key)),
        json.dumps([list(c) for c in state.columns]),
        state.arrow_schema,
        state.load_id,
        state.run_id,
    )


def save(session: Session, state_table: TableName, new: TableState, previous: TableState | None) -> None:
    """Insert or compare-and-set the row; call inside the load's transaction."""
    if previous is None:
        session.run(
            Statement(
                "INSERT_STATE",
                f'INSERT INTO {state_table.sql} ({", ".join(quote(c) for c in _COLUMNS)}, "UPDATED_AT") '
                f"VALUES (?, {', '.join('?' for _ in _COLUMNS[1:])}, CURRENT_TIMESTAMP())",
                (new.target, *_values(new)),
            )
        )
        return
    sets = ", ".join(f"{quote(c)} = ?" for c in _COLUMNS[1:])
    cursor = session.run(
        Statement(
            "UPDATE_STATE",
            f'UPDATE {state_table.sql} SET {sets}, "UPDATED_AT" = CURRENT_TIMESTAMP() '
            'WHERE "TARGET_TABLE" = ? AND "LOAD_ID" IS NOT DISTINCT FROM ?',
            (*_values(new), new.target, previous.load_id),
        )
    )
    if cursor.rowcount != 1:
        raise ConcurrentLoadError(
            f"the control row of {new.target} changed while this load ran (another load of the same table); "
            "nothing was committed. Load one table from one run at a time; a retry re-reads the state."
        )
