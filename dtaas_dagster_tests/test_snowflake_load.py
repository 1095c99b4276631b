"""End to end: `dtaas load` (dagster job execute, step processes) from the SQL Server double into Snowflake.

Snowflake is fakesnow's server as a real process (the connector over HTTP),
or a real account when DTAAS_TEST_SNOWFLAKE_ACCOUNT is set (see
snowflake_fixtures.py). Each test seeds a fresh SQL Server database, writes a
dtaas.yaml with a `type: snowflake` destination, runs the task, and checks the
table in Snowflake. The exactly-once cases of the full load are here; those
of CDC windows are in destinations/test_snowflake_merge.py.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.all_types import ALL_TYPES, assert_same, expected_all_types, seed_all_types
from dtaas_dagster_tests.runs import (
    PASSWORD_ENV,
    dagster_home,
    materializations,
    run_load,
    source_config,
    write_config,
)
from dtaas_dagster_tests.snowflake_fixtures import SnowflakeSchema, SnowflakeTarget

pytestmark = pytest.mark.slow

ROWS = 40


def config_for(sqlserver: Any, database: str, destination: dict[str, Any], *, tables: list[Any] | None = None,
               **task_options: Any) -> dict[str, Any]:
    return {
        "sources": {"src": source_config(sqlserver, database)},
        "destinations": {"wh": destination},
        "tasks": {"t": {"source": "src", "destination": "wh", "tables": tables or ["dbo.orders"],
                        "retry": {"max_retries": 0}, **task_options}},
    }


def orders(rows: int = ROWS, *, version: int = 1) -> pa.Table:
    return pa.table({
        "id": pa.array(range(1, rows + 1), pa.int32()),
        "customer": pa.array([f"customer {i} v{version}" for i in range(1, rows + 1)]),
        "amount": pa.array([i * 100 + version for i in range(1, rows + 1)], pa.int64()),
    })


def seed_orders(sqlserver_db: Any, table: pa.Table) -> None:
    sqlserver_db.seed_table("dbo", "orders", table, columns={"id": "int NOT NULL", "customer": "nvarchar(60)"},
                            primary_key=["id"])


def replace_orders(sqlserver_db: Any, table: pa.Table) -> None:
    with sqlserver_db.connect() as connection:
        connection.cursor().execute("DROP TABLE dbo.orders")
    seed_orders(sqlserver_db, table)


def target_rows(schema: SnowflakeSchema, table: str = "ORDERS") -> list[tuple[Any, ...]]:
    return schema.query(f'SELECT "ID", "CUSTOMER", "AMOUNT" FROM "{table}" ORDER BY "ID"')


def expected_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return [(r["id"], r["customer"], r["amount"]) for r in table.to_pylist()]


def load(tmp_path: Path, sqlserver: Any, config: dict[str, Any], *, partition: str | None = None,
         env: dict[str, str] | None = None) -> Any:
    return run_load(task="t", config_path=write_config(tmp_path, config), home=dagster_home(tmp_path),
                    password=sqlserver.password, partition=partition, env=env)


def leftovers(schema: SnowflakeSchema) -> list[str]:
    return [t for t in schema.tables() if t.startswith("_DTAAS_STG_")]


# --------------------------------------------------------------------------- types


def fakesnow_storage(expected: pa.Table) -> pa.Table:
    """What fakesnow gives back for ``expected``: its documented gaps (docs/snowflake.md#fakesnow), nothing else.

    - TIMESTAMP and TIME are DuckDB's microseconds: the 100 ns digit is rounded away
      (a TIME of 23:59:59.9999999 comes back as 24:00:00);
    - a NULL TIMESTAMP comes back as 1970-01-01 (fakesnow encodes its result without the null mask).
    A real account must give back ``expected`` exactly.
    """
    columns = []
    for field, column in zip(expected.schema, expected.columns, strict=True):
        values = column.to_pylist()
        if pa.types.is_timestamp(field.type):
            ints = column.cast(pa.int64()).to_pylist()
            per_us = {"ns": 1000, "us": 1, "ms": 1, "s": 1}[field.type.unit]
            values = [0 if v is None else (v + per_us // 2) // per_us * per_us for v in ints]
            column = pa.array(values, pa.int64()).cast(field.type)
        elif pa.types.is_time64(field.type):
            ints = column.cast(pa.int64()).to_pylist()
            values = [None if v is None else (v + 500) // 1000 * 1000 for v in ints]
            column = pa.array(values, pa.int64()).cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=expected.schema)


def test_every_type_round_trips_into_snowflake(
    sqlserver: Any, sqlserver_db: Any, snowflake: SnowflakeTarget, snowflake_schema: SnowflakeSchema, tmp_path: Path
) -> None:
    seed_all_types(sqlserver_db)
    tables = [{"name": "dbo.all_types", "datetime2": {"c_sentinel_text": "string"}}]
    outcome = load(tmp_path, sqlserver, config_for(sqlserver, sqlserver_db.name, snowflake_schema.destination(),
                                                  tables=tables))
    assert outcome.ok, outcome.output[-6000:]

    # the column types Snowflake got (docs/snowflake.md#types)
    types = dict(snowflake_schema.query(
        f'SELECT COLUMN_NAME, DATA_TYPE FROM "{snowflake_schema.database}".INFORMATION_SCHEMA.COLUMNS '
        "WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ALL_TYPES'", (snowflake_schema.schema,)))
    assert types["C_DECIMAL"] == "NUMBER" and types["C_BIT"] == "BOOLEAN" and types["C_VARBINARY_MAX"] == "BINARY"
    assert types["C_DATETIME2_7"] == "TIMESTAMP_NTZ" and types["C_DTO"] == "TIMESTAMP_TZ"
    assert types["C_NVARCHAR_MAX"] == "TEXT" and types["C_GUID"] == "TEXT" and types["C_TIME"] == "TIME"
    precision = dict((r[0], (r[1], r[2])) for r in snowflake_schema.query(
        f'SELECT COLUMN_NAME, NUMERIC_PRECISION, NUMERIC_SCALE FROM "{snowflake_schema.database}".'
        "INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ALL_TYPES'", (snowflake_schema.schema,)))
    assert precision["C_DECIMAL"] == (38, 10) and precision["C_MONEY"] == (19, 4) and precision["C_TINYINT"] == (3, 0)

    # value by value, through the IO manager's reader (what a downstream asset gets)
    from dtaas_dagster.destinations.snowflake.connection import open_connection
    from dtaas_dagster.destinations.snowflake.names import TableName
    from dtaas_dagster.destinations.snowflake.reader import read_table
    from dtaas_dagster.destinations.snowflake.session import Session
    from dtaas_dagster.destinations.snowflake.io_manager import SnowflakeIOManager

    manager = SnowflakeIOManager(**_io_fields(snowflake_schema))
    target = TableName(snowflake_schema.database, snowflake_schema.schema, "ALL_TYPES")
    with open_connection(manager._connection_settings()) as connection:
        table = read_table(Session(connection), target, state_table=target.sibling("_DTAAS_STATE"), what="all_types")
    expected = expected_all_types()
    assert_same(table.sort_by("id"), fakesnow_storage(expected) if snowflake.is_fake else expected)
    # the 100 ns digit and the NULLs, checked in SQL where fakesnow can hold them: exact on a real account
    nulls = snowflake_schema.query('SELECT COUNT(*) FROM "ALL_TYPES" WHERE "ID" = 3 AND "C_DATETIME2_7" IS NULL '
                                   'AND "C_DTO" IS NULL AND "C_TIME" IS NULL AND "C_DATETIME" IS NULL')
    assert nulls == [(1,)]
    assert len(ALL_TYPES) + 1 == len(table.column_names)


def _io_fields(schema: SnowflakeSchema) -> dict[str, Any]:
    block = schema.destination()
    return {"account": block["account"], "user": block["user"], "password_env": block.get("password_env"),
            "private_key_file": block.get("private_key_file"), "host": block.get("host"), "port": block.get("port"),
            "protocol": block.get("protocol"), "role": block.get("role"), "warehouse": block.get("warehouse"),
            "database_template": schema.database, "schema_template": schema.schema}
