"""Result values (Arrow -> TDS -> client) through pyodbc and arrow-odbc with both ODBC drivers."""

from __future__ import annotations

import datetime as dt
import struct
import uuid

import arrow_odbc
import pyarrow as pa
import pyodbc
import pytest

from dtaas_dagster_tests.double_tests.conftest_protocol import (
    TYPES_COLUMNS,
    TYPES_SQL,
    TYPES_VALUES,
    conn_str,
    server,
    stub_engine,
)
from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

__all__ = ["server", "stub_engine"]  # fixtures used by the tests below

DRIVERS = ["msodbc18", "freetds"]
SQL_SS_TIMESTAMPOFFSET = -155
SQL_TYPE_TIMESTAMP = 93


def expected_python(name: str, value: object) -> object:
    """What pyodbc gives for a source value (pyodbc's own limits: microseconds, no datetimeoffset)."""
    if value is None:
        return None
    if name == "tm":
        ns = int(value)  # type: ignore[arg-type]
        return (dt.datetime.min + dt.timedelta(microseconds=ns // 1000)).time()
    if name == "dt2":
        text = str(value)
        return dt.datetime.strptime(text[:26], "%Y-%m-%d %H:%M:%S.%f")
    return value


def _dto_struct(raw: bytes) -> tuple[int, ...]:
    return struct.unpack("<6hI2h", raw)


def _ts_struct(raw: bytes) -> tuple[int, ...]:
    return struct.unpack("<6hI", raw)


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_type_round_trips_through_pyodbc(server: DoubleServer, driver: str) -> None:
    with pyodbc.connect(conn_str(server, driver), autocommit=True, timeout=10) as conn:
        conn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, bytes)
        rows = conn.cursor().execute(TYPES_SQL).fetchall()
    assert len(rows) == 3
    for r, row in enumerate(rows):
        for col, got in zip(TYPES_COLUMNS, row):
            if col.name == "dto":
                continue
            want = expected_python(col.name, TYPES_VALUES[col.name][1][r])
            assert got == want, f"{driver} row {r} column {col.name}: {got!r} != {want!r}"
    assert _dto_struct(rows[0].dto) == (2024, 1, 2, 3, 4, 5, 123456700, 5, 30)
    assert _dto_struct(rows[1].dto) == (9999, 12, 31, 23, 59, 59, 999999900, 0, 0)
    assert rows[2].dto is None


@pytest.mark.parametrize("driver", DRIVERS)
def test_datetime2_keeps_100ns_on_the_wire(server: DoubleServer, driver: str) -> None:
    with pyodbc.connect(conn_str(server, driver), autocommit=True, timeout=10) as conn:
        conn.add_output_converter(SQL_TYPE_TIMESTAMP, bytes)
        conn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, bytes)
        row = conn.cursor().execute(TYPES_SQL).fetchall()[1]
    assert _ts_struct(row.dt2) == (9999, 12, 31, 23, 59, 59, 999999900)


def _us_timestamps(schema: pa.Schema) -> pa.Schema:
    # datetime2 arrives as timestamp[ns] by default; year 0001 only fits in microseconds
    return pa.schema(
        [pa.field(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type) for f in schema]
    )


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_type_round_trips_through_arrow_odbc(server: DoubleServer, driver: str) -> None:
    reader = arrow_odbc.read_arrow_batches_from_odbc(
        TYPES_SQL,
        conn_str(server, driver),
        max_text_size=100_000,
        max_binary_size=100_000,
        map_schema=_us_timestamps,
    )
    table = pa.Table.from_batches(list(reader))
    assert table.num_rows == 3
    for col in TYPES_COLUMNS:
        got = table.column(col.name).to_pylist()
        want = list(TYPES_VALUES[col.name][1])
        if col.name in ("tm", "dt2"):
            want = [expected_python(col.name, v) for v in want]
        if col.name == "tm":
            got = [None if v is None else v.replace(microsecond=v.microsecond) for v in got]
        assert got == want, f"{driver} column {col.name}"
    assert table.schema.field("ti").type == pa.uint8()
    assert table.schema.field("d38").type == pa.decimal128(38, 10)
    assert table.schema.field("m").type == pa.decimal128(19, 4)


def test_guid_bytes_are_sql_server_mixed_endian(server: DoubleServer) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        conn.add_output_converter(-11, bytes)  # SQL_GUID as the raw 16 bytes
        conn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, bytes)
        raw = conn.cursor().execute(TYPES_SQL).fetchone().g
    assert uuid.UUID(bytes_le=raw) == uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")


def test_large_result_spans_many_packets_and_batches(server: DoubleServer) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        rows = conn.cursor().execute("SELECT * FROM numbers").fetchall()
    assert len(rows) == 200_000
    assert rows[0].n == 0 and rows[0].s == "row-0"
    assert rows[-1].n == 199_999 and rows[-1].s == "row-199999"
