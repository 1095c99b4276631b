"""Helpers for the Snowflake IO manager tests: streams built from Arrow tables, the manager, reading back.

Change streams carry the documented change columns (``_dtaas_op``,
``_dtaas_lsn`` and ``_dtaas_seqval`` as 20 lower-case hex digits,
``_dtaas_commit_time`` in UTC), as the CDC reader writes them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pyarrow as pa

from dtaas_dagster.config import SnowflakeDestination, TaskConfig
from dtaas_dagster.destinations.snowflake import SnowflakeIOManager
from dtaas_dagster.destinations.snowflake.connection import open_connection
from dtaas_dagster.destinations.snowflake.names import TableName
from dtaas_dagster.destinations.snowflake.reader import read_table
from dtaas_dagster.destinations.snowflake.session import Session
from dtaas_dagster.stream import TableRef, TableStream
from dtaas_dagster_tests.snowflake_fixtures import SnowflakeSchema

KEY = dg.AssetKey(["t", "dbo", "orders"])
SOURCE_TYPES = {"id": "int", "name": "nvarchar(40)", "qty": "int"}
SNAPSHOT_1 = "2026-12-01T000000Z-full-r000001"
SNAPSHOT_2 = "2026-12-02T000000Z-full-r000002"
EPOCH = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def manager(target: SnowflakeSchema, *, task: dict[str, Any] | None = None, **overrides: Any) -> SnowflakeIOManager:
    """The IO manager a task with this destination gets (through the config models)."""
    destination = SnowflakeDestination(**target.destination(**overrides))
    task_config = TaskConfig(source="s", destination="d", tables=["dbo.orders"], **(task or {}))
    return SnowflakeIOManager.from_destination(destination, task_config)


def lsn(n: int) -> str:
    return format(n, "020x")


def orders(rows: list[tuple[int, str, int]]) -> pa.Table:
    ids, names, qty = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table(
        {"id": pa.array(ids, pa.int32()), "name": pa.array(names, pa.string()), "qty": pa.array(qty, pa.int32())}
    )


def snapshot(
    table: pa.Table,
    partition: str,
    *,
    cdc_start: int | None = None,
    name: str = "orders",
    source_types: dict[str, str] | None = None,
    key: tuple[str, ...] = ("id",),
) -> TableStream:
    return TableStream(
        TableRef("sales", "dbo", name),
        table.schema,
        iter(table.to_batches(max_chunksize=7)),
        partition,
        estimated_rows=table.num_rows,
        variables={"taskName": "t"},
        source_types=source_types or SOURCE_TYPES,
        primary_key=key,
        # cdc_start: the first LSN the snapshot lacks; the stream records the one before it
        cdc={"start_lsn": lsn(cdc_start - 1)} if cdc_start is not None else {},
    )


def changes(
    rows: list[tuple[str, int, int, int, str | None, int | None]],
    *,
    window: tuple[int, int],
    partition: str,
    name: str = "orders",
) -> TableStream:
    """A change partition; rows are (op, lsn, seqval, id, name, qty) in CDC order."""
    table = pa.table(
        {
            "id": pa.array([r[3] for r in rows], pa.int32()),
            "name": pa.array([r[4] for r in rows], pa.string()),
            "qty": pa.array([r[5] for r in rows], pa.int32()),
            "_dtaas_op": pa.array([r[0] for r in rows], pa.string()),
            "_dtaas_lsn": pa.array([lsn(r[1]) for r in rows], pa.string()),
            "_dtaas_seqval": pa.array([lsn(r[2]) for r in rows], pa.string()),
            "_dtaas_commit_time": pa.array(
                [EPOCH + dt.timedelta(seconds=r[1]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    return TableStream(
        TableRef("sales", "dbo", name),
        table.schema,
        iter(table.to_batches(max_chunksize=5)),
        partition,
        variables={"taskName": "t"},
        source_types=SOURCE_TYPES,
        primary_key=("id",),
        kind="cdc",
        cdc={"capture_instance": f"dbo_{name}", "from_lsn": lsn(window[0]), "to_lsn": lsn(window[1])},
    )


def write(io: SnowflakeIOManager, stream: TableStream, *, run_id: str = "run00001", attempt: int = 0) -> dict[str, Any]:
    metadata = io.write_stream(
        stream, asset_key=KEY, partition_key=stream.partition_key, run_id=run_id, attempt=attempt
    )
    return {k: v.value for k, v in metadata.items()}


def read(io: SnowflakeIOManager, schema: SnowflakeSchema, table: str = "ORDERS") -> pa.Table:
    target = TableName(schema.database, schema.schema, table)
    with open_connection(io._connection_settings()) as connection:
        return read_table(
            Session(connection),
            target,
            state_table=target.sibling(io.state_table),
            what=table,
            soft_delete=io.delete_mode == "soft",
        )


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def control_row(schema: SnowflakeSchema, table: str = "ORDERS") -> dict[str, Any]:
    target = f'"{schema.database}"."{schema.schema}"."{table}"'
    names = ["SNAPSHOT_PARTITION", "LAST_PARTITION", "APPLIED_LSN", "NEXT_LSN", "PRIMARY_KEY"]
    found = schema.query(f'SELECT {", ".join(names)} FROM "_DTAAS_STATE" WHERE TARGET_TABLE = ?', (target,))
    return dict(zip(names, found[0], strict=True)) if found else {}
