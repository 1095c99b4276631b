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
_NOT_RESERVED = [
    "at",
    "window",
    "qualify",
    "limit",
    "offset",
    "interval",
    "true",
    "real",
    "exclude",
    "using",
    "lock",
    "glob",
    "rollup",
]


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
    row = conn.execute(f"SELECT {names} FROM dbo.words WHERE real = 7 AND true = 6 AND offset = 4").fetchone()
    expected = list(range(len(_NOT_RESERVED)))
    expected[0], expected[5] = 30, 105
    assert list(row) == expected
    grouped = conn.execute("SELECT qualify, COUNT(*) FROM dbo.words GROUP BY qualify").fetchall()
    assert [tuple(r) for r in grouped] == [(2, 1)]
    types = conn.execute(
        "SELECT c.name, t.name FROM sys.columns AS c JOIN sys.types AS t "
        "ON t.user_type_id = c.user_type_id "
        "WHERE c.object_id = OBJECT_ID('dbo.words') AND c.name = 'real'"
    ).fetchall()
    assert [tuple(r) for r in types] == [("real", "int")]


# -- what SQLAlchemy 2.1's mssql dialect sends (recorded from sqlalchemy 2.1.9 + pyodbc) ------------
SA21_OBJECT_NAMES = (
    "SELECT sys.objects.name FROM sys.objects JOIN sys.schemas ON sys.objects.schema_id = sys.schemas.schema_id "
    "WHERE sys.schemas.name = ? AND sys.objects.type IN (?, ?)"
)
SA21_COLUMNS = (
    "SELECT sys.objects.name AS table_name, sys.schemas.name AS owner, sys.columns.name AS column_name, "
    "sys.types.name AS type_name, base_types.name AS base_type, sys.columns.is_nullable, sys.columns.max_length, "
    "sys.columns.[precision], sys.columns.scale, sys.default_constraints.definition AS default_value, "
    "sys.columns.collation_name, sys.computed_columns.definition AS computed_definition, "
    "sys.computed_columns.is_persisted, sys.identity_columns.is_identity, "
    "CAST(sys.identity_columns.seed_value AS NUMERIC(38, 0)) AS seed_value, "
    "CAST(sys.identity_columns.increment_value AS NUMERIC(38, 0)) AS increment_value, "
    "CAST(sys.extended_properties.value AS NVARCHAR(max)) AS comment, sys.columns.column_id "
    "FROM sys.columns JOIN sys.objects ON sys.columns.object_id = sys.objects.object_id "
    "JOIN sys.schemas ON sys.objects.schema_id = sys.schemas.schema_id "
    "JOIN sys.types ON sys.columns.user_type_id = sys.types.user_type_id "
    "LEFT OUTER JOIN sys.types AS base_types ON sys.types.system_type_id = base_types.system_type_id "
    "AND base_types.user_type_id = base_types.system_type_id "
    "LEFT OUTER JOIN sys.default_constraints ON sys.default_constraints.object_id = sys.columns.default_object_id "
    "AND sys.default_constraints.parent_column_id = sys.columns.column_id "
    "LEFT OUTER JOIN sys.computed_columns ON sys.computed_columns.object_id = sys.columns.object_id "
    "AND sys.computed_columns.column_id = sys.columns.column_id "
    "LEFT OUTER JOIN sys.identity_columns ON sys.identity_columns.object_id = sys.columns.object_id "
    "AND sys.identity_columns.column_id = sys.columns.column_id "
    "LEFT OUTER JOIN sys.extended_properties ON sys.extended_properties.class = ? "
    "AND sys.extended_properties.name = ? AND sys.columns.object_id = sys.extended_properties.major_id "
    "AND sys.columns.column_id = sys.extended_properties.minor_id "
    "WHERE sys.schemas.name = ? AND sys.objects.name IN (?) ORDER BY sys.objects.name, sys.columns.column_id"
)
SA21_ISOLATION_PROBE = (
    "SELECT name FROM sys.system_views WHERE name IN ('dm_exec_sessions', 'dm_pdw_nodes_exec_sessions')"
)
SA21_ISOLATION = (
    "SELECT CASE transaction_isolation_level WHEN 0 THEN NULL WHEN 1 THEN 'READ UNCOMMITTED' "
    "WHEN 2 THEN 'READ COMMITTED' WHEN 3 THEN 'REPEATABLE READ' WHEN 4 THEN 'SERIALIZABLE' "
    "WHEN 5 THEN 'SNAPSHOT' END AS TRANSACTION_ISOLATION_LEVEL FROM sys.dm_exec_sessions where session_id = @@SPID"
)


