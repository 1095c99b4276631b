"""Fixes to the double's engine: DROP COLUMN, exact Arrow seeding, 7-digit datetime2, replay of DDL.

Engine-level tests go through the engine's Python API; the round trips go through
``seed_table`` on the running double and back out through pyodbc and arrow-odbc
with Microsoft ODBC Driver 18, the way the product reads.
"""

from __future__ import annotations

import datetime as dt
import struct
from contextlib import closing
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.double_tests.engine_helpers import run
from dtaas_dagster_tests.sqlserver_double.engine import DuckDbEngine
from dtaas_dagster_tests.sqlserver_double.engine_api import SqlServerError, SqlType


def result(session: Any, sql: str) -> tuple[list[SqlType], list[dict[str, Any]]]:
    """Column types and rows (as dicts) of the last result set of the batch."""
    last = None
    for res in session.execute(sql):
        if res.result_set is not None:
            batches = list(res.result_set.batches)
            rows = [r for b in batches for r in b.to_pylist()]
            last = ([c.type for c in res.result_set.columns], rows)
    assert last is not None
    return last


# -- 1. ALTER TABLE ... DROP COLUMN --------------------------------------------------------
def test_drop_column_removes_it_from_storage_and_catalog(session: Any) -> None:
    run(session, "CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY, name nvarchar(20), a int, b int)")
    run(session, "INSERT INTO dbo.t VALUES (1, N'x', 2, 3)")
    run(session, "ALTER TABLE dbo.t DROP COLUMN name")
    run(session, "ALTER TABLE dbo.t DROP COLUMN [a], b")
    assert result(session, "SELECT * FROM dbo.t")[1] == [{"id": 1}]
    names = result(session, "SELECT name FROM sys.columns WHERE object_id = OBJECT_ID('dbo.t')")[1]
    assert names == [{"name": "id"}]


def test_drop_column_errors_name_the_column(session: Any) -> None:
    run(session, "CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY, name nvarchar(20))")
    with pytest.raises(SqlServerError) as key:
        run(session, "ALTER TABLE dbo.t DROP COLUMN id")
    assert key.value.number == 5074 and "'id'" in key.value.message
    with pytest.raises(SqlServerError) as missing:
        run(session, "ALTER TABLE dbo.t DROP COLUMN nope")
    assert "nope" in missing.value.message


# -- 2. seeding Arrow data exactly ---------------------------------------------------------------
BERLIN = "Europe/Berlin"
SEED_TYPES = {
    "dt7_us": "datetime2(7)",
    "dt7_ns": "datetime2(7)",
    "dt3_us": "datetime2(3)",
    "dt3_ms": "datetime2(3)",
    "d": "date",
    "tm": "time(7)",
    "tm3": "time(3)",
    "dto": "datetimeoffset(7)",
    "dto_utc": "datetimeoffset(7)",
    "dec": "decimal(10,3)",
    "bin": "varbinary(10)",
    "s": "nvarchar(10)",
}


def seed_data() -> pa.Table:
    us = [dt.datetime(2024, 5, 30, 1, 36, 31, 629940), dt.datetime(1, 1, 1), None]
    return pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "dt7_us": pa.array(us, pa.timestamp("us")),
            "dt7_ns": pa.array([1_717_033_000_123_456_789, 0, None], pa.timestamp("ns")),
            "dt3_us": pa.array(us, pa.timestamp("us")),
            "dt3_ms": pa.array(
                [dt.datetime(2024, 5, 30, 1, 36, 31, 629000), dt.datetime(9999, 12, 31), None], pa.timestamp("ms")
            ),
            "d": pa.array([dt.date(2024, 5, 30), dt.date(1, 1, 1), None], pa.date32()),
            "tm": pa.array([123_456_789_012, 0, None], pa.time64("ns")),
            "tm3": pa.array([123_456_789, 86_399_999_999, None], pa.time64("us")),
            "dto": pa.array(
                [
                    dt.datetime(2024, 5, 30, 1, 36, 31, 629940, tzinfo=dt.UTC),
                    dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.UTC),
                    None,
                ],
                pa.timestamp("us", BERLIN),
            ),
            "dto_utc": pa.array(
                [dt.datetime(2024, 5, 30, 1, 36, 31, 629940, tzinfo=dt.UTC), None, None],
                pa.timestamp("us", "UTC"),
            ),
            "dec": pa.array([Decimal("12.345"), Decimal("-0.001"), None], pa.decimal128(10, 3)),
            "bin": pa.array([b"\x00\x01\xff", b"", None], pa.binary()),
            "s": pa.array(["héllo ✓", "", None], pa.string()),
        }
    )


