"""Engine gaps the product and its tests hit: literals, functions, catalog views, types.

Engine-level tests go through the engine's Python API; the ones marked
``double_only`` also go through pyodbc + Microsoft ODBC Driver 18 against a
running double, because that is how the product talks to SQL Server.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.double_tests.engine_helpers import run
from dtaas_dagster_tests.sqlserver_double.engine_api import SqlServerError, SqlType


def result(session: Any, sql: str) -> tuple[list[SqlType], list[list[Any]]]:
    """Types and columns (as lists) of the last result set of the batch."""
    last = None
    for res in session.execute(sql):
        if res.result_set is not None:
            batches = list(res.result_set.batches)
            columns = (
                [[] for _ in res.result_set.columns]
                if not batches
                else [c.to_pylist() for c in pa.Table.from_batches(batches).columns]
            )
            last = ([c.type for c in res.result_set.columns], columns)
    assert last is not None
    return last


def rows(session: Any, sql: str) -> list[list[Any]]:
    return result(session, sql)[1]


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
            ("id", "int", None, None, "NO"),
            ("d7", "datetime2", None, 7, "YES"),
            ("o", "datetimeoffset", None, 7, "YES"),
            ("n", "nvarchar", -1, None, "YES"),
            ("b", "varbinary", -1, None, "YES"),
            ("name", "nvarchar", 40, None, "NO"),
        ]
        assert [r[0] for r in conn.execute(Q.PRIMARY_KEY_COLUMNS, "dbo", "profiled").fetchall()] == ["id"]
        assert conn.execute(Q.TABLE_ROW_ESTIMATE, "dbo", "profiled").fetchone()[0] == 3
        snapshot = f"{Q.SET_SNAPSHOT_ISOLATION};\n{Q.build_snapshot_select('dbo', 'profiled', ['id', 'name'])}"
        assert [tuple(r) for r in conn.execute(snapshot).fetchall()] == [(1, "x"), (2, "y"), (3, "z")]
        profile = Q.build_profile_select(
            "dbo",
            "profiled",
            [
                Q.ProfileColumn("d7", "range"),
                Q.ProfileColumn("o", "range"),
                Q.ProfileColumn("n", "length"),
                Q.ProfileColumn("b", "length"),
            ],
        )
        # pyodbc has no type for datetimeoffset (-155): read SQL_SS_TIMESTAMPOFFSET_STRUCT raw
        conn.add_output_converter(-155, lambda raw: struct.unpack("<6hI2h", raw))
        cursor = conn.execute(profile)
        got = cursor.fetchone()
        types = [d[1] for d in cursor.description]
    assert got[0] == dt.datetime(1, 1, 1) and got[1] == dt.datetime(2024, 1, 1, 0, 0, 0, 123456)
    assert got[2] == 700  # the 100 ns digit of .1234567, as int nanoseconds % 1000
    assert (got[3], got[4]) == (0, 123456700)  # DATEPART(nanosecond) of MIN and MAX: the full fraction
    assert got[5] == (2000, 1, 1, 0, 0, 0, 0, -8, 0)  # MIN/MAX of datetimeoffset keep the offset
    assert got[6] == (2024, 1, 2, 3, 4, 5, 123456700, 5, 30)
    assert got[7] == 700 and (got[8], got[9]) == (0, 123456700)
    assert (got[10], got[11]) == (8, 2)  # N'ab😀' is 2 + 2 + 4 UTF-16 bytes
    assert types[2] is int and types[3] is int and types[7] is int


# -- 4. catalog views -------------------------------------------------------------------------
def test_index_and_key_catalog_views(session: Any) -> None:
    run(
        session,
        "CREATE TABLE t (id int NOT NULL, k nvarchar(10) NOT NULL DEFAULT 'x', u int UNIQUE, "
        "CONSTRAINT pk_t PRIMARY KEY (id, k))",
    )
    run(session, "CREATE TABLE heap (a int)")
    run(session, "INSERT INTO t (id, u) VALUES (1, 1), (2, 2)")
    got = rows(
        session,
        "SELECT i.name, i.index_id, i.type_desc, i.is_primary_key, ic.key_ordinal, c.name "
        "FROM sys.indexes AS i JOIN sys.index_columns AS ic ON ic.object_id = i.object_id "
        "AND ic.index_id = i.index_id JOIN sys.columns AS c ON c.object_id = ic.object_id "
        "AND c.column_id = ic.column_id WHERE i.object_id = OBJECT_ID('dbo.t') ORDER BY 2, 5",
    )
    assert got[0][:2] == ["pk_t", "pk_t"] and got[1] == [1, 1, 2] and got[2][:2] == ["CLUSTERED", "CLUSTERED"]
    assert got[3] == [True, True, False] and got[5] == ["id", "k", "u"]
    assert rows(session, "SELECT type_desc FROM sys.indexes WHERE object_id = OBJECT_ID('heap')") == [["HEAP"]]
    keys = rows(session, "SELECT name, type, unique_index_id FROM sys.key_constraints ORDER BY type")
    assert keys[0][0] == "pk_t" and keys[1:] == [["PK", "UQ"], [1, 2]]
    objects = rows(session, "SELECT o.type, COUNT(*) FROM sys.objects AS o GROUP BY o.type ORDER BY o.type")
    assert objects == [["D ", "PK", "U ", "UQ"], [1, 1, 2, 1]]
    parts = rows(
        session,
        "SELECT p.index_id, p.rows FROM sys.partitions AS p JOIN sys.tables AS t "
        "ON t.object_id = p.object_id WHERE t.name = 't' ORDER BY 1",
    )
    assert parts == [[1, 2], [2, 2]]
    assert rows(session, "SELECT definition FROM sys.default_constraints") == [["('x')"]]


def test_cdc_tables_are_ms_shipped(session: Any) -> None:
    run(session, "CREATE SCHEMA [cdc]")
    run(session, "CREATE TABLE cdc.x_CT (a int)")
    run(session, "CREATE TABLE dbo.t (a int)")
    got = rows(session, "SELECT t.name, t.is_ms_shipped FROM sys.tables AS t ORDER BY t.is_ms_shipped")
    assert got == [["t", "x_CT"], [False, True]]


def test_object_id_and_objectproperty_over_columns(session: Any) -> None:
    """SQLAlchemy's get_pk_constraint builds the name from columns: OBJECT_ID(schema + '.' + name)."""
    run(session, "CREATE TABLE t (id int NOT NULL, CONSTRAINT pk_t PRIMARY KEY (id))")
    got = rows(
        session,
        "SELECT c.COLUMN_NAME, objectproperty(object_id(c.TABLE_SCHEMA + '.' + c.CONSTRAINT_NAME), "
        "'CnstIsClustKey'), object_id('[dbo].[' + c.TABLE_NAME + ']') - OBJECT_ID('dbo.t') "
        "FROM INFORMATION_SCHEMA.KEY_COLUMN_USAGE AS c",
    )
    assert got == [["id"], [1], [0]]