def test_object_type_is_char_2_and_compares_without_its_trailing_blank(conn: pyodbc.Connection) -> None:
    """``sys.objects.type`` is char(2) (``'U '``); ``=``/``IN`` pad the shorter string, so ``type = 'U'`` matches.

    https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-objects-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/language-elements/string-comparison-assignment
    """
    conn.execute("CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, note nvarchar(20) NULL)")
    assert tuple(conn.execute("SELECT type, DATALENGTH(type) FROM sys.objects WHERE name = 'orders'").fetchone()) == (
        "U ",
        2,
    )
    assert [r[0] for r in conn.execute(SA21_OBJECT_NAMES, "dbo", "U", "V").fetchall()] == ["orders"]
    assert conn.execute("SELECT COUNT(*) FROM sys.objects WHERE type = 'U' AND name = 'orders'").fetchval() == 1
    assert (
        conn.execute("SELECT COUNT(*) FROM sys.tables WHERE type BETWEEN 'U' AND 'U' AND name = 'orders'").fetchval()
        == 1
    )


def test_sqlalchemy_21_column_reflection_statement(conn: pyodbc.Connection) -> None:
    """SQLAlchemy 2.1 reflects columns from sys.columns/sys.types; names, types, lengths and nullability come back.

    https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-columns-transact-sql
    """
    conn.execute(
        "CREATE TABLE dbo.orders (id int IDENTITY(1,1) NOT NULL PRIMARY KEY, customer nvarchar(50) NULL, "
        "amount decimal(18,2) NOT NULL DEFAULT 0, code char(3) NULL)"
    )
    rows = conn.execute(SA21_COLUMNS, 0, "MS_Description", "dbo", "orders").fetchall()
    got = [
        (r.column_name, r.type_name, r.base_type, r.is_nullable, r.max_length, r.precision, r.scale, r.is_identity)
        for r in rows
    ]
    assert got == [
        ("id", "int", "int", False, 4, 10, 0, True),
        ("customer", "nvarchar", "nvarchar", True, 100, 0, 0, None),
        ("amount", "decimal", "decimal", False, 9, 18, 2, None),
        ("code", "char", "char", True, 3, 0, 0, None),
    ]
    assert rows[2].default_value == "((0))"
    assert rows[1].collation_name == rows[3].collation_name == "SQL_Latin1_General_CP1_CI_AS"


