"""End to end: `dtaas load` (dagster job execute, step processes) from the SQL Server double into Snowflake.

Snowflake is fakesnow's server as a real process (the connector over HTTP),
or a real account when DTAAS_TEST_SNOWFLAKE_ACCOUNT is set (see
snowflake_fixtures.py). Each test seeds a fresh SQL Server database, writes a
dtaas.yaml with a `type: snowflake` destination, runs the task, and checks the
table in Snowflake. The exactly-once cases of the full load are here; those
of CDC windows are in destinations/test_snowflake_merge.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from dtaas_dagster.destinations.snowflake.names import TableName, object_slug
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROWS = 40


def config_for(
    sqlserver: Any, database: str, destination: dict[str, Any], *, tables: list[Any] | None = None, **task_options: Any
) -> dict[str, Any]:
    return {
        "sources": {"src": source_config(sqlserver, database)},
        "destinations": {"wh": destination},
        "tasks": {
            "t": {
                "source": "src",
                "destination": "wh",
                "tables": tables or ["dbo.orders"],
                "retry": {"max_retries": 0},
                **task_options,
            }
        },
    }


def orders(rows: int = ROWS, *, version: int = 1) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(1, rows + 1), pa.int32()),
            "customer": pa.array([f"customer {i} v{version}" for i in range(1, rows + 1)]),
            "amount": pa.array([i * 100 + version for i in range(1, rows + 1)], pa.int64()),
        }
    )


def seed_orders(sqlserver_db: Any, table: pa.Table) -> None:
    sqlserver_db.seed_table(
        "dbo", "orders", table, columns={"id": "int", "customer": "nvarchar(60)"}, primary_key=["id"]
    )


def replace_orders(sqlserver_db: Any, table: pa.Table) -> None:
    """The source table's rows become ``table``'s (DELETE + INSERT in SQL Server)."""
    with sqlserver_db.connect() as connection:
        cursor = connection.cursor()
        cursor.execute("DELETE FROM dbo.orders")
        for row in table.to_pylist():
            cursor.execute(
                "INSERT INTO dbo.orders (id, customer, amount) VALUES (?, ?, ?)",
                row["id"],
                row["customer"],
                row["amount"],
            )
        connection.commit()


def target_rows(schema: SnowflakeSchema, table: str = "ORDERS") -> list[tuple[Any, ...]]:
    return schema.query(f'SELECT "ID", "CUSTOMER", "AMOUNT" FROM "{table}" ORDER BY "ID"')


def expected_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return [(r["id"], r["customer"], r["amount"]) for r in table.to_pylist()]


def load(
    tmp_path: Path,
    sqlserver: Any,
    config: dict[str, Any],
    *,
    partition: str | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    return run_load(
        task="t",
        config_path=write_config(tmp_path, config),
        home=dagster_home(tmp_path),
        password=sqlserver.password,
        partition=partition,
        env=env,
    )


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
    outcome = load(
        tmp_path, sqlserver, config_for(sqlserver, sqlserver_db.name, snowflake_schema.destination(), tables=tables)
    )
    assert outcome.ok, outcome.output[-6000:]

    # the column types Snowflake got (docs/snowflake.md#types)
    types = dict(
        snowflake_schema.query(
            f'SELECT COLUMN_NAME, DATA_TYPE FROM "{snowflake_schema.database}".INFORMATION_SCHEMA.COLUMNS '
            "WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ALL_TYPES'",
            (snowflake_schema.schema,),
        )
    )
    assert types["C_DECIMAL"] == "NUMBER" and types["C_BIT"] == "BOOLEAN" and types["C_VARBINARY_MAX"] == "BINARY"
    assert types["C_DATETIME2_7"] == "TIMESTAMP_NTZ" and types["C_DTO"] == "TIMESTAMP_TZ"
    assert types["C_NVARCHAR_MAX"] == "TEXT" and types["C_GUID"] == "TEXT" and types["C_TIME"] == "TIME"
    precision = dict(
        (r[0], (r[1], r[2]))
        for r in snowflake_schema.query(
            f'SELECT COLUMN_NAME, NUMERIC_PRECISION, NUMERIC_SCALE FROM "{snowflake_schema.database}".'
            "INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ALL_TYPES'",
            (snowflake_schema.schema,),
        )
    )
    assert precision["C_DECIMAL"] == (38, 10) and precision["C_MONEY"] == (19, 4) and precision["C_TINYINT"] == (3, 0)

    # value by value, through the IO manager's reader (what a downstream asset gets)
    from dtaas_dagster.destinations.snowflake.connection import open_connection
    from dtaas_dagster.destinations.snowflake.io_manager import SnowflakeIOManager
    from dtaas_dagster.destinations.snowflake.names import TableName
    from dtaas_dagster.destinations.snowflake.reader import read_table
    from dtaas_dagster.destinations.snowflake.session import Session

    manager = SnowflakeIOManager(**_io_fields(snowflake_schema))
    target = TableName(snowflake_schema.database, snowflake_schema.schema, "ALL_TYPES")
    with open_connection(manager._connection_settings()) as connection:
        table = read_table(Session(connection), target, state_table=target.sibling("_DTAAS_STATE"), what="all_types")
    expected = expected_all_types()
    assert_same(table.sort_by("id"), fakesnow_storage(expected) if snowflake.is_fake else expected)
    # the 100 ns digit and the NULLs, checked in SQL where fakesnow can hold them: exact on a real account
    nulls = snowflake_schema.query(
        'SELECT COUNT(*) FROM "ALL_TYPES" WHERE "ID" = 3 AND "C_DATETIME2_7" IS NULL '
        'AND "C_DTO" IS NULL AND "C_TIME" IS NULL AND "C_DATETIME" IS NULL'
    )
    assert nulls == [(1,)]
    assert len(ALL_TYPES) + 1 == len(table.column_names)


def _io_fields(schema: SnowflakeSchema) -> dict[str, Any]:
    block = schema.destination()
    return {
        "account": block["account"],
        "user": block["user"],
        "password_env": block.get("password_env"),
        "private_key_file": block.get("private_key_file"),
        "host": block.get("host"),
        "port": block.get("port"),
        "protocol": block.get("protocol"),
        "role": block.get("role"),
        "warehouse": block.get("warehouse"),
        "database_template": schema.database,
        "schema_template": schema.schema,
    }


# --------------------------------------------------------------------------- exactly once (full load)


def snapshot_partition(home: Path) -> str:
    events = materializations(home, ["t", "dbo", "orders"])
    return events[-1].partition


def control(schema: SnowflakeSchema) -> tuple[Any, ...]:
    found = schema.query('SELECT "SNAPSHOT_PARTITION", "LOAD_ID" FROM "_DTAAS_STATE"')
    assert len(found) == 1
    return found[0]


def test_a_rerun_replaces_the_partition_once_and_an_older_partition_is_refused(
    sqlserver: Any, sqlserver_db: Any, snowflake_schema: SnowflakeSchema, tmp_path: Path
) -> None:
    v1, v2, v3 = orders(version=1), orders(version=2), orders(ROWS + 5, version=3)
    seed_orders(sqlserver_db, v1)
    config = config_for(sqlserver, sqlserver_db.name, snowflake_schema.destination())
    first = load(tmp_path, sqlserver, config)
    assert first.ok, first.output[-6000:]
    older = snapshot_partition(first.dagster_home)
    assert target_rows(snowflake_schema) == expected_rows(v1)

    # re-run of the same partition after success: replaced, every row once
    replace_orders(sqlserver_db, v2)
    again = load(tmp_path, sqlserver, config, partition=older)
    assert again.ok, again.output[-6000:]
    assert target_rows(snowflake_schema) == expected_rows(v2)
    assert control(snowflake_schema)[0] == older

    # a newer snapshot, then the older partition once more: refused, the newer rows stay
    replace_orders(sqlserver_db, v3)
    newer = load(tmp_path, sqlserver, config)
    assert newer.ok, newer.output[-6000:]
    newest = snapshot_partition(newer.dagster_home)
    assert newest > older and target_rows(snowflake_schema) == expected_rows(v3)
    refused = load(tmp_path, sqlserver, config, partition=older)
    assert not refused.ok
    assert f"snapshot partition {older} is older than {newest}" in refused.output
    assert "a retry cannot fix these" in refused.output
    assert target_rows(snowflake_schema) == expected_rows(v3) and control(snowflake_schema)[0] == newest
    assert leftovers(snowflake_schema) == []

    # a downstream asset gets the loaded table (pandas, by annotation) through the IO manager
    frame = downstream_frame(tmp_path, newer.dagster_home, newest)
    assert sorted(frame.itertuples(index=False, name=None)) == expected_rows(v3)
    assert list(frame.columns) == ["id", "customer", "amount"] and str(frame["id"].dtype) == "int32"


def downstream_frame(tmp_path: Path, home: Path, partition: str) -> Any:
    """Materialize a user's asset that depends on the table asset; return the DataFrame it received."""
    from dtaas_dagster.config import load_config
    from dtaas_dagster.factory import build_definitions
    from dtaas_dagster.partitions import loads_partitions_def

    received: list[pd.DataFrame] = []

    @dg.asset(
        ins={"orders": dg.AssetIn(key=dg.AssetKey(["t", "dbo", "orders"]))}, partitions_def=loads_partitions_def("t")
    )
    def orders_report(orders: pd.DataFrame) -> None:
        received.append(orders)

    definitions = build_definitions(load_config(tmp_path / "dtaas.yaml"))
    assets = [a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition)]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            [*assets, orders_report],
            selection=[orders_report.key],
            partition_key=partition,
            resources=dict(definitions.resources or {}),
            instance=instance,
        )
    assert result.success
    return received[0]


