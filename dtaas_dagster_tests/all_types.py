"""A table with every SQL Server type the product maps, its edge values, and the Arrow it must become.

Seeded with T-SQL literals (long values as bound parameters) so the same table
can be built on the double and on a real SQL Server.
"""

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa

D = decimal.Decimal

# name, T-SQL type, row 1 literal, row 2 literal (row 3 is all NULL), expected Arrow type, expected values
ALL_TYPES: list[tuple[str, str, str, str, pa.DataType, list[Any]]] = [
    ("c_tinyint", "tinyint", "0", "255", pa.uint8(), [0, 255]),
    ("c_smallint", "smallint", "-32768", "32767", pa.int16(), [-32768, 32767]),
    ("c_int", "int", "-2147483648", "2147483647", pa.int32(), [-2147483648, 2147483647]),
    (
        "c_bigint",
        "bigint",
        "-9223372036854775808",
        "9223372036854775807",
        pa.int64(),
        [-9223372036854775808, 9223372036854775807],
    ),
    ("c_bit", "bit", "0", "1", pa.bool_(), [False, True]),
    ("c_real", "real", "1.5", "-0.25", pa.float32(), [1.5, -0.25]),
    ("c_float", "float", "1.0000000000000002", "-1e308", pa.float64(), [1.0000000000000002, -1e308]),
    (
        "c_decimal",
        "decimal(38,10)",
        "1234567890123456789012345678.0123456789",
        "-0.0000000001",
        pa.decimal128(38, 10),
        [D("1234567890123456789012345678.0123456789"), D("-0.0000000001")],
    ),
    ("c_numeric", "numeric(18,2)", "0.00", "-12345.67", pa.decimal128(18, 2), [D("0.00"), D("-12345.67")]),
    (
        "c_money",
        "money",
        "922337203685477.5807",
        "-922337203685477.5808",
        pa.decimal128(19, 4),
        [D("922337203685477.5807"), D("-922337203685477.5808")],
    ),
    ("c_char", "char(5)", "'ab'", "'abcde'", pa.string(), ["ab   ", "abcde"]),
    ("c_varchar", "varchar(20)", "''", "'hello'", pa.string(), ["", "hello"]),
    ("c_nchar", "nchar(3)", "N'日本'", "N'abc'", pa.string(), ["日本 ", "abc"]),
    ("c_nvarchar", "nvarchar(50)", "N'Ünïcödé ñ'", "N'日本語テキスト'", pa.string(), ["Ünïcödé ñ", "日本語テキスト"]),
    ("c_nvarchar_max", "nvarchar(max)", "?", "N''", pa.string(), ["é" * 5000, ""]),
    ("c_varchar_max", "varchar(max)", "?", "'y'", pa.string(), ["x" * 9000, "y"]),
    ("c_binary", "binary(4)", "0x00010203", "0xFFFFFFFF", pa.binary(), [b"\x00\x01\x02\x03", b"\xff" * 4]),
    ("c_varbinary", "varbinary(10)", "0x", "0xDEADBEEF", pa.binary(), [b"", b"\xde\xad\xbe\xef"]),
    ("c_varbinary_max", "varbinary(max)", "0x0102", "0x", pa.binary(), [b"\x01\x02", b""]),
    ("c_date", "date", "'0001-01-01'", "'9999-12-31'", pa.date32(), [dt.date(1, 1, 1), dt.date(9999, 12, 31)]),
    ("c_time", "time(7)", "'00:00:00'", "'23:59:59.9999999'", pa.time64("ns"), [0, 86_399_999_999_900]),
    (
        "c_datetime",
        "datetime",
        "'1753-01-01 00:00:00'",
        "'2024-02-29 12:34:56.500'",
        pa.timestamp("ms"),
        [dt.datetime(1753, 1, 1), dt.datetime(2024, 2, 29, 12, 34, 56, 500000)],
    ),
    (
        "c_smallmoney",
        "smallmoney",
        "-214748.3648",
        "214748.3647",
        pa.decimal128(10, 4),
        [D("-214748.3648"), D("214748.3647")],
    ),
    (
        "c_smalldatetime",
        "smalldatetime",
        "'1900-01-01 00:00'",
        "'2079-06-06 23:59'",
        pa.timestamp("ms"),
        [dt.datetime(1900, 1, 1), dt.datetime(2079, 6, 6, 23, 59)],
    ),
    (
        "c_datetime2_3",
        "datetime2(3)",
        "'0001-01-01 00:00:00'",
        "'9999-12-31 23:59:59.999'",
        pa.timestamp("us"),
        [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999000)],
    ),
    # datetime2(7) inside 1677-2262 under "auto": nanoseconds, the 100 ns digit kept
    (
        "c_datetime2_7",
        "datetime2(7)",
        "'2024-01-01 00:00:00.1234567'",
        "'1900-06-15 08:00:00.0000001'",
        pa.timestamp("ns"),
        [1704067200123456700, -2194703999999999900],
    ),
    # sentinel dates without a 100 ns digit under "auto": microseconds, full range
    (
        "c_sentinel_us",
        "datetime2(7)",
        "'0001-01-01 00:00:00'",
        "'9999-12-31 23:59:59.999999'",
        pa.timestamp("us"),
        [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)],
    ),
    # sentinel dates with a 100 ns digit: the per-column option "string" keeps them exactly
    (
        "c_sentinel_text",
        "datetime2(7)",
        "'0001-01-01 00:00:00'",
        "'9999-12-31 23:59:59.9999999'",
        pa.string(),
        ["0001-01-01 00:00:00.0000000", "9999-12-31 23:59:59.9999999"],
    ),
    (
        "c_dto",
        "datetimeoffset(7)",
        "'2024-01-02 03:04:05.1234567 +05:30'",
        "'2000-01-01 00:00:00 -08:00'",
        pa.timestamp("ns", tz="UTC"),
        [1704144845123456700, 946713600000000000],
    ),
    (
        "c_guid",
        "uniqueidentifier",
        "'6F9619FF-8B86-D011-B42D-00C04FC964FF'",
        "'00000000-0000-0000-0000-000000000000'",
        pa.string(),
        ["6F9619FF-8B86-D011-B42D-00C04FC964FF", "00000000-0000-0000-0000-000000000000"],
    ),
]