# what SQL Server holds: 7-digit text for datetime2(7)/datetimeoffset, rounded to each column's scale
STORED = {
    "dt7_us": ["2024-05-30 01:36:31.6299400", "0001-01-01 00:00:00.0000000", None],
    "dt7_ns": ["2024-05-30 01:36:40.1234568", "1970-01-01 00:00:00.0000000", None],
    "dt3_us": [dt.datetime(2024, 5, 30, 1, 36, 31, 630000), dt.datetime(1, 1, 1), None],
    "dt3_ms": [dt.datetime(2024, 5, 30, 1, 36, 31, 629000), dt.datetime(9999, 12, 31), None],
    "d": [dt.date(2024, 5, 30), dt.date(1, 1, 1), None],
    "tm3": [dt.time(0, 2, 3, 457000), dt.time(0, 0), None],  # 23:59:59.9999999 rounds past midnight
    "dto": ["2024-05-30 03:36:31.6299400 +02:00", "2024-01-15 13:00:00.0000000 +01:00", None],
    "dto_utc": ["2024-05-30 01:36:31.6299400 +00:00", None, None],
    "dec": [Decimal("12.345"), Decimal("-0.001"), None],
    "bin": [b"\x00\x01\xff", b"", None],
    "s": ["héllo ✓", "", None],
}


def test_seed_table_stores_every_arrow_mapping_exactly(engine: DuckDbEngine, session: Any) -> None:
    engine.seed_table("sales", "dbo", "seeded", seed_data(), columns=SEED_TYPES)
    types, rows = result(session, "SELECT * FROM dbo.seeded ORDER BY id")
    for name, want in STORED.items():
        assert [r[name] for r in rows] == want, name
    (res,) = list(session.execute("SELECT tm FROM dbo.seeded ORDER BY id"))
    tm = pa.Table.from_batches(list(res.result_set.batches)).column("tm")
    assert tm.cast(pa.int64()).to_pylist() == [123_456_789_000, 0, None]  # 123.456789012 s rounded to 100 ns
    assert [t.name for t in types][1:3] == ["datetime2", "datetime2"]


def datetimeoffset_text(raw: bytes | None) -> str | None:
    """pyodbc's SQL_SS_TIMESTAMPOFFSET_STRUCT bytes as 'YYYY-MM-DD HH:MM:SS.fffffff +HH:MM'."""
    if raw is None:
        return None
    year, month, day, hour, minute, second, nanos, tz_hour, tz_minute = struct.unpack("<6hI2h", raw)
    sign = "-" if tz_hour < 0 or tz_minute < 0 else "+"
    return (
        f"{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{nanos // 100:07} "
        f"{sign}{abs(tz_hour):02}:{abs(tz_minute):02}"
    )


@pytest.mark.double_only
def test_seeded_values_read_back_through_pyodbc_and_arrow_odbc(sqlserver_db: Any) -> None:
    from arrow_odbc import read_arrow_batches_from_odbc

    sqlserver_db.seed_table("dbo", "seeded", seed_data(), columns=SEED_TYPES)
    with closing(sqlserver_db.connect()) as conn:
        conn.add_output_converter(-155, datetimeoffset_text)
        got = conn.execute(
            "SELECT dt7_us, dt3_us, dt3_ms, d, tm3, dec, bin, s, dto FROM dbo.seeded ORDER BY id"
        ).fetchall()
    assert [r.dt7_us for r in got] == [dt.datetime(2024, 5, 30, 1, 36, 31, 629940), dt.datetime(1, 1, 1), None]
    for name in ("dt3_us", "dt3_ms", "d", "tm3", "dec", "bin", "s", "dto"):
        assert [getattr(r, name) for r in got] == STORED[name], name
    reader = read_arrow_batches_from_odbc(
        query="SELECT dt7_ns, tm, dto_utc, dec, bin, s FROM dbo.seeded ORDER BY id",
        connection_string=sqlserver_db.connection_string(),
        batch_size=10,
        max_text_size=1000,
        max_binary_size=1000,
    )
    table = pa.Table.from_batches(list(reader))
    assert table.column("dt7_ns").cast(pa.int64()).to_pylist() == [1_717_033_000_123_456_800, 0, None]
    assert table.column("tm").cast(pa.int64()).to_pylist() == [123_456_789_000, 0, None]
    assert table.column("dto_utc").to_pylist() == STORED["dto_utc"]  # arrow-odbc reads datetimeoffset as text
    assert table.column("dec").to_pylist() == STORED["dec"]
    assert table.column("bin").to_pylist() == STORED["bin"]
    assert table.column("s").to_pylist() == STORED["s"]