def test_nested_string_concatenation_and_division(session: Any) -> None:
    assert rows(session, "SELECT 'a' + 'b' + 'c', 7 / 2 / 2, CAST(CAST(2.7 AS int) AS varchar(5)) + 'x'") == [
        ["abc"],
        [1],
        ["2x"],
    ]


def test_full_table_name_qualifiers_on_columns(session: Any) -> None:
    run(session, "CREATE TABLE t (a int)")
    got = rows(
        session,
        "SELECT [INFORMATION_SCHEMA].[TABLES].[TABLE_NAME] FROM [INFORMATION_SCHEMA].[TABLES] "
        "WHERE [INFORMATION_SCHEMA].[TABLES].[TABLE_SCHEMA] = 'dbo'",
    )
    assert got == [["t"]]
    assert rows(
        session, "SELECT 1 FROM fn_listextendedproperty(default, default, default, default, default, default, default)"
    ) == [[]]


# -- 5. SQLAlchemy mssql+pyodbc reflection ------------------------------------------------------
def _sqlalchemy_engine(sqlserver: Any, database: str) -> Any:
    import urllib.parse

    import sqlalchemy as sa

    from dtaas_dagster.sqlserver.drivers import msodbc18_driver_path

    driver = urllib.parse.quote_plus(msodbc18_driver_path() or "ODBC Driver 18 for SQL Server")
    password = urllib.parse.quote_plus(sqlserver.password)
    url = (
        f"mssql+pyodbc://{sqlserver.user}:{password}@{sqlserver.host}:{sqlserver.port}/{database}"
        f"?driver={driver}&Encrypt=no&TrustServerCertificate=yes"
    )
    return sa.create_engine(url)


_REFLECTED = (
    "CREATE TABLE dbo.t (id int NOT NULL, k nvarchar(10) NOT NULL DEFAULT 'x', v decimal(10,2) NULL, "
    "ts datetime2(7) NULL, CONSTRAINT pk_t PRIMARY KEY (id, k))"
)


