"""Measure the partition writers: 1M rows x 10 columns to file:// (not a test).

Run: ``.venv/bin/python -m dtaas_dagster_tests.destinations.measure_writers [rows] [formats...]``.
Prints rows/s and bytes per format. The batches are built before timing, so
the numbers are the writer's cost alone (encoding, compression, disk).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from dtaas_dagster.destinations.commit import write_partition
from dtaas_dagster.destinations.files import WriteOptions, new_load_id
from dtaas_dagster.destinations.location import open_location
from dtaas_dagster.stream import TableRef, TableStream


def sample(rows: int) -> pa.Table:
    ids = pa.array(range(rows), pa.int64())
    base = dt.datetime(2024, 1, 1)
    return pa.table(
        {
            "id": ids,
            "customer_id": pc.cast(pc.bit_wise_and(ids, 0xFFFF), pa.int32()),
            "qty": pc.cast(pc.bit_wise_and(ids, 0x7F), pa.int16()),
            "price": pc.cast(pc.divide(pc.cast(ids, pa.float64()), 7.0), pa.float64()),
            "amount": pa.array([Decimal(i % 100000) / 100 for i in range(rows)], pa.decimal128(19, 4)),
            "is_open": pc.equal(pc.bit_wise_and(ids, 1), 0),
            "name": pc.binary_join_element_wise("customer ", pc.cast(ids, pa.string()), ""),
            "code": pc.cast(pc.bit_wise_and(ids, 0xFF), pa.string()),
            "order_date": pc.cast(pc.cast(pc.add(pc.bit_wise_and(ids, 0xFFF), 19000), pa.int32()), pa.date32()),
            "updated_at": pa.array([base + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("us")),
        }
    )


def measure(table: pa.Table, options: WriteOptions, base: str) -> tuple[float, int]:
    batches = table.to_batches(max_chunksize=50_000)
    stream = TableStream(TableRef("bench", "dbo", "t"), table.schema, iter(batches), partition_key="p")
    location = open_location(f"file://{base}")
    started = time.perf_counter()
    result = write_partition(
        location.fs, location.path(options.format), stream, options, load_id=new_load_id("bench"), run_id="bench"
    )
    return time.perf_counter() - started, result.bytes


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    formats = sys.argv[2:] or ["parquet"]
    table = sample(rows)
    print(f"{rows:,} rows x {table.num_columns} columns, {table.nbytes / 1e6:.0f} MB in Arrow, batches of 50,000")
    with tempfile.TemporaryDirectory() as base:
        for fmt in formats:
            seconds, size = measure(table, WriteOptions(format=fmt), base)
            print(f"{fmt:8s} {rows / seconds:>12,.0f} rows/s  {seconds:6.2f} s  {size / 1e6:8.1f} MB written")


if __name__ == "__main__":
    main()
