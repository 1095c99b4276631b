"""Fidelity: names and catalog views, as SQL Server documents them and peer tools read them.

Each test states one documented behaviour (the Microsoft page is in its
docstring) and runs over pyodbc + ODBC Driver 18 against the double, or
unchanged against a real SQL Server when ``DTAAS_TEST_SQLSERVER`` is set.
"""

from __future__ import annotations

from contextlib import closing

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase


@pytest.fixture()
def conn(sqlserver_db: SqlServerDatabase) -> pyodbc.Connection:
    with closing(sqlserver_db.connect()) as connection:
        yield connection


def test_delimited_identifiers_may_hold_quotes_brackets_and_dots(conn: pyodbc.Connection) -> None:
    """A delimited identifier may contain any character; ``]`` is written ``]]`` inside brackets.

    https://learn.microsoft.com/en-us/sql/relational-databases/databases/database-identifiers
    """
    conn.execute("CREATE TABLE dbo.[it's] ([q\"x] int NOT NULL PRIMARY KEY, [a]]b] nvarchar(10) NULL, [x.y] int NULL)")
    conn.execute("INSERT INTO dbo.[it's] VALUES (1, N'one', 10)")
    conn.execute("INSERT INTO dbo.[it's] ([q\"x], [a]]b]) VALUES (?, ?)", 2, "two")
    conn.execute("INSERT INTO dbo.[it's] ([q\"x], [a]]b]) SELECT 3, N'three'")
    conn.execute("UPDATE dbo.[it's] SET [x.y] = [q\"x] * 100 WHERE [a]]b] = N'three'")
    conn.execute("DELETE FROM dbo.[it's] WHERE [q\"x] = 2")

    cursor = conn.execute("SELECT t.[q\"x], t.[a]]b], [x.y] FROM dbo.[it's] AS t ORDER BY 1")
    assert [d[0] for d in cursor.description] == ['q"x', "a]b", "x.y"]
    assert [tuple(r) for r in cursor.fetchall()] == [(1, "one", 10), (3, "three", 300)]
    object_id = conn.execute("SELECT OBJECT_ID(N'[dbo].[it''s]')").fetchval()
    assert object_id is not None
    names = conn.execute("SELECT name FROM sys.columns WHERE object_id = ? ORDER BY column_id", object_id).fetchall()
    assert [r[0] for r in names] == ['q"x', "a]b", "x.y"]
    with pytest.raises(pyodbc.IntegrityError, match="2627"):
        conn.execute("INSERT INTO dbo.[it's] ([q\"x]) VALUES (1)")


# Words SQL Server does not reserve but DuckDB or sqlglot treat as keywords: plain column names in T-SQL.
_NOT_RESERVED = ["at", "window", "qualify", "limit", "offset", "interval", "true", "real", "exclude", "using",
                 "lock", "glob", "rollup"]


def test_names_that_are_not_reserved_in_tsql_need_no_brackets(conn: pyodbc.Connection) -> None:
    """Only the reserved keywords need delimiting; ``limit``, ``window``, ``real`` ... are regular identifiers.

    https://learn.microsoft.com/en-us/sql/t-sql/language-elements/reserved-keywords-transact-sql
    """
    columns = ", ".join(f"{name} int NULL" for name in _NOT_RESERVED)
    conn.execute(f"CREATE TABLE dbo.words (id int NOT NULL PRIMARY KEY, {columns})")
    names = ", ".join(_NOT_RESERVED)
    values = ", ".join(str(i) for i in range(len(_NOT_RESERVED)))
    conn.execute(f"INSERT INTO dbo.words (id, {names}) VALUES (1, {values})")
    conn.execute("UPDATE dbo.words SET interval = interval + 100, at = limit * 10 WHERE window = 1")
    row = conn.execute(f"SELECT {names} FROM dbo.words WHERE real = 7 AND true = 6 ORDER BY offset").fetchone()
    expected = list(range(len(_NOT_RESERVED)))
    expected[0], expected[5] = 30, 105
    assert list(row) == expected
    grouped = conn.execute("SELECT qualify, COUNT(*) FROM dbo.words GROUP BY qualify").fetchall()
    assert [tuple(r) for r in grouped] == [(2, 1)]
    types = conn.execute("SELECT c.name, t.name FROM sys.columns AS c JOIN sys.types AS t "
                         "ON t.user_type_id = c.user_type_id "
                         "WHERE c.object_id = OBJECT_ID('dbo.words') AND c.name = 'real'").fetchall()
    assert [tuple(r) for r in types] == [("real", "int")]