def test_sqlalchemy_reflection_tables_and_primary_key(sqlserver: Any, sqlserver_db: Any) -> None:
    import sqlalchemy as sa

    with sqlserver_db.connect() as conn:
        conn.execute(_REFLECTED)
        conn.execute("CREATE TABLE dbo.u (a int)")
    engine = _sqlalchemy_engine(sqlserver, sqlserver_db.name)
    try:
        inspector = sa.inspect(engine)
        assert inspector.get_table_names(schema="dbo") == ["t", "u"]
        pk = inspector.get_pk_constraint("t", schema="dbo")
        assert pk["name"] == "pk_t" and pk["constrained_columns"] == ["id", "k"]
        assert inspector.get_indexes("t", schema="dbo") == []  # the PK's index is not listed
        assert inspector.get_foreign_keys("t", schema="dbo") == []
    finally:
        engine.dispose()


def test_sqlalchemy_reflection_columns(sqlserver: Any, sqlserver_db: Any) -> None:
    import sqlalchemy as sa

    with sqlserver_db.connect() as conn:
        conn.execute(_REFLECTED)
    engine = _sqlalchemy_engine(sqlserver, sqlserver_db.name)
    try:
        columns = sa.inspect(engine).get_columns("t", schema="dbo")
    finally:
        engine.dispose()
    assert [c["name"] for c in columns] == ["id", "k", "v", "ts"]
    assert [c["nullable"] for c in columns] == [False, False, True, True]
    assert isinstance(columns[1]["type"], sa.NVARCHAR) and columns[1]["type"].length == 10
    assert (columns[2]["type"].precision, columns[2]["type"].scale) == (10, 2)
    assert columns[1]["default"] == "('x')"


def test_create_schema_and_drop_database_with_brackets(session: Any) -> None:
    run(session, "CREATE DATABASE [other]")
    run(session, "USE [other] CREATE SCHEMA [stage] CREATE TABLE stage.x (a int) INSERT INTO stage.x VALUES (1)")
    assert rows(session, "SELECT a FROM [stage].[x]") == [[1]]
    run(session, "USE sales DROP DATABASE [other]")
    run(session, "DROP DATABASE IF EXISTS [other]")
    assert rows(session, "SELECT COUNT(*) FROM sys.databases WHERE name = 'other'") == [[0]]


# -- 8. datetime precision ----------------------------------------------------------------------
def test_datetime_rounds_to_one_three_hundredth_second(session: Any) -> None:
    import datetime as dt

    run(session, "CREATE TABLE t (id int, d datetime)")
    run(
        session,
        "INSERT INTO t VALUES (1, '2024-01-01 00:00:00.001'), (2, '2024-01-01 00:00:00.002'), "
        "(3, '2024-01-01 00:00:00.005'), (4, '2024-01-01 23:59:59.999'), (5, '2024-02-29 12:34:56.500')",
    )
    got = rows(session, "SELECT d FROM t ORDER BY id")[0]
    base = dt.datetime(2024, 1, 1)
    assert got == [
        base,
        base.replace(microsecond=3000),
        base.replace(microsecond=7000),
        dt.datetime(2024, 1, 2),
        dt.datetime(2024, 2, 29, 12, 34, 56, 500000),
    ]
    cast = rows(
        session,
        "SELECT CAST('2024-01-01 00:00:00.002' AS datetime), "
        "CONVERT(datetime, '2024-01-01 00:00:00.005'), TRY_CONVERT(int, 'x')",
    )
    assert cast == [[base.replace(microsecond=3000)], [base.replace(microsecond=7000)], [None]]


# -- 6/7. INSERT fast path and fast_executemany ---------------------------------------------------
def test_literal_insert_fast_path_keeps_sql_server_checks(session: Any) -> None:
    run(session, "CREATE TABLE t (id int NOT NULL PRIMARY KEY, s nvarchar(5), d decimal(6,2), b varbinary(4), f float)")
    run(
        session, "INSERT INTO [dbo].[t] (id, s, d, b, f) VALUES (1, N'it''s', 1.5, 0x, 1e3), (-2, NULL, 3, 0x0A, -1.5);"
    )
    assert rows(session, "SELECT id, s, d, b, f FROM t ORDER BY id") == [
        [-2, 1],
        [None, "it's"],
        [3, 1.5],
        [b"\x0a", b""],
        [-1.5, 1000.0],
    ]
    for bad, number in (
        ("INSERT INTO t (id) VALUES (1)", 2627),
        ("INSERT INTO t (id, s) VALUES (3, 'toolong')", 2628),
        ("INSERT INTO t (id) VALUES (NULL)", 515),
        ("INSERT INTO t (id) VALUES ('x')", 245),
        ("INSERT INTO nope VALUES (1)", 208),
        ("INSERT INTO t (id, s) VALUES (4)", 109),
    ):
        with pytest.raises(SqlServerError) as e:
            run(session, bad)
        assert e.value.number == number, bad
    assert rows(session, "SELECT COUNT(*) FROM t") == [[2]]