# -- 3. datetime2(7) results are 7-digit text on every path ----------------------------------------
def test_computed_datetime2_7_results_have_seven_fraction_digits(session: Any) -> None:
    run(session, "CREATE TABLE dbo.t (id int, a datetime2(7), b datetime2(3), o datetimeoffset(7))")
    run(
        session,
        "INSERT INTO dbo.t VALUES (1, '2024-05-30 01:36:31.6299401', '2024-05-30 01:36:31.629', "
        "'2024-05-30 01:36:31.1234567 +02:00')",
    )
    _, rows = result(
        session,
        "SELECT CAST(b AS datetime2) AS c, CONVERT(datetime2(7), '2024-01-01') AS v, "
        "CAST(b AS datetimeoffset) AS o, a FROM dbo.t",
    )
    assert rows == [
        {
            "c": "2024-05-30 01:36:31.6290000",
            "v": "2024-01-01 00:00:00.0000000",
            "o": "2024-05-30 01:36:31.6290000 +00:00",
            "a": "2024-05-30 01:36:31.6299401",
        }
    ]
    _, now = result(session, "SELECT CAST(GETDATE() AS datetime2(7)) AS n, SYSUTCDATETIME() AS u")
    for value in now[0].values():
        assert len(value) == 27 and value[19] == "."


# -- 4. a DuckDB error inside BEGIN TRAN replays the CDC manager's DDL too ------------------------
def _errors(session: Any, sql: str) -> list[int]:
    """Run a batch statement by statement; the SQL Server error numbers it raised."""
    numbers = []
    results = session.execute(sql)
    while True:
        try:
            res = next(results)
            if res.result_set is not None:
                list(res.result_set.batches)  # results stream: errors surface while reading
        except StopIteration:
            return numbers
        except SqlServerError as e:
            numbers.append(e.number)


def test_statement_error_after_enabling_cdc_in_a_transaction_keeps_the_change_table(session: Any) -> None:
    run(session, "CREATE TABLE dbo.parts (id int NOT NULL PRIMARY KEY, name nvarchar(20))")
    run(session, "EXEC sys.sp_cdc_enable_db")
    errors = _errors(
        session,
        (
            "BEGIN TRAN;"
            "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'parts', @role_name = NULL;"
            "INSERT INTO dbo.parts VALUES (1, N'a');"
            "INSERT INTO dbo.parts VALUES (1, N'dup');"  # 2627, checked before DuckDB writes
            "SELECT 1 / 0;"  # 8134 fails inside DuckDB: the session rolls back and replays
            "INSERT INTO dbo.parts VALUES (2, N'b');"
            "UPDATE dbo.parts SET name = N'c' WHERE id = 2;"
            "COMMIT"
        ),
    )
    assert errors == [2627, 8134]
    assert not session.in_transaction
    assert result(session, "SELECT id, name FROM dbo.parts ORDER BY id")[1] == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "c"},
    ]
    changes = result(
        session,
        "SELECT [__$operation] AS op, id, name FROM cdc.dbo_parts_CT "
        "ORDER BY [__$start_lsn], [__$seqval], [__$operation]",
    )[1]
    assert [(r["op"], r["id"], r["name"]) for r in changes] == [(2, 1, "a"), (2, 2, "b"), (3, 2, "b"), (4, 2, "c")]


def test_cdc_enabled_in_a_transaction_survives_statement_errors_through_driver_18(sqlserver_db: Any) -> None:
    import pyodbc

    from dtaas_dagster_tests.sqlserver_fixtures import cdc_changes, enable_cdc, wait_for_lsn_after

    with closing(sqlserver_db.connect()) as conn:
        conn.execute("CREATE TABLE dbo.parts (id int NOT NULL PRIMARY KEY, name nvarchar(20))")
        conn.execute("EXEC sys.sp_cdc_enable_db")
        conn.execute("BEGIN TRAN")
        enable_cdc(conn, "dbo", "parts")
        conn.execute("INSERT INTO dbo.parts VALUES (1, N'a')")
        with pytest.raises(pyodbc.IntegrityError, match="2627"):
            conn.execute("INSERT INTO dbo.parts VALUES (1, N'dup')")
        with pytest.raises(pyodbc.Error, match="8134"):  # statement-level: the transaction goes on
            conn.execute("SELECT 1 / 0").fetchall()
        conn.execute("INSERT INTO dbo.parts VALUES (2, N'b')")
        conn.execute("COMMIT")
        wait_for_lsn_after(conn, None)
        rows = cdc_changes(conn, "dbo_parts")
    assert [(r["__$operation"], r["id"], r["name"]) for r in rows] == [(2, 1, "a"), (2, 2, "b")]