def seed_all_types(database: Any) -> None:
    columns = ", ".join(f"[{name}] {sql_type} NULL" for name, sql_type, *_ in ALL_TYPES)
    with database.connect() as connection:
        cursor = connection.cursor()
        cursor.execute(f"CREATE TABLE dbo.all_types (id int NOT NULL PRIMARY KEY, {columns})")
        names = ", ".join(f"[{name}]" for name, *_ in ALL_TYPES)
        for row_id, index in ((1, 2), (2, 3)):
            values = ", ".join(spec[index] for spec in ALL_TYPES)
            # long (max) values go in as bound parameters, in column order
            params = [spec[5][index - 2] for spec in ALL_TYPES if spec[index] == "?"]
            cursor.execute(f"INSERT INTO dbo.all_types (id, {names}) VALUES ({row_id}, {values})", *params)
        cursor.execute("INSERT INTO dbo.all_types (id) VALUES (3)")


def expected_all_types() -> pa.Table:
    arrays = {"id": pa.array([1, 2, 3], pa.int32())}
    for name, _sql, _a, _b, arrow_type, values in ALL_TYPES:
        storage = pa.int64() if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns" else None
        if pa.types.is_time64(arrow_type):
            storage = pa.int64()
        array = pa.array([*values, None], storage or arrow_type)
        arrays[name] = array.cast(arrow_type) if storage is not None else array
    return pa.table(arrays)


def assert_same(actual: pa.Table, expected: pa.Table) -> None:
    """Every column has the expected type and values; lists every mismatch at once."""
    assert actual.column_names == expected.column_names
    problems = []
    for name in expected.column_names:
        got, want = actual.column(name).combine_chunks(), expected.column(name).combine_chunks()
        if got.type != want.type:
            problems.append(f"{name}: type {got.type} != {want.type}")
        elif not got.equals(want):
            problems.append(f"{name}: {got.to_pylist()!r:.300} != {want.to_pylist()!r:.300}")
    assert not problems, "\n".join(problems)
