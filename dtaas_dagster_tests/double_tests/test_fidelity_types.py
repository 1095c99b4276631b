"""Fidelity: values, types and conversions, as SQL Server documents them.

Each test states one documented behaviour (the Microsoft page is in its
docstring) and runs over pyodbc + ODBC Driver 18 against the double, or
unchanged against a real SQL Server when ``DTAAS_TEST_SQLSERVER`` is set.
Values whose 100-ns digit matters are read as text (CONVERT style 121) or
with DATEPART(nanosecond, ...), since pyodbc's datetime has microseconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import closing

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase


@pytest.fixture()
def conn(sqlserver_db: SqlServerDatabase) -> Iterator[pyodbc.Connection]:
    with closing(sqlserver_db.connect()) as connection:
        yield connection


def one(conn: pyodbc.Connection, sql: str, *params: object) -> tuple:
    return tuple(conn.execute(sql, *params).fetchone())


def described(conn: pyodbc.Connection, sql: str) -> list[tuple]:
    """(type_code, internal size, precision, scale) of each result column, as the driver reports them."""
    return [(d[1], d[3], d[4], d[5]) for d in conn.execute(sql).description]


# -- strings ---------------------------------------------------------------------------------------
def test_string_comparisons_ignore_trailing_blanks(conn: pyodbc.Connection) -> None:
    """``=``, ``<>``, ``IN`` and ``BETWEEN`` pad the shorter string with blanks; LIKE ignores the value's
    trailing blanks but not the pattern's.

    https://learn.microsoft.com/en-us/sql/t-sql/language-elements/string-comparison-assignment
    https://learn.microsoft.com/en-us/sql/t-sql/language-elements/like-transact-sql
    """
    conn.execute(
        "CREATE TABLE dbo.codes (id int NOT NULL PRIMARY KEY, c char(5) NULL, v varchar(10) NULL, n nchar(4) NULL)"
    )
    conn.execute("INSERT INTO dbo.codes VALUES (1, 'ab', 'ab  ', N'x'), (2, 'abc', 'abc', N'y ')")
    ids = lambda where, *p: [r[0] for r in conn.execute(f"SELECT id FROM dbo.codes WHERE {where} ORDER BY id", *p)]  # noqa: E731
    assert ids("c = 'ab'") == [1]
    assert ids("v = 'ab' AND c = v AND n = N'x   '") == [1]
    assert ids("c = ?", "ab") == [1]
    assert ids("c IN ('ab', 'zz')") == [1]
    assert ids("c BETWEEN 'ab' AND 'ab'") == [1]
    assert ids("c <> 'ab'") == [2]
    assert ids("c LIKE 'ab'") == [1]
    assert ids("v LIKE 'abc '") == []
    assert one(conn, "SELECT LEN(c), DATALENGTH(c) FROM dbo.codes WHERE id = 1") == (2, 5)


def test_keys_compare_like_the_collation(sqlserver_db: SqlServerDatabase) -> None:
    """A primary key compares as ``=`` does: ``'a'``, ``'A'`` and ``'a '`` are the same key (2627), on every
    INSERT path (literal batch, one-row parameterised INSERT, pyodbc fast_executemany in a transaction).

    https://learn.microsoft.com/en-us/sql/t-sql/language-elements/string-comparison-assignment
    https://learn.microsoft.com/en-us/sql/relational-databases/tables/create-primary-keys
    """
    with closing(sqlserver_db.connect()) as conn:
        conn.execute("CREATE TABLE dbo.keyed (k varchar(10) NOT NULL PRIMARY KEY, n int NULL)")
        conn.execute("INSERT INTO dbo.keyed VALUES ('a', 1)")
        for statement, params in (
            ("INSERT INTO dbo.keyed VALUES ('a  ', 2)", ()),
            ("INSERT INTO dbo.keyed VALUES (?, ?)", ("A ", 3)),
            ("INSERT INTO dbo.keyed VALUES ('b', 4), ('B ', 5)", ()),
        ):
            with pytest.raises(pyodbc.IntegrityError, match="2627"):
                conn.execute(statement, *params)
    with closing(sqlserver_db.connect(autocommit=False)) as conn:
        cursor = conn.cursor()
        cursor.fast_executemany = True
        with pytest.raises(pyodbc.IntegrityError, match="2627"):
            cursor.executemany("INSERT INTO dbo.keyed VALUES (?, ?)", [("c", 6), ("c ", 7)])
        conn.rollback()
    with closing(sqlserver_db.connect()) as conn:
        assert [tuple(r) for r in conn.execute("SELECT k, n FROM dbo.keyed")] == [("a", 1)]


def test_nchar_holds_characters_outside_the_bmp_as_two_code_units(conn: pyodbc.Connection) -> None:
    """nchar(n)/nvarchar(n) count UTF-16 byte-pairs: an emoji takes two, padding fills the rest, and a value
    with more code units than n is error 2628.

    https://learn.microsoft.com/en-us/sql/t-sql/data-types/nchar-and-nvarchar-transact-sql
    """
    conn.execute("CREATE TABLE dbo.emoji (id int NOT NULL PRIMARY KEY, n nchar(3) NULL, nv nvarchar(3) NULL)")
    conn.execute("INSERT INTO dbo.emoji VALUES (1, N'😀', N'a😀')")
    conn.execute("INSERT INTO dbo.emoji VALUES (?, ?, ?)", 2, "é😀", "😀")
    rows = conn.execute("SELECT id, n, nv, DATALENGTH(n), DATALENGTH(nv), LEN(n) FROM dbo.emoji ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [(1, "😀 ", "a😀", 6, 6, 2), (2, "é😀", "😀", 6, 4, 3)]
    with pytest.raises(pyodbc.Error, match="2628"):
        conn.execute("INSERT INTO dbo.emoji (id, nv) VALUES (3, N'a😀b')")
    with pytest.raises(pyodbc.Error, match="2628"):
        conn.execute("INSERT INTO dbo.emoji (id, n) VALUES (3, N'😀😀')")
    with pytest.raises(pyodbc.Error, match="2628"):
        conn.execute("INSERT INTO dbo.emoji (id, n) VALUES (3, N'abcd')")


def test_char_too_long_is_2628_not_cut(conn: pyodbc.Connection) -> None:
    """Inserting a longer string into char(n) fails with 2628 (ANSI_WARNINGS ON); it is not truncated.

    https://learn.microsoft.com/en-us/sql/t-sql/data-types/char-and-varchar-transact-sql
    """
    conn.execute("CREATE TABLE dbo.fixed (c char(3) NULL)")
    with pytest.raises(pyodbc.Error, match="2628"):
        conn.execute("INSERT INTO dbo.fixed VALUES ('abcdef')")
    assert conn.execute("SELECT COUNT(*) FROM dbo.fixed").fetchval() == 0


def test_varchar_max_holds_values_over_8000_bytes(conn: pyodbc.Connection) -> None:
    """(max) types hold up to 2^31-1 bytes; REPLICATE of a non-(max) string stops at 8,000 bytes, and ``+``
    with a (max) operand stays (max).

    https://learn.microsoft.com/en-us/sql/t-sql/data-types/char-and-varchar-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/functions/replicate-transact-sql
    """
    conn.execute("CREATE TABLE dbo.big (id int NOT NULL PRIMARY KEY, v varchar(max) NULL, nv nvarchar(max) NULL)")
    conn.execute(
        "INSERT INTO dbo.big VALUES (1, REPLICATE(CAST('x' AS varchar(max)), 9000), "
        "REPLICATE(CAST(N'ü' AS nvarchar(max)), 40000))"
    )
    conn.execute("INSERT INTO dbo.big (id, v) VALUES (?, ?)", 2, "y" * 20000)
    assert one(conn, "SELECT LEN(v), DATALENGTH(nv) FROM dbo.big WHERE id = 1") == (9000, 80000)
    v, nv, longer = one(conn, "SELECT v, nv, v + 'z' FROM dbo.big WHERE id = 1")
    assert (v, nv, longer) == ("x" * 9000, "ü" * 40000, "x" * 9000 + "z")
    assert conn.execute("SELECT v FROM dbo.big WHERE id = 2").fetchval() == "y" * 20000
    short, national = one(conn, "SELECT REPLICATE('ab', 5000), REPLICATE(N'ab', 5000)")
    assert (len(short), len(national)) == (8000, 4000)
    assert described(conn, "SELECT v + 'z' AS a, CONCAT(v, 1) AS b FROM dbo.big")[0][1] == 0  # (max): no size


def test_concatenation_result_types(conn: pyodbc.Connection) -> None:
    """``+`` of strings: nvarchar when either side is, the lengths added.

    https://learn.microsoft.com/en-us/sql/t-sql/data-types/precision-scale-and-length-transact-sql
    """
    conn.execute("CREATE TABLE dbo.names (a varchar(10) NULL, b nvarchar(20) NULL)")
    assert described(conn, "SELECT a + a AS aa, a + b AS ab FROM dbo.names") == [(str, 20, 20, 0), (str, 30, 30, 0)]


# -- derived tables --------------------------------------------------------------------------------------
def test_derived_tables_and_ctes_keep_their_column_types(conn: pyodbc.Connection) -> None:
    """A derived table's (or CTE's) columns have the types of the expressions that define them.

    https://learn.microsoft.com/en-us/sql/t-sql/queries/from-transact-sql#derived_table
    """
    conn.execute(
        "CREATE TABLE dbo.typed (id int NOT NULL PRIMARY KEY, d7 datetime2(7) NULL, d3 datetime2(3) NULL, "
        "g uniqueidentifier NULL, m money NULL, c char(3) NULL)"
    )
    conn.execute(
        "INSERT INTO dbo.typed VALUES (1, '2024-01-02 03:04:05.1234567', '2024-01-02 03:04:05.123', "
        "'0E984725-C51C-4BF4-9960-E1C80E27ABA0', 1.5, 'ab')"
    )
    direct = described(conn, "SELECT id, d7, d3, g, m, c FROM dbo.typed")
    assert described(conn, "SELECT * FROM (SELECT id, d7, d3, g, m, c FROM dbo.typed) AS t") == direct
    assert described(conn, "WITH t AS (SELECT id, d7, d3, g, m, c FROM dbo.typed) SELECT * FROM t") == direct
    assert described(conn, "SELECT t.* FROM (SELECT * FROM dbo.typed) AS t") == direct
    assert direct[1][2:] == (27, 7) and direct[2][2:] == (23, 3) and direct[3][1] == 36
    renamed = described(conn, "WITH t (a, b) AS (SELECT d3, g FROM dbo.typed) SELECT b, a FROM t")
    assert renamed == [direct[3], direct[2]]
    assert one(conn, "SELECT g, CONVERT(varchar(27), d7, 121) FROM (SELECT g, d7 FROM dbo.typed) AS t") == (
        "0E984725-C51C-4BF4-9960-E1C80E27ABA0",
        "2024-01-02 03:04:05.1234567",
    )


# -- CAST / CONVERT ------------------------------------------------------------------------------------
def test_cast_to_a_string_without_a_length_is_30_long(conn: pyodbc.Connection) -> None:
    """``CAST(x AS varchar)`` and ``CONVERT(nvarchar, x)`` have length 30.

    https://learn.microsoft.com/en-us/sql/t-sql/functions/cast-and-convert-transact-sql
    """
    assert one(conn, "SELECT CAST(12345 AS varchar), CONVERT(nvarchar, 678), CAST(1.5 AS varchar)") == (
        "12345",
        "678",
        "1.5",
    )
    assert [d[1] for d in described(conn, "SELECT CAST(12345 AS varchar), CONVERT(nvarchar, 678)")] == [30, 30]


def test_cast_to_sysname_is_nvarchar_128_and_truncates_nothing(conn: pyodbc.Connection) -> None:
    """``sysname`` is nvarchar(128) in CAST too (the 30 of a length-less string type does
    not apply): a 94-character capture instance name came back cut to 30 characters."""
    name = "dbo_history_" + "x" * 82
    assert one(conn, "SELECT CAST(? AS sysname)", name) == (name,)
    assert [d[1] for d in described(conn, "SELECT CAST(N'a' AS sysname) AS n")] == [128]


def test_a_union_types_its_text_columns_by_the_widest_branch(conn: pyodbc.Connection) -> None:
    """SQL Server types a UNION's column from all its branches (the longer length, nvarchar over
    varchar); the double took the first branch's, and a longer value in a later branch failed.
    (The double widens text columns only, not binary ones.)"""
    name = "dbo_history_" + "x" * 82
    assert [r[0] for r in conn.execute("SELECT ? AS n UNION ALL SELECT ?", "ab", name).fetchall()] == ["ab", name]
    sql = "SELECT CAST('a' AS varchar(3)) AS t UNION ALL SELECT CAST(N'bbbbbb' AS nvarchar(6))"
    assert [r[0] for r in conn.execute(sql).fetchall()] == ["a", "bbbbbb"]
    assert [(d[0], d[1], d[3]) for d in conn.execute(sql).description] == [("t", str, 6)]


def test_a_union_in_brackets_a_cte_or_a_derived_table_is_typed_by_all_its_branches(conn: pyodbc.Connection) -> None:
    bracketed = (
        "SELECT CAST('2024-01-02 03:04:05.1234567' AS datetime2(7)) AS t, CAST('ab' AS varchar(2)) AS s "
        "UNION ALL (SELECT CAST('2024-01-02 03:04:05.7654321' AS datetime2(7)), 'cde')"
    )
    assert [(d[1], d[3]) for d in conn.execute(bracketed).description] == [(dt.datetime, 27), (str, 3)]
    assert [r[1] for r in conn.execute(bracketed).fetchall()] == ["ab", "cde"]
    for sql in (
        "WITH c AS (SELECT 'a' AS x UNION ALL SELECT 'bbbb') SELECT x FROM c",
        "SELECT t.x FROM (SELECT 'a' AS x UNION ALL SELECT 'bbbb') AS t",
        "SELECT * FROM (SELECT 'a' AS x UNION ALL (SELECT 'bbbb')) AS t",
        "SELECT 'a' AS x UNION ALL SELECT CASE WHEN 1 = 1 THEN 'bbbb' END",  # a branch the double cannot type
    ):
        assert [r[0] for r in conn.execute(sql).fetchall()] == ["a", "bbbb"], sql


_STYLED = {
    "CONVERT(varchar(27), d7, 121)": "2024-01-02 15:04:05.1234567",
    "CONVERT(varchar(30), d3, 121)": "2024-01-02 15:04:05.120",
    "CONVERT(varchar(30), d0, 121)": "2024-01-02 15:04:05",
    "CONVERT(varchar(30), dt, 121)": "2024-01-02 15:04:05.123",
    "CONVERT(varchar(30), d, 121)": "2024-01-02",
    "CONVERT(varchar(30), t3, 121)": "15:04:05.123",
    "CONVERT(varchar, d7, 120)": "2024-01-02 15:04:05",
    "CONVERT(varchar, dt, 100)": "Jan  2 2024  3:04PM",
    "CONVERT(varchar, dt, 0)": "Jan  2 2024  3:04PM",
    "CONVERT(varchar, d7, 101)": "01/02/2024",
    "CONVERT(varchar, d7, 103)": "02/01/2024",
    "CONVERT(varchar, d7, 104)": "02.01.2024",
    "CONVERT(varchar, d7, 110)": "01-02-2024",
    "CONVERT(varchar, d7, 111)": "2024/01/02",
    "CONVERT(varchar, d7, 112)": "20240102",
    "CONVERT(varchar, d7, 23)": "2024-01-02",
    "CONVERT(varchar, d7, 108)": "15:04:05",
    "CONVERT(varchar, dt, 113)": "02 Jan 2024 15:04:05:123",
    "CONVERT(varchar, dt, 114)": "15:04:05:123",
    "CONVERT(varchar, d7, 126)": "2024-01-02T15:04:05.1234567",
    "CONVERT(varchar, d0, 126)": "2024-01-02T15:04:05",
    "CONVERT(varchar(40), o, 121)": "2024-01-02 15:04:05.1234567 +05:30",
    "CAST(dt AS varchar(30))": "Jan  2 2024  3:04PM",
    "CAST(d7 AS nvarchar(30))": "2024-01-02 15:04:05.1234567",
    "CAST(d3 AS varchar(30))": "2024-01-02 15:04:05.120",
}


def test_convert_date_styles(conn: pyodbc.Connection) -> None:
    """CONVERT's date and time styles, and the defaults (0 for datetime, 121 for datetime2/date/time/offset).

    https://learn.microsoft.com/en-us/sql/t-sql/functions/cast-and-convert-transact-sql#date-and-time-styles
    """
    conn.execute(
        "CREATE TABLE dbo.moments (d7 datetime2(7), d3 datetime2(3), d0 datetime2(0), dt datetime, "
        "d date, t3 time(3), o datetimeoffset(7))"
    )
    conn.execute(
        "INSERT INTO dbo.moments VALUES ('2024-01-02 15:04:05.1234567', '2024-01-02 15:04:05.12', "
        "'2024-01-02 15:04:05', '2024-01-02 15:04:05.123', '2024-01-02', '15:04:05.123', "
        "'2024-01-02 15:04:05.1234567 +05:30')"
    )
    expressions = list(_STYLED)
    row = one(conn, f"SELECT {', '.join(expressions)} FROM dbo.moments")
    assert dict(zip(expressions, row)) == _STYLED


def test_convert_reads_strings_in_a_style(conn: pyodbc.Connection) -> None:
    """A style also says how to read a string: 103 is dd/mm/yyyy, 101 mm/dd/yyyy, 112 yyyymmdd; a string that is
    no date is error 241 (NULL with TRY_CONVERT).

    https://learn.microsoft.com/en-us/sql/t-sql/functions/cast-and-convert-transact-sql#date-and-time-styles
    """
    assert one(
        conn,
        "SELECT CONVERT(date, '02/01/2024', 103), CONVERT(date, '02/01/2024', 101), "
        "CONVERT(datetime, '20240102', 112), TRY_CONVERT(date, 'nope', 103)",
    ) == (dt.date(2024, 1, 2), dt.date(2024, 2, 1), dt.datetime(2024, 1, 2), None)
    with pytest.raises(pyodbc.Error, match="241"):
        conn.execute("SELECT CAST('nope' AS datetime2)").fetchall()


# -- date and time precision --------------------------------------------------------------------------
def test_cast_of_a_7_digit_literal_keeps_the_100ns_digit(conn: pyodbc.Connection) -> None:
    """datetime2 (default scale 7) has 100-ns accuracy, also through CAST/CONVERT of a literal.

    https://learn.microsoft.com/en-us/sql/t-sql/data-types/datetime2-transact-sql
    """
    literal = "'2024-01-02 03:04:05.1234567'"
    assert one(
        conn,
        f"SELECT CONVERT(varchar(27), CAST({literal} AS datetime2), 121), "
        f"DATEPART(nanosecond, CONVERT(datetime2, {literal})), "
        f"CONVERT(varchar(40), CAST({literal} + ' +01:00' AS datetimeoffset), 121)",
    ) == ("2024-01-02 03:04:05.1234567", 123456700, "2024-01-02 03:04:05.1234567 +01:00")
    assert described(conn, f"SELECT CAST({literal} AS datetime2)")[0][2:] == (27, 7)


def test_insert_rounds_to_the_column_scale(conn: pyodbc.Connection) -> None:
    """datetime2(n)/time(n)/datetimeoffset(n) round (not truncate) the fraction to n digits; time wraps at midnight.

    https://learn.microsoft.com/en-us/sql/t-sql/data-types/datetime2-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/data-types/time-transact-sql
    """
    conn.execute(
        "CREATE TABLE dbo.rounded (id int NOT NULL PRIMARY KEY, d0 datetime2(0) NULL, d3 datetime2(3) NULL, "
        "d6 datetime2(6) NULL, t0 time(0) NULL, t3 time(3) NULL, o3 datetimeoffset(3) NULL)"
    )
    conn.execute(
        "INSERT INTO dbo.rounded VALUES (1, '2024-01-02 03:04:05.5', '2024-01-02 03:04:05.1235', "
        "'2024-01-02 03:04:05.1234565', '23:59:59.5', '12:00:00.1235', '2024-01-02 03:04:05.1235 +05:30')"
    )
    conn.execute(
        "INSERT INTO dbo.rounded (id, d3, t3) VALUES (?, ?, ?)", 2, "2024-01-02 03:04:05.9996", "12:00:00.1235"
    )
    conn.execute("UPDATE dbo.rounded SET d3 = '2024-12-31 23:59:59.9996' WHERE id = 1")
    rows = conn.execute(
        "SELECT CONVERT(varchar(30), d0, 121), CONVERT(varchar(30), d3, 121), DATEPART(nanosecond, d6), "
        "CONVERT(varchar(20), t0, 121), CONVERT(varchar(20), t3, 121), CONVERT(varchar(40), o3, 121) "
        "FROM dbo.rounded ORDER BY id"
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        (
            "2024-01-02 03:04:06",
            "2025-01-01 00:00:00.000",
            123457000,
            "00:00:00",
            "12:00:00.124",
            "2024-01-02 03:04:05.124 +05:30",
        ),
        (None, "2024-01-02 03:04:06.000", None, None, "12:00:00.124", None),
    ]


def test_dateadd_and_isnull_keep_datetime2_7(conn: pyodbc.Connection) -> None:
    """DATEADD returns its date's type; ISNULL the first argument's; COALESCE the highest-precedence type.

    https://learn.microsoft.com/en-us/sql/t-sql/functions/dateadd-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/functions/isnull-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/functions/coalesce-transact-sql
    """
    conn.execute(
        "CREATE TABLE dbo.stamps (d7 datetime2(7) NULL, n7 datetime2(7) NULL, d3 datetime2(3) NULL, "
        "dt datetime NULL, o datetimeoffset(7) NULL)"
    )
    conn.execute(
        "INSERT INTO dbo.stamps VALUES ('2024-01-31 15:04:05.1234567', NULL, '2024-01-02 15:04:05.120', "
        "'2024-01-02 15:04:05.123', '2024-01-02 15:04:05.1234567 +05:30')"
    )
    assert one(
        conn,
        "SELECT CONVERT(varchar(27), DATEADD(day, 1, d7), 121), CONVERT(varchar(27), "
        "DATEADD(month, 1, d7), 121), CONVERT(varchar(40), DATEADD(hour, 1, o), 121), "
        "CONVERT(varchar(27), ISNULL(n7, d3), 121), CONVERT(varchar(30), ISNULL(d3, d7), 121), "
        "CONVERT(varchar(27), COALESCE(n7, d7, dt), 121) FROM dbo.stamps",
    ) == (
        "2024-02-01 15:04:05.1234567",
        "2024-02-29 15:04:05.1234567",
        "2024-01-02 16:04:05.1234567 +05:30",
        "2024-01-02 15:04:05.1200000",
        "2024-01-02 15:04:05.120",
        "2024-01-31 15:04:05.1234567",
    )
    assert described(conn, "SELECT DATEADD(day, 1, d7), ISNULL(n7, GETDATE()), ISNULL(d3, d7) FROM dbo.stamps") == [
        (dt.datetime, 27, 27, 7),
        (dt.datetime, 27, 27, 7),
        (dt.datetime, 23, 23, 3),
    ]
    assert one(
        conn, "SELECT YEAR(d7), DATEPART(hour, o), DATEDIFF(day, d3, d7), DATEPART(nanosecond, d7) FROM dbo.stamps"
    ) == (2024, 15, 29, 123456700)
    assert (
        conn.execute(
            "SELECT COUNT(*) FROM dbo.stamps WHERE d7 > '2024-01-31' AND d7 > d3 "
            "AND d7 = '2024-01-31 15:04:05.1234567' AND d7 > ?",
            dt.datetime(2024, 1, 31, 15, 4, 5, 123456),
        ).fetchval()
        == 1
    )


def test_sysdatetime_and_sysdatetimeoffset_types(conn: pyodbc.Connection) -> None:
    """SYSDATETIME() and SYSUTCDATETIME() are datetime2(7); SYSDATETIMEOFFSET() is datetimeoffset(7).

    https://learn.microsoft.com/en-us/sql/t-sql/functions/sysdatetimeoffset-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/functions/sysdatetime-transact-sql
    """
    described_types = conn.execute("SELECT SYSDATETIME(), SYSUTCDATETIME(), SYSDATETIMEOFFSET()").description
    assert [(d[4], d[5]) for d in described_types] == [(27, 7), (27, 7), (34, 7)]
    text = conn.execute("SELECT CONVERT(varchar(40), SYSDATETIMEOFFSET(), 121)").fetchval()
    parsed = dt.datetime.strptime(text[:26] + text[27:], "%Y-%m-%d %H:%M:%S.%f %z")
    assert abs(parsed - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


# -- overflow -----------------------------------------------------------------------------------------
def test_numeric_overflow_is_8115(conn: pyodbc.Connection) -> None:
    """A value too large for decimal(p,s) is 8115 "Arithmetic overflow error converting numeric to data type
    numeric", in INSERT and in CAST; a statement-level error, so the transaction stays open.

    https://learn.microsoft.com/en-us/sql/t-sql/data-types/decimal-and-numeric-transact-sql
    """
    conn.execute("CREATE TABLE dbo.amounts (v decimal(5,2) NULL, i int NULL)")
    conn.execute("BEGIN TRANSACTION")
    conn.execute("INSERT INTO dbo.amounts (v) VALUES (1.5)")
    with pytest.raises(pyodbc.Error, match="8115"):
        conn.execute("INSERT INTO dbo.amounts (v) VALUES (123456.7)")
    with pytest.raises(pyodbc.Error, match="8115"):
        conn.execute("INSERT INTO dbo.amounts (v) VALUES (?)", 1234.5)
    with pytest.raises(pyodbc.Error, match="8115"):
        conn.execute("SELECT CAST(123456.7 AS decimal(5,2))").fetchall()
    with pytest.raises(pyodbc.Error, match="8115"):
        conn.execute("INSERT INTO dbo.amounts (i) VALUES (3000000000)")
    assert conn.execute("SELECT @@TRANCOUNT").fetchval() == 1
    conn.execute("COMMIT")
    assert conn.execute("SELECT COUNT(*) FROM dbo.amounts").fetchval() == 1
