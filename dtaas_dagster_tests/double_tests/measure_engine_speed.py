"""Measure the double with its real engine, end to end through Driver 18 (not a test).

    .venv/bin/python -m dtaas_dagster_tests.double_tests.measure_engine_speed [rows] [executemany_rows]

Starts a ``DoubleProcess`` and prints: seeding ``rows`` x 6 columns through
``seed_table``; multi-row ``INSERT ... VALUES`` (1,000 rows per statement);
pyodbc ``fast_executemany`` with autocommit on and inside one transaction; and
bulk reads of the seeded table with arrow-odbc and pyodbc ``fetchmany`` over
Driver 18 and FreeTDS.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pyarrow as pa
import pyodbc

from dtaas_dagster_tests.double_tests.measure_protocol_speed import bench_table
from dtaas_dagster_tests.sqlserver_fixtures import start_target

COLUMNS = {
    "id": "int",
    "big": "bigint",
    "name": "nvarchar(50)",
    "amount": "decimal(18,2)",
    "ts": "datetime2(7)",
    "ratio": "float",
}
CREATE = (
    "CREATE TABLE dbo.{name} (id int NOT NULL PRIMARY KEY, big bigint, name nvarchar(50), "
    "amount decimal(18,2), ts datetime2(7), ratio float)"
)


def timed(label: str, rows: int, work: Callable[[], Any]) -> None:
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    print(f"{label:<44} {rows:>9,} rows  {seconds:7.2f} s  {rows / seconds:>10,.0f} rows/s", flush=True)


def literal_inserts(conn: pyodbc.Connection, data: pa.Table) -> None:
    rows = data.to_pylist()
    for start in range(0, len(rows), 1000):
        values = ", ".join(
            f"({r['id']}, {r['big']}, N'{r['name']}', {r['amount']}, '{r['ts']:%Y-%m-%d %H:%M:%S.%f}', {r['ratio']!r})"
            for r in rows[start : start + 1000]
        )
        conn.execute(f"INSERT INTO dbo.lit VALUES {values}")


def executemany(conn: pyodbc.Connection, table: str, data: pa.Table) -> None:
    cursor = conn.cursor()
    cursor.fast_executemany = True
    rows = [tuple(r.values()) for r in data.to_pylist()]
    cursor.executemany(f"INSERT INTO dbo.{table} (id, big, name, amount, ts, ratio) VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()


def reads(target: Any, database: str, rows: int) -> None:
    from arrow_odbc import read_arrow_batches_from_odbc

    for driver in ("msodbc18", "freetds"):
        conn_str = target.connection_string(database, driver)

        def arrow_read() -> None:
            reader = read_arrow_batches_from_odbc(
                "SELECT * FROM dbo.seeded", conn_str, batch_size=50_000, max_text_size=200
            )
            assert sum(b.num_rows for b in reader) == rows

        def pyodbc_read() -> None:
            with closing(pyodbc.connect(conn_str, autocommit=True)) as conn:
                cursor = conn.execute("SELECT * FROM dbo.seeded")
                got = 0
                while batch := cursor.fetchmany(10_000):
                    got += len(batch)
            assert got == rows

        timed(f"read arrow-odbc ({driver})", rows, arrow_read)
        timed(f"read pyodbc fetchmany ({driver})", rows, pyodbc_read)


def main(rows: int, many: int) -> None:
    target = start_target()
    try:
        target.create_database("speed")
        data = bench_table(rows)
        timed(
            "seed_table (DoubleProcess)",
            rows,
            lambda: target.seed_table("speed", "dbo", "seeded", data, columns=COLUMNS, primary_key=["id"]),
        )
        small = bench_table(many)
        with closing(target.connect("speed")) as conn:
            for name in ("lit", "fem_auto", "fem_txn"):
                conn.execute(CREATE.format(name=name))
            timed("INSERT ... VALUES, 1,000 rows per statement", many, lambda: literal_inserts(conn, small))
            timed("fast_executemany, autocommit", many, lambda: executemany(conn, "fem_auto", small))
        with closing(target.connect("speed", autocommit=False)) as conn:
            timed("fast_executemany, one transaction", many, lambda: executemany(conn, "fem_txn", small))
        reads(target, "speed", rows)
    finally:
        target.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 5_000)
