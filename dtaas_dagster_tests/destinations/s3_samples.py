"""Sample data for destination tests: every Arrow type a SQL Server source produces."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pyarrow as pa

from dtaas_dagster.stream import TableRef, TableStream

TABLE = TableRef("sales", "dbo", "Orders")


def all_types_table() -> pa.Table:
    """Four rows: typical values, extremes, all nulls, edge cases (empty string, zero)."""
    dec38 = pa.decimal128(38, 10)
    dec19 = pa.decimal128(19, 4)
    columns = {
        "i8": pa.array([1, -128, None, 127], pa.int8()),
        "i16": pa.array([2, -32768, None, 32767], pa.int16()),
        "i32": pa.array([3, -(2**31), None, 2**31 - 1], pa.int32()),
        "i64": pa.array([4, -(2**63), None, 2**63 - 1], pa.int64()),
        "u8": pa.array([5, 0, None, 255], pa.uint8()),
        "flag": pa.array([True, False, None, True], pa.bool_()),
        "f32": pa.array([0.1, -3.4e38, None, -0.0], pa.float32()),
        "f64": pa.array([0.1, 1e-300, None, 2.0**53 + 1], pa.float64()),
        "d38": pa.array(
            [Decimal("1.5"), Decimal("-9999999999999999999999999999.9999999999"), None, Decimal("0.0000000001")],
            dec38,
        ),
        "d19": pa.array([Decimal("12.3400"), Decimal("-999999999999999.9999"), None, Decimal("0")], dec19),
        "s": pa.array(["plain", "", None, 'Ünïcode 漢字 "q",\n\\ \x01 end'], pa.string()),
        "b": pa.array([b"\x00\xff\x10", b"", None, b"abc"], pa.binary()),
        "day": pa.array([dt.date(2024, 2, 29), dt.date(1, 1, 1), None, dt.date(9999, 12, 31)], pa.date32()),
        "tod": pa.array([1, 0, None, 86_399_999_999_999], pa.time64("ns")),
        "ts_us": pa.array(
            [
                dt.datetime(2024, 1, 2, 3, 4, 5, 6),
                dt.datetime(1, 1, 1),
                None,
                dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
            ],
            pa.timestamp("us"),
        ),
        "ts_ns": pa.array([1_700_000_000_123_456_789, 0, None, -1], pa.timestamp("ns")),
    }
    return pa.table(columns)


def stream_of(
    table: pa.Table,
    *,
    batch_rows: int = 2,
    partition_key: str = "2024-01-01",
    fail_after: int | None = None,
) -> TableStream:
    """A TableStream over ``table``; ``fail_after=n`` raises after yielding n batches."""

    def batches() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(table.to_batches(max_chunksize=batch_rows)):
            if fail_after is not None and i >= fail_after:
                raise RuntimeError("source connection lost (injected)")
            yield batch

    return TableStream(
        table=TABLE,
        schema=table.schema,
        batches=batches(),
        partition_key=partition_key,
        estimated_rows=table.num_rows,
        variables={"sourceTableName": TABLE.name, "partitionKey": partition_key},
        source_types={"i8": "smallint", "s": "nvarchar(100)"},
    )


def numbered_table(rows: int, start: int = 0) -> pa.Table:
    ids = pa.array(range(start, start + rows), pa.int64())
    return pa.table({"id": ids, "name": pa.array([f"row {i}" for i in range(start, start + rows)])})


def varied_table(rows: int, seed: int = 5) -> pa.Table:
    """Rows that compress like real data: ids, random floats and hex codes, a category, timestamps."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array(np.arange(rows)),
        "x": pa.array(rng.random(rows)),
        "code": pa.array([f"{v:016x}" for v in rng.integers(0, 2**62, rows)]),
        "status": pa.array(rng.choice(["open", "closed", "pending"], rows)),
        "at": pa.array(np.datetime64("2024-01-01", "us") + rng.integers(0, 10**12, rows).astype("timedelta64[us]")),
    })  # fmt: skip
