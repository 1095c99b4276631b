"""Measure how fast the double's protocol layer serves a bulk read (not a test).

    .venv/bin/python -m dtaas_dagster_tests.double_tests.measure_protocol_speed [rows]

The server runs in a child process (as in real use) with a stub engine that
serves one canned table of 6 columns (int, bigint, nvarchar(50), decimal(18,2),
datetime2(7), float), so the numbers are the protocol layer's: Arrow -> TDS
encoding, packets, and the client's decoding. Prints rows/s per client/driver.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any

QUERY = "SELECT * FROM bench"


def bench_table(rows: int) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(7)
    ids = np.arange(rows, dtype=np.int64)
    names = pc.binary_join_element_wise(pa.array(np.full(rows, "customer")), pc.cast(pa.array(ids), pa.string()), " ")
    amounts = pa.array(rng.integers(-(10**9), 10**9, rows) / 100).cast(pa.decimal128(18, 2))
    stamps = pa.array(1_600_000_000_000_000 + ids * 1_000_003, pa.timestamp("us"))
    return pa.table(
        {
            "id": pa.array(ids.astype(np.int32)),
            "big": pa.array(ids * 1_000_003),
            "name": names,
            "amount": amounts,
            "ts": stamps,
            "ratio": pa.array(rng.random(rows)),
        }
    )


def _child(pipe: Any, rows: int) -> None:
    from dtaas_dagster_tests.double_tests.conftest_protocol import Canned, StubEngine
    from dtaas_dagster_tests.sqlserver_double.engine_api import ResultColumn, SqlType
    from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

    columns = [
        ResultColumn("id", SqlType("int")),
        ResultColumn("big", SqlType("bigint")),
        ResultColumn("name", SqlType("nvarchar", length=50)),
        ResultColumn("amount", SqlType("decimal", precision=18, scale=2)),
        ResultColumn("ts", SqlType("datetime2", scale=7)),
        ResultColumn("ratio", SqlType("float")),
    ]
    engine = StubEngine()
    engine.canned[QUERY] = Canned(columns, bench_table(rows))
    with DoubleServer(engine) as server:
        pipe.send(server.port)
        pipe.recv()


def _timed(label: str, rows: int, read: Any) -> None:
    start = time.perf_counter()
    got = read()
    seconds = time.perf_counter() - start
    assert got == rows, f"{label}: read {got} rows, expected {rows}"
    print(f"{label:<34} {rows:>9,} rows  {seconds:6.2f} s  {rows / seconds:>10,.0f} rows/s", flush=True)


def main(rows: int) -> None:
    import arrow_odbc
    import pyarrow as pa
    import pyodbc

    from dtaas_dagster_tests.double_tests.conftest_protocol import conn_str

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_child, args=(child, rows), daemon=True)
    process.start()

    class Target:
        port = parent.recv()

    def us(schema: pa.Schema) -> pa.Schema:
        return pa.schema(
            [pa.field(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type) for f in schema]
        )

    try:
        for driver in ("msodbc18", "freetds"):
            for packet in (4096, 32767) if driver == "msodbc18" else (4096,):
                cs = conn_str(Target, driver, extra=f"PacketSize={packet}" if driver == "msodbc18" else "")

                def arrow_read() -> int:
                    reader = arrow_odbc.read_arrow_batches_from_odbc(QUERY, cs, batch_size=65536, map_schema=us)
                    return sum(batch.num_rows for batch in reader)

                _timed(f"arrow-odbc {driver} packet={packet}", rows, arrow_read)

            def pyodbc_read() -> int:
                with pyodbc.connect(conn_str(Target, driver), autocommit=True) as conn:
                    cursor = conn.cursor()
                    cursor.execute(QUERY)
                    total = 0
                    while batch := cursor.fetchmany(10000):
                        total += len(batch)
                    return total

            _timed(f"pyodbc fetchmany {driver}", rows, pyodbc_read)
    finally:
        parent.send("stop")
        process.join(timeout=10)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