@pytest.mark.usefixtures("fakesnow")
def test_a_failure_after_copy_and_before_the_replace_leaves_the_previous_load(
    sqlserver: Any, sqlserver_db: Any, fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema, tmp_path: Path
) -> None:
    v1 = orders(version=1)
    seed_orders(sqlserver_db, v1)
    config = config_for(sqlserver, sqlserver_db.name, snowflake_schema.destination())
    assert load(tmp_path, sqlserver, config).ok
    before = control(snowflake_schema)

    replace_orders(sqlserver_db, orders(version=2))
    fakesnow.set_faults(
        {
            "match": r'^DELETE FROM ".*"\."ORDERS"$',
            "action": "error",
            "times": 1,
            "message": "Warehouse LOAD_WH was suspended (injected)",
        }
    )
    failed = load(tmp_path, sqlserver, config)
    assert not failed.ok
    assert "DELETE_TARGET" in failed.output and "Warehouse LOAD_WH was suspended" in failed.output
    sent = fakesnow.statements()
    assert any(s.startswith("COPY INTO") for s in sent[-12:]) and "ROLLBACK" in sent[-6:]
    assert target_rows(snowflake_schema) == expected_rows(v1)
    assert control(snowflake_schema) == before
    assert leftovers(snowflake_schema) == [] and snowflake_schema.stage_files() == []


