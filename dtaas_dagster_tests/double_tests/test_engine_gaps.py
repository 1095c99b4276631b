"""Engine gaps the product and its tests hit: literals, functions, catalog views, types.

Engine-level tests go through the engine's Python API; the ones marked
``double_only`` also go through pyodbc + Microsoft ODBC Driver 18 against a
running double, because that is how the product talks to SQL Server.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.sqlserver_double.engine import DuckDbEngine
from dtaas_dagster_tests.sqlserver_double.engine_api import SqlServerError, SqlType


@pytest.fixture()
def session() -> Any:
    engine = DuckDbEngine()
    engine.create_database("sales")
    s = engine.open_session("sa", "sales")
    yield s
    s.close()


def result(session: Any, sql: str) -> tuple[list[SqlType], list[list[Any]]]:
    """Types and columns (as lists) of the last result set of the batch."""
    last = None
    for res in session.execute(sql):
        if res.result_set is not None:
            last = ([c.type for c in res.result_set.columns], pa.Table.from_batches(list(res.result_set.batches)))
    assert last is not None
    return last[0], [c.to_pylist() for c in last[1].columns]


def rows(session: Any, sql: str) -> list[list[Any]]:
    return result(session, sql)[1]


def run(session: Any, sql: str) -> None:
    for _ in session.execute(sql):
        pass


# -- 1. binary literals ------------------------------------------------------------------
def test_binary_literals_including_empty_0x(session: Any) -> None:
    run(session, "CREATE TABLE t (id int, a varbinary(10), b binary(4), c varbinary(max))")
    run(session, "INSERT INTO t VALUES (1, 0x, 0xDEADBEEF, 0x1), (2, 0x0102, 0x, 0xabc)")
    got = rows(session, "SELECT a, b, c, DATALENGTH(a), DATALENGTH(b) FROM t ORDER BY id")
    assert got[0] == [b"", b"\x01\x02"]
    assert got[1] == [b"\xde\xad\xbe\xef", b"\x00\x00\x00\x00"]  # binary(n) pads with 0x00
    assert got[2] == [b"\x01", b"\x0a\xbc"]  # odd digit count: leading zero, as SQL Server
    assert got[3:] == [[0, 2], [4, 4]]


def test_bracketed_0x_is_still_an_identifier(session: Any) -> None:
    run(session, "CREATE TABLE t ([0x] int)")
    run(session, "INSERT INTO t ([0x]) VALUES (5)")
    types, got = result(session, "SELECT [0x], 0x AS e FROM t")
    assert got == [[5], [b""]]
    assert types[1].name == "varbinary"


def test_unknown_function_is_195_not_a_duckdb_meaning(session: Any) -> None:
    run(session, "CREATE TABLE t (a int)")
    with pytest.raises(SqlServerError) as e:
        rows(session, "SELECT list_value(a) FROM t")
    assert e.value.number == 195 and "list_value" in e.value.message


# -- 3. every named statement of the product, through pyodbc + Driver 18 ---------------------
_PRODUCT_TABLE = """CREATE TABLE dbo.profiled (
    id int NOT NULL PRIMARY KEY, d7 datetime2(7) NULL, o datetimeoffset(7) NULL, n nvarchar(max) NULL,
    b varbinary(max) NULL, name nvarchar(40) NOT NULL)"""
_PRODUCT_ROWS = """INSERT INTO dbo.profiled VALUES
    (1, '2024-01-01 00:00:00.1234567', '2024-01-02 03:04:05.1234567 +05:30', N'ab😀', 0x0102, N'x'),
    (2, '0001-01-01 00:00:00', '2000-01-01 00:00:00 -08:00', N'', 0x, N'y'),
    (3, NULL, NULL, NULL, NULL, N'z')"""


@pytest.mark.double_only
def test_product_named_statements_through_driver_18(sqlserver_db: Any) -> None:
    import datetime as dt
    import struct

    from dtaas_dagster.sqlserver import queries as Q

    with sqlserver_db.connect() as conn:
        conn.execute(_PRODUCT_TABLE)
        conn.execute(_PRODUCT_ROWS)
        version, edition, database, text = conn.execute(Q.SERVER_INFO).fetchone()
        assert version.startswith("16.") and "Edition" in edition and database == sqlserver_db.name and text
        assert tuple(conn.execute(Q.DATABASE_OPTIONS).fetchone()) == (1, False, False)
        assert [tuple(r) for r in conn.execute(Q.LIST_TABLES).fetchall()] == [("dbo", "profiled", 3)]
        columns = conn.execute(Q.TABLE_COLUMNS, "dbo", "profiled").fetchall()
        assert [(c[0], c[1], c[2], c[5], c[6]) for c in columns] == [
            ("id", "int", None, None, "NO"), ("d7", "datetime2", None, 7, "YES"),
            ("o", "datetimeoffset", None, 7, "YES"), ("n", "nvarchar", -1, None, "YES"),
            ("b", "varbinary", -1, None, "YES"), ("name", "nvarchar", 40, None, "NO")]
        assert [r[0] for r in conn.execute(Q.PRIMARY_KEY_COLUMNS, "dbo", "profiled").fetchall()] == ["id"]
        assert conn.execute(Q.TABLE_ROW_ESTIMATE, "dbo", "profiled").fetchone()[0] == 3
        snapshot = f"{Q.SET_SNAPSHOT_ISOLATION};\n{Q.build_snapshot_select('dbo', 'profiled', ['id', 'name'])}"
        assert [tuple(r) for r in conn.execute(snapshot).fetchall()] == [(1, "x"), (2, "y"), (3, "z")]
        profile = Q.build_profile_select("dbo", "profiled", [
            Q.ProfileColumn("d7", "range"), Q.ProfileColumn("o", "range"),
            Q.ProfileColumn("n", "length"), Q.ProfileColumn("b", "length")])
        # pyodbc has no type for datetimeoffset (-155): read SQL_SS_TIMESTAMPOFFSET_STRUCT raw
        conn.add_output_converter(-155, lambda raw: struct.unpack("<6hI2h", raw))
        cursor = conn.execute(profile)
        got = cursor.fetchone()
        types = [d[1] for d in cursor.description]
    assert got[0] == dt.datetime(1, 1, 1) and got[1] == dt.datetime(2024, 1, 1, 0, 0, 0, 123456)
    assert got[2] == 700  # the 100 ns digit of .1234567, as int nanoseconds % 1000
    assert got[3] == (2000, 1, 1, 0, 0, 0, 0, -8, 0)  # MIN/MAX of datetimeoffset keep the offset
    assert got[4] == (2024, 1, 2, 3, 4, 5, 123456700, 5, 30)
    assert got[5] == 700 and (got[6], got[7]) == (8, 2)  # N'ab😀' is 2 + 2 + 4 UTF-16 bytes
    assert types[2] is int and types[6] is int