def test_sqlalchemy_isolation_level_probe(conn: pyodbc.Connection) -> None:
    """``sys.system_views`` lists ``dm_exec_sessions``; its ``transaction_isolation_level`` is the session's (2, 5).

    https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-system-views-transact-sql
    https://learn.microsoft.com/en-us/sql/relational-databases/system-dynamic-management-views/sys-dm-exec-sessions-transact-sql
    """
    assert [r[0] for r in conn.execute(SA21_ISOLATION_PROBE).fetchall()] == ["dm_exec_sessions"]
    assert conn.execute(SA21_ISOLATION).fetchval() == "READ COMMITTED"
    conn.execute("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
    assert conn.execute(SA21_ISOLATION).fetchval() == "SNAPSHOT"
    row = conn.execute(
        "SELECT s.name, v.type, v.is_ms_shipped, v.object_id FROM sys.system_views AS v "
        "JOIN sys.schemas AS s ON s.schema_id = v.schema_id "
        "WHERE v.name = 'tables' AND v.schema_id = SCHEMA_ID('sys')"
    ).fetchone()
    assert (row[0], row[1], row[2]) == ("sys", "V ", True) and row[3] < 0


def test_synonyms_view_exists_with_base_object_name(conn: pyodbc.Connection) -> None:
    """``sys.synonyms``: sys.objects' columns plus ``base_object_name``; a new database has none.

    https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-synonyms-transact-sql
    """
    cursor = conn.execute("SELECT * FROM sys.synonyms")
    names = [d[0] for d in cursor.description]
    assert names[:3] == ["name", "object_id", "principal_id"] and "base_object_name" in names
    assert cursor.fetchall() == []
    sling_style = (
        "SELECT s.name AS schema_name, o.name AS object_name FROM sys.synonyms AS o "
        "JOIN sys.schemas AS s ON s.schema_id = o.schema_id WHERE o.type = 'SN'"
    )
    assert conn.execute(sling_style).fetchall() == []


def test_schemata_lists_the_database_schemas(conn: pyodbc.Connection) -> None:
    """INFORMATION_SCHEMA.SCHEMATA has a row per schema of the current database (SQLAlchemy's get_schema_names).

    https://learn.microsoft.com/en-us/sql/relational-databases/system-information-schema-views/schemata-transact-sql
    """
    rows = conn.execute(
        "SELECT SCHEMA_NAME, SCHEMA_OWNER FROM INFORMATION_SCHEMA.SCHEMATA "
        "WHERE SCHEMA_NAME IN ('dbo', 'sys', 'INFORMATION_SCHEMA') ORDER BY SCHEMA_NAME"
    ).fetchall()
    assert [tuple(r) for r in rows] == [("dbo", "dbo"), ("INFORMATION_SCHEMA", "INFORMATION_SCHEMA"), ("sys", "sys")]


def test_sys_columns_precision_and_scale_of_temporal_and_numeric_types(conn: pyodbc.Connection) -> None:
    """sys.columns.precision/scale: datetime2(7) is 27/7, datetime 23/3, time(3) 12/3, date 10/0, bit 1/0.

    https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-columns-transact-sql
    """
    conn.execute(
        "CREATE TABLE dbo.kinds (a datetime2(7), b datetime, c time(3), d date, e bit, f datetimeoffset(7), "
        "g datetime2(0), h smalldatetime, i money, j float, k nvarchar(5))"
    )
    rows = conn.execute(
        "SELECT name, [precision], scale FROM sys.columns WHERE object_id = OBJECT_ID('dbo.kinds') ORDER BY column_id"
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        ("a", 27, 7),
        ("b", 23, 3),
        ("c", 12, 3),
        ("d", 10, 0),
        ("e", 1, 0),
        ("f", 34, 7),
        ("g", 19, 0),
        ("h", 16, 0),
        ("i", 19, 4),
        ("j", 53, 0),
        ("k", 0, 0),
    ]


# -- what Sling (sling-cli 1.4.11, go-mssqldb) sends to list and read a table -------------------------
SLING_TABLES = (
    "select table_schema as schema_name, table_name, 'false' as is_view from INFORMATION_SCHEMA.TABLES "
    "where table_type = 'BASE TABLE' order by table_schema, table_name /* nD */"
)
SLING_COLUMNS = (
    "select column_name, data_type, character_maximum_length as maximum_length, numeric_precision as "
    "precision, numeric_scale as scale from INFORMATION_SCHEMA.COLUMNS where table_schema = 'dbo' and "
    "table_name = 'orders' order by ordinal_position /* nD */"
)
SLING_SYNONYM = (
    "select s.name as synonym_name, PARSENAME(s.base_object_name, 3) as database_name, "
    "PARSENAME(s.base_object_name, 2) as schema_name, PARSENAME(s.base_object_name, 1) as object_name "
    "from sys.synonyms s where schema_name(s.schema_id) = 'dbo' and s.name = 'orders' /* nD */"
)


def test_sling_table_discovery_statements(conn: pyodbc.Connection) -> None:
    """Sling lists tables and columns from INFORMATION_SCHEMA and resolves synonyms with PARSENAME and
    SCHEMA_NAME(schema_id) over sys.synonyms.

    https://learn.microsoft.com/en-us/sql/relational-databases/system-information-schema-views/columns-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/functions/parsename-transact-sql
    https://learn.microsoft.com/en-us/sql/t-sql/functions/schema-name-transact-sql
    """
    conn.execute(
        "CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, note nvarchar(40) NULL, amount decimal(18,2) NULL)"
    )
    assert ("dbo", "orders", "false") in [tuple(r) for r in conn.execute(SLING_TABLES)]
    assert [tuple(r) for r in conn.execute(SLING_COLUMNS)] == [
        ("id", "int", None, 10, 0),
        ("note", "nvarchar", 40, None, None),
        ("amount", "decimal", None, 18, 2),
    ]
    assert conn.execute(SLING_SYNONYM).fetchall() == []
    assert tuple(
        conn.execute(
            "SELECT PARSENAME('[srv].[db].[dbo].[t]', 1), PARSENAME('db.dbo.t', 2), "
            "PARSENAME('t', 3), SCHEMA_NAME(o.schema_id) FROM sys.tables AS o "
            "WHERE o.name = 'orders'"
        ).fetchone()
    ) == ("t", "dbo", None, "dbo")
    assert [tuple(r) for r in conn.execute('select * from "dbo"."orders"')] == []