@pytest.mark.double_only
def test_fast_executemany_through_driver_18(sqlserver_db: Any) -> None:
    """Driver 18 asks sp_describe_undeclared_parameters for the types, then sends the rows."""
    import datetime as dt
    from decimal import Decimal

    data = [(i, f"n{i}é", Decimal(i) / 8, dt.datetime(2024, 1, 1, 0, 0, 0, i)) for i in range(1, 6)] + [
        (99, None, None, None)
    ]
    with sqlserver_db.connect() as conn:
        conn.execute("CREATE TABLE t (a int NOT NULL, b nvarchar(20), c decimal(12,3), d datetime2(7))")
        cursor = conn.cursor()
        cursor.fast_executemany = True
        cursor.executemany("INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?)", data)
        got = [tuple(r) for r in conn.execute("SELECT a, b, c, d FROM t ORDER BY a").fetchall()]
    assert got == data


# -- 2. string, date and math functions the README lists ---------------------------------------------
def test_common_functions(session: Any) -> None:
    import datetime as dt
    from decimal import Decimal

    run(session, "CREATE TABLE t (s nvarchar(20), n int, d date)")
    run(session, "INSERT INTO t VALUES (N'  abc ', 3, '2024-02-10')")
    assert rows(
        session,
        "SELECT REPLICATE('ab', n), CHARINDEX('b', s), CHARINDEX('c', s, 2), LTRIM(s), RTRIM(s), "
        "REVERSE('abc'), SPACE(2) + 'x', STUFF('abcdef', 2, 3, 'X'), ISNULL(NULL, n), "
        "IIF(n > 1, 'y', 'n'), CONCAT_WS('-', 'a', 'b'), LEN(s), CONCAT('a', n, NULL) FROM t",
    ) == [["ababab"], [4], [5], ["abc "], ["  abc"], ["cba"], ["  x"], ["aXef"], [3], ["y"], ["a-b"], [5], ["a3"]]
    assert rows(
        session,
        "SELECT UPPER(s), SUBSTRING('abcdef', 2, 3), LEFT('abc', 2), RIGHT('abc', 2), REPLACE('aXb', 'X', 'y') FROM t",
    ) == [["  ABC "], ["bcd"], ["ab"], ["bc"], ["ayb"]]
    assert rows(session, "SELECT STRING_AGG(s, ',') FROM t") == [["  abc "]]
    with pytest.raises(SqlServerError) as e:
        rows(session, "SELECT s, STRING_AGG(s, ',') FROM t")
    assert e.value.number == 8120
    assert rows(
        session,
        "SELECT YEAR(d), MONTH(d), DAY(d), DATEDIFF(day, d, '2024-03-01'), EOMONTH(d), "
        "DATEFROMPARTS(2020, 1, 2), DATEPART(weekday, d) FROM t",
    ) == [[2024], [2], [10], [20], [dt.date(2024, 2, 29)], [dt.date(2020, 1, 2)], [7]]
    assert rows(
        session,
        "SELECT CEILING(1.2), FLOOR(-1.2), ABS(-3), SQRT(16.0), ASCII('A'), CHAR(66), "
        "UNICODE(N'é'), COALESCE(NULL, 'x'), NULLIF(1, 1)",
    ) == [[Decimal(2)], [Decimal(-2)], [3], [4.0], [65], ["B"], [233], ["x"], [None]]
    types, got = result(session, "SELECT SYSUTCDATETIME(), DATALENGTH(N'ab')")
    assert types[0] == SqlType("datetime2", scale=7) and len(got[0][0]) == 27 and got[1] == [4]


def test_real_is_float_24_in_the_catalog(session: Any) -> None:
    run(session, "CREATE TABLE dbo.r (a real, b float, c float(24), d REAL NOT NULL)")
    types = rows(
        session,
        "SELECT DATA_TYPE, NUMERIC_PRECISION FROM INFORMATION_SCHEMA.COLUMNS "
        "WHERE TABLE_NAME = 'r' ORDER BY ORDINAL_POSITION",
    )
    assert list(zip(*types)) == [("real", 24), ("float", 53), ("real", 24), ("real", 24)]


def test_rowcount_big_counts_the_rows_the_previous_select_sent(session: Any) -> None:
    run(session, "CREATE TABLE dbo.n (a int) INSERT INTO dbo.n VALUES (1), (2), (3)")
    types, columns = result(session, "SELECT a FROM dbo.n; SELECT ROWCOUNT_BIG() AS rows_sent")
    assert columns == [[3]] and types[0].name == "bigint"