# -- 5. one-row parameterised INSERT (fast_executemany's shape) keeps every check -----------------
ROW_SQL = "INSERT INTO dbo.r (k, name, amount, stamp) VALUES (@P1, @P2, @P3, @P4)"


def _row_params(*values: Any) -> dict[str, Any]:
    from dtaas_dagster_tests.sqlserver_double.engine_api import Param

    types = [
        SqlType("nvarchar", 10),
        SqlType("nvarchar", 5),
        SqlType("decimal", precision=6, scale=2),
        SqlType("datetime2", scale=7),
    ]
    return {f"@P{i + 1}": Param(f"@P{i + 1}", t, v) for i, (t, v) in enumerate(zip(types, values))}


def _insert_row(session: Any, *values: Any) -> int | None:
    """SqlServerError number of the one-row INSERT, or None when it succeeded."""
    try:
        run_with = list(session.execute(ROW_SQL, _row_params(*values)))
        assert run_with[0].rowcount == 1
        return None
    except SqlServerError as e:
        return e.number


@pytest.mark.parametrize("explicit", [False, True], ids=["autocommit", "in_transaction"])
def test_one_row_inserts_keep_sql_server_checks(session: Any, explicit: bool) -> None:
    run(
        session,
        "CREATE TABLE dbo.r (id int IDENTITY(1,1), k nvarchar(10) NOT NULL PRIMARY KEY, "
        "name nvarchar(5) NOT NULL, amount decimal(6,2), stamp datetime2(7))",
    )
    if explicit:
        run(session, "BEGIN TRAN")
    stamp = dt.datetime(2024, 5, 30, 1, 2, 3, 456789)
    outcomes = [
        _insert_row(session, "a", "x", Decimal("1.005"), stamp),
        _insert_row(session, "A", "y", None, None),  # same key under the case-insensitive collation
        _insert_row(session, "b", None, None, None),
        _insert_row(session, "c", "toolong", None, None),
        _insert_row(session, "d", "z", Decimal("12345.6"), None),  # too big for decimal(6,2): 8115
        _insert_row(session, "f", "v", 7, None),
    ]
    assert outcomes == [None, 2627, 515, 2628, 8115, None]
    got = result(session, "SELECT id, k, name, amount, stamp FROM dbo.r ORDER BY k")[1]  # reads the buffered rows
    assert [(r["k"], r["name"], r["amount"], r["stamp"]) for r in got] == [
        ("a", "x", Decimal("1.01"), "2024-05-30 01:02:03.4567890"),
        ("f", "v", Decimal("7.00"), None),
    ]
    assert got[0]["id"] < got[1]["id"]
    # not convertible: 8114 ends the batch and, inside BEGIN TRAN, rolls the transaction back
    assert _insert_row(session, "e", "w", "abc", None) == 8114
    assert not session.in_transaction
    left = result(session, "SELECT k FROM dbo.r ORDER BY k")[1]
    assert [r["k"] for r in left] == ([] if explicit else ["a", "f"])


def test_buffered_rows_are_captured_and_committed_once(engine: DuckDbEngine, session: Any) -> None:
    run(
        session,
        "CREATE TABLE dbo.r (k nvarchar(10) NOT NULL PRIMARY KEY, name nvarchar(5), amount decimal(6,2), "
        "stamp datetime2(7))",
    )
    run(session, "EXEC sys.sp_cdc_enable_db")
    run(session, "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'r', @role_name = NULL")
    run(session, "BEGIN TRAN")
    for i in range(50):
        assert _insert_row(session, f"k{i}", "n", Decimal(i), None) is None
    run(session, "UPDATE dbo.r SET name = N'm' WHERE k = N'k7'")  # flushes the buffer first
    assert _insert_row(session, "k50", "n", None, None) is None
    run(session, "COMMIT")
    other = engine.open_session("sa", "sales")
    assert result(other, "SELECT COUNT(*) AS n, COUNT(DISTINCT k) AS d FROM dbo.r")[1] == [{"n": 51, "d": 51}]
    ops = result(
        other, "SELECT [__$operation] AS op, COUNT(*) AS n FROM cdc.dbo_r_CT GROUP BY [__$operation] ORDER BY op"
    )[1]
    assert ops == [{"op": 2, "n": 51}, {"op": 3, "n": 1}, {"op": 4, "n": 1}]
    other.close()