def test_a_step_retry_loads_every_row_once(
    sqlserver: Any, sqlserver_db: Any, fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema, tmp_path: Path
) -> None:
    v1 = orders(version=1)
    seed_orders(sqlserver_db, v1)
    config = config_for(
        sqlserver,
        sqlserver_db.name,
        snowflake_schema.destination(),
        retry={"max_retries": 2, "delay_seconds": 0, "backoff": "constant", "jitter": "none"},
    )
    # the first attempt fails at the replace's INSERT (a timeout: retryable); the retry must load once
    fakesnow.set_faults({"match": r'^INSERT INTO ".*"\."ORDERS" \(', "action": "error", "times": 1})
    outcome = load(tmp_path, sqlserver, config)
    assert outcome.ok, outcome.output[-6000:]
    assert "000630" in outcome.output  # the first attempt's failure is in the run's log
    assert target_rows(snowflake_schema) == expected_rows(v1)
    assert "-a1-" in control(snowflake_schema)[1]  # committed by the retry (attempt 1)
    assert len(materializations(outcome.dagster_home, ["t", "dbo", "orders"])) == 1
    assert leftovers(snowflake_schema) == []


def test_a_run_killed_mid_put_leaves_the_previous_load_and_the_next_run_cleans_up(
    sqlserver: Any, sqlserver_db: Any, fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema, tmp_path: Path
) -> None:
    v1, v2, v3 = orders(version=1), orders(version=2), orders(version=3)
    seed_orders(sqlserver_db, v1)
    config = config_for(sqlserver, sqlserver_db.name, snowflake_schema.destination(), file_size={"rows": 10})
    assert load(tmp_path, sqlserver, config).ok

    # the second file's upload hangs; the whole run (dtaas load, dagster, the step) is killed with SIGKILL
    replace_orders(sqlserver_db, v2)
    fakesnow.set_faults({"match": "UPLOAD", "action": "hang", "skip": 1})
    environment = {
        **os.environ,
        "DTAAS_CONFIG": str(tmp_path / "dtaas.yaml"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        PASSWORD_ENV: sqlserver.password,
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "dtaas_dagster.cli", "load", "--task", "t", "--in-process"],
        env=environment,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 400
        while not any(h["match"] == "UPLOAD" for h in fakesnow.hits()):
            assert run.poll() is None and time.monotonic() < deadline, "the run never reached its second PUT"
            time.sleep(0.5)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
        fakesnow.clear_faults()  # the held upload goes on without its client, as a real one might
    assert target_rows(snowflake_schema) == expected_rows(v1)
    killed = leftovers(snowflake_schema)
    assert len(killed) == 1  # the killed load's staging table

    replace_orders(sqlserver_db, v3)
    since = len(fakesnow.statements())
    after = load(tmp_path, sqlserver, config)
    assert after.ok, after.output[-6000:]
    assert target_rows(snowflake_schema) == expected_rows(v3)
    assert leftovers(snowflake_schema) == []
    sent = fakesnow.statements()[since:]
    assert f'DROP TABLE IF EXISTS "{snowflake_schema.database}"."{snowflake_schema.schema}"."{killed[0]}"' in sent
    # its stage files: REMOVE @stage/<table>_<hash>/<load>/ (fakesnow has no REMOVE: dtaas warns, docs/snowflake.md)
    slug = object_slug(TableName(snowflake_schema.database, snowflake_schema.schema, "ORDERS"))
    token = killed[0].lower()[len(f"_dtaas_stg_{slug}_") :]
    stage = f'"{snowflake_schema.database}"."{snowflake_schema.schema}"."_DTAAS_STAGE"'
    assert [s for s in sent if s.startswith("REMOVE")] == [f"REMOVE @{stage}/{slug}/{token}/"]
    assert "could not remove left-over stage files" in after.output
