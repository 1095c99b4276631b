"""Snowflake destination benchmark: 1,000,000 rows loaded and 100,000 changes merged through fakesnow.

What it measures
----------------
fakesnow's server runs as a child process on 127.0.0.1 (the real
snowflake-connector-python over HTTP; ``dtaas_dagster_tests/fakesnow_server.py``).
The source side is left out (``bench/full_load.py`` measures SQL Server
reads): rows are generated as Arrow batches of 50,000, lazily, and handed to
the product's own path, ``SnowflakeIOManager.write_stream``, as a table step
would (the batches are built before the clock starts, so the times are the
pipeline's: Parquet spooling, PUT, COPY, the transaction):

- ``load``: a snapshot of N rows x 8 columns into a new table: Parquet files
  PUT to the stage, COPY INTO the staging table, then the one-transaction
  replace (DELETE + INSERT + control row). Times per phase come from the
  load's own metadata (``put_s``, ``copy_s``, ``replace_s``, ``total_s``);
- ``merge``: one change window of C changes (70% updates of existing keys,
  20% inserts, 10% deletes) applied to that table: staged the same way, then
  the newest change per key applied with the control row in one transaction
  (``cdc_apply: delete_insert``: fakesnow cannot run a MERGE inside a
  transaction; the MERGE statement itself is timed on its own, outside one);
- ``rows_insert``: the baseline of loading row by row, what ``write_pandas``
  replaces: ``executemany`` of a qmark ``INSERT`` (the connector binds arrays)
  on a slice of the rows; ``write_pandas`` itself is tried and reported (it
  fails in fakesnow's server mode).

Every result is checked (row counts, the merged table against the expected
keys). The numbers are fakesnow's (DuckDB in one local process), not
Snowflake's: they show where the time goes in our code and the relative cost
of row inserts, not a warehouse's throughput.

The last line is ``snowflake load_rows_per_s=<n> merge_rows_per_s=<n>``.

Run: ``.venv/bin/python bench/snowflake.py [--rows N] [--changes C] [--quick]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

BATCH = 50_000
START = dt.datetime(2024, 1, 1)


SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("customer", pa.string()),
        ("amount", pa.decimal128(18, 2)),
        ("qty", pa.int32()),
        ("price", pa.float64()),
        ("active", pa.bool_()),
        ("created", pa.timestamp("us")),
        ("code", pa.string()),
    ]
)


def columns_for(keys: list[int], version: int) -> dict[str, pa.Array]:
    """The 8 columns of the rows with these keys (a row's values depend only on its key and version)."""
    return {
        "id": pa.array(keys, pa.int64()),
        "customer": pa.array([f"customer {i % 9973} v{version}" for i in keys]),
        "amount": pa.array([decimal.Decimal(i % 100000) / 100 for i in keys], pa.decimal128(18, 2)),
        "qty": pa.array([(i * 7 + version) % 1000 for i in keys], pa.int32()),
        "price": pa.array([i * 0.25 + version for i in keys], pa.float64()),
        "active": pa.array([i % 3 == version % 3 for i in keys]),
        "created": pa.array([START + dt.timedelta(seconds=i) for i in keys], pa.timestamp("us")),
        "code": pa.array([f"{i:08x}" for i in keys]),
    }


def batches(first: int, count: int, *, version: int = 0) -> Iterator[pa.RecordBatch]:
    """Rows ``first .. first+count-1`` as 50,000-row batches, made as they are pulled."""
    for offset in range(first, first + count, BATCH):
        keys = list(range(offset, min(offset + BATCH, first + count)))
        yield pa.record_batch(columns_for(keys, version), schema=SCHEMA)


SOURCE_TYPES = {
    "id": "bigint",
    "customer": "nvarchar(60)",
    "amount": "decimal(18,2)",
    "qty": "int",
    "price": "float",
    "active": "bit",
    "created": "datetime2(6)",
    "code": "varchar(8)",
}


def change_batches(rows: int, changes: int) -> Iterator[pa.RecordBatch]:
    """``changes`` changes in LSN order: 70% updates, 20% inserts of new keys, 10% deletes."""
    updates, inserts = changes * 7 // 10, changes * 2 // 10
    deletes = changes - updates - inserts
    plan = (
        [("update", 1 + (i * 7919) % rows) for i in range(updates)]
        + [("insert", rows + 1 + i) for i in range(inserts)]
        + [("delete", 1 + (i * 104729 + 13) % rows) for i in range(deletes)]
    )
    for start in range(0, len(plan), BATCH):
        chunk = plan[start : start + BATCH]
        table = columns_for([key for _, key in chunk], version=1)
        seq = range(start, start + len(chunk))
        table["_dtaas_op"] = pa.array([op for op, _ in chunk])
        table["_dtaas_lsn"] = pa.array([format(0x1000 + i, "020x") for i in seq])
        table["_dtaas_seqval"] = pa.array([format(1, "020x")] * len(chunk))
        table["_dtaas_commit_time"] = pa.array(
            [dt.datetime(2025, 1, 1, tzinfo=dt.UTC)] * len(chunk), pa.timestamp("us", tz="UTC")
        )
        yield pa.record_batch(table)


def expected_after_merge(rows: int, changes: int) -> int:
    updates, inserts = changes * 7 // 10, changes * 2 // 10
    deletes = changes - updates - inserts
    deleted = {1 + (i * 104729 + 13) % rows for i in range(deletes)}
    return rows + inserts - len(deleted)


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import dagster as dg
    import psutil

    from dtaas_dagster.config import SnowflakeDestination, TaskConfig
    from dtaas_dagster.destinations.snowflake import SnowflakeIOManager
    from dtaas_dagster.stream import TableRef, TableStream
    from dtaas_dagster_tests.snowflake_fixtures import PASSWORD_ENV, start_fakesnow

    control = Path(tempfile.mkdtemp(prefix="bench-fakesnow-"))
    target = start_fakesnow(control)
    os.environ.setdefault(PASSWORD_ENV, "snow")
    server = psutil.Process(target.process.pid) if target.process else None
    try:
        with target.connect() as connection:
            connection.cursor().execute('CREATE SCHEMA IF NOT EXISTS "DTAAS_TEST"."BENCH"')
        destination = SnowflakeDestination(
            type="snowflake",
            account=target.account,
            user=target.user,
            password_env=PASSWORD_ENV,
            host=target.host,
            port=target.port,
            protocol="http",
            database="DTAAS_TEST",
            schema="BENCH",
            cdc_apply="delete_insert",
        )
        io = SnowflakeIOManager.from_destination(
            destination, TaskConfig(source="s", destination="d", tables=["dbo.bench"], file_size={"rows": 250_000})
        )
        key = dg.AssetKey(["bench", "dbo", "bench"])
        schema = SCHEMA
        results: dict[str, dict[str, Any]] = {}

        def timed(name: str, stream: TableStream, rows: int) -> dict[str, Any]:
            cpu = server.cpu_times() if server else None
            started = time.monotonic()
            metadata = io.write_stream(stream, asset_key=key, partition_key=stream.partition_key, run_id=f"bench{name}")
            values = {k: v.value for k, v in metadata.items()}
            values["wall_s"] = time.monotonic() - started
            if server and cpu:
                after = server.cpu_times()
                values["server_cpu_s"] = (after.user + after.system) - (cpu.user + cpu.system)
            values["rows"] = rows
            results[name] = values
            return values

        # the connection (and the connector's ~7 s import) is paid before the timed loads
        from dtaas_dagster.destinations.snowflake.connection import open_connection

        with open_connection(io._connection_settings()):
            pass
        table = TableRef("bench", "dbo", "bench")
        # built before the clock starts: making rows in Python is this script's cost, not the pipeline's
        say(f"building {args.rows:,} rows and {args.changes:,} changes")
        rows_in = list(batches(1, args.rows))
        changes_in = list(change_batches(args.rows, args.changes))
        say(f"loading {args.rows:,} rows")
        load = timed(
            "load",
            TableStream(
                table,
                schema,
                iter(rows_in),
                "2025-01-01T000000Z-full-bench",
                source_types=SOURCE_TYPES,
                primary_key=("id",),
                cdc={"start_lsn": format(0xFFF, "020x")},
            ),
            args.rows,
        )
        check(target, 'SELECT COUNT(*) FROM "DTAAS_TEST"."BENCH"."BENCH"', args.rows, "loaded rows")
        change_schema = next(change_batches(args.rows, 10)).schema
        say(f"merging {args.changes:,} changes")
        merge = timed(
            "merge",
            TableStream(
                table,
                change_schema,
                iter(changes_in),
                "2025-01-02T000000Z-cdc-bench",
                source_types=SOURCE_TYPES,
                primary_key=("id",),
                kind="cdc",
                cdc={"from_lsn": format(0x1000, "020x"), "to_lsn": format(0x1000 + args.changes, "020x")},
            ),
            args.changes,
        )
        check(
            target,
            'SELECT COUNT(*) FROM "DTAAS_TEST"."BENCH"."BENCH"',
            expected_after_merge(args.rows, args.changes),
            "rows after the merge",
        )
        say("the MERGE statement alone")
        statement_s = merge_statement_alone(target, args)
        say("row inserts")
        baseline = rows_insert_baseline(target, min(args.baseline_rows, args.rows))
        report(load, merge, statement_s, baseline)
        return 0
    finally:
        target.stop()


def check(target: Any, sql: str, expected: int, what: str) -> None:
    with target.connect() as connection:
        got = connection.cursor().execute(sql).fetchone()[0]
    if got != expected:
        raise SystemExit(f"benchmark result wrong: {what} {got:,}, expected {expected:,}")


def merge_statement_alone(target: Any, args: argparse.Namespace) -> float:
    """The MERGE statement (the default cdc_apply) on a copy of the table and fresh changes, outside a transaction."""
    from dtaas_dagster.destinations.snowflake import sql
    from dtaas_dagster.destinations.snowflake.names import TableName

    bench = TableName("DTAAS_TEST", "BENCH", "BENCH")
    copy, changes = bench.sibling("MERGE_COPY"), bench.sibling("MERGE_CHANGES")
    columns = ["ID", "CUSTOMER", "AMOUNT", "QTY", "PRICE", "ACTIVE", "CREATED", "CODE"]
    with target.connect() as connection:
        cursor = connection.cursor()
        cursor.execute('USE SCHEMA "DTAAS_TEST"."BENCH"')
        cursor.execute(f"CREATE TABLE {copy.sql} AS SELECT * FROM {bench.sql}")
        # the changes: every 10th row updated, as a staged change table would hold them
        cursor.execute(
            f"CREATE TABLE {changes.sql} AS SELECT {', '.join(columns)}, 'update' AS \"_DTAAS_OP\", "
            f"'{format(0x9000, '020x')}' AS \"_DTAAS_LSN\", '{format(1, '020x')}' AS \"_DTAAS_SEQVAL\", "
            f'CURRENT_TIMESTAMP() AS "_DTAAS_COMMIT_TIME" FROM {bench.sql} WHERE "ID" % 10 = 0'
        )
        merge = sql.merge_changes(copy, changes, columns, ["ID"], soft_delete=False)
        started = time.monotonic()
        cursor.execute(merge.sql, (format(0x9000, "020x"),))
        return time.monotonic() - started


def rows_insert_baseline(target: Any, rows: int) -> dict[str, Any]:
    """Row-by-row loading: executemany of a qmark INSERT; and whether write_pandas runs here."""
    with target.connect() as connection:
        cursor = connection.cursor()
        cursor.execute(
            'CREATE TABLE "DTAAS_TEST"."BENCH"."ROWS_INSERT" ("ID" NUMBER(19,0), "CUSTOMER" VARCHAR(60), '
            '"AMOUNT" NUMBER(18,2), "QTY" NUMBER(10,0), "PRICE" FLOAT, "ACTIVE" BOOLEAN, '
            '"CREATED" TIMESTAMP_NTZ(9), "CODE" VARCHAR(8))'
        )
        # decimals bound as text: fakesnow's server fails on a bound Decimal (Snowflake casts the text to NUMBER)
        data = [
            tuple(str(v) if isinstance(v, decimal.Decimal) else v for v in r.values())
            for b in batches(1, rows)
            for r in b.to_pylist()
        ]
        started = time.monotonic()
        for offset in range(0, len(data), 10_000):
            cursor.executemany(
                'INSERT INTO "DTAAS_TEST"."BENCH"."ROWS_INSERT" VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                data[offset : offset + 10_000],
            )
        seconds = time.monotonic() - started
        cursor.execute('SELECT COUNT(*) FROM "DTAAS_TEST"."BENCH"."ROWS_INSERT"')
        if cursor.fetchone()[0] != rows:
            raise SystemExit("benchmark result wrong: row inserts lost rows")
        try:
            from snowflake.connector.pandas_tools import write_pandas

            cursor.execute('USE SCHEMA "DTAAS_TEST"."BENCH"')
            frame = next(batches(1, 100)).to_pandas()
            frame.columns = [c.upper() for c in frame.columns]
            write_pandas(connection, frame, "ROWS_INSERT", database="DTAAS_TEST", schema="BENCH")
            pandas = "ran"
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            pandas = f"fails here: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return {"rows": rows, "seconds": seconds, "write_pandas": pandas}


def report(load: dict[str, Any], merge: dict[str, Any], statement_s: float, baseline: dict[str, Any]) -> None:
    def rate(rows: int, seconds: float) -> float:
        return rows / seconds if seconds > 0 else 0.0

    print(f"{'phase':<28}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    for name, values, phases in (
        ("load", load, ("put_s", "copy_s", "replace_s")),
        ("merge", merge, ("put_s", "copy_s", "merge_s")),
    ):
        for phase in phases:
            print(f"{name + ' ' + phase:<28}{'':>12}{values.get(phase, 0):>10.2f}")
        total = values["total_s"]
        print(
            f"{name + ' total (pipeline)':<28}{values['rows']:>12,}{total:>10.2f}{rate(values['rows'], total):>12,.0f}"
        )
        spool = total - sum(values.get(p, 0) for p in phases)
        print(f"{name + ' other (spool, DDL)':<28}{'':>12}{spool:>10.2f}")
        print(f"{name + ' server CPU':<28}{'':>12}{values.get('server_cpu_s', 0):>10.2f}")
    print(f"{'MERGE statement alone':<28}{'':>12}{statement_s:>10.2f}   (10% of the rows updated, no transaction)")
    print(
        f"{'rows_insert (executemany)':<28}{baseline['rows']:>12,}{baseline['seconds']:>10.2f}"
        f"{rate(baseline['rows'], baseline['seconds']):>12,.0f}"
    )
    print(f"write_pandas: {baseline['write_pandas']}")
    print(
        f"peak RSS of this process: {peak_rss_mb():.0f} MB (the pre-built input included); "
        f"files staged: {load['files']}, {load['bytes']:,} bytes"
    )
    print(
        f"snowflake load_rows_per_s={rate(load['rows'], load['total_s']):.0f} "
        f"merge_rows_per_s={rate(merge['rows'], merge['total_s']):.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=2_000, help="rows of the row-insert baseline")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 2,000 changes, 500 row inserts")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.changes, args.baseline_rows = 20_000, 2_000, 500
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
