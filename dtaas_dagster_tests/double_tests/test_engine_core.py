"""The double's SQL engine through its Python API (no network)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.double_tests.engine_helpers import run
from dtaas_dagster_tests.sqlserver_double.engine import DuckDbEngine
from dtaas_dagster_tests.sqlserver_double.engine_api import Param, SqlServerError, SqlType


def rows(session: Any, sql: str, params: dict[str, Param] | None = None) -> list[list[Any]]:
    """Columns of the last result set of the batch, as lists."""
    last = None
    for result in session.execute(sql, params):
        if result.result_set is not None:
            last = pa.Table.from_batches(list(result.result_set.batches))
    assert last is not None
    return [c.to_pylist() for c in last.columns]


def test_authenticate_and_version() -> None:
    engine = DuckDbEngine(password="pw")
    assert engine.authenticate("sa", "pw") and not engine.authenticate("sa", "nope")
    assert "SQL Server double" in engine.version


def test_batch_without_semicolons_and_integer_semantics(session: Any) -> None:
    got = rows(
        session,
        "CREATE TABLE t (a int) INSERT INTO t VALUES (7) SELECT a / 2, -a / 2, CAST(2.5 AS int), 'abc' = 'ABC' FROM t",
    )
    assert got == [[3], [-3], [2], [True]]


def test_divide_by_zero_and_go_are_errors(session: Any) -> None:
    with pytest.raises(SqlServerError) as e:
        rows(session, "SELECT 1/0")
    assert e.value.number == 8134
    with pytest.raises(SqlServerError) as e:
        run(session, "GO")
    assert e.value.number == 102


def test_types_round_trip_exactly(session: Any) -> None:
    run(session, "CREATE TABLE t (d2 datetime2, big bigint, dec decimal(38,10), s nvarchar(50), e varchar(10))")
    run(
        session,
        "INSERT INTO t VALUES ('0001-01-01', -9223372036854775808, 12345678901234567890.1234567891, N'żółw 猫', ''),"
        " ('9999-12-31 23:59:59.9999999', 9223372036854775807, NULL, NULL, NULL)",
    )
    result = next(session.execute("SELECT d2, big, dec, s, e FROM t ORDER BY big"))
    assert [c.type for c in result.result_set.columns][3] == SqlType("nvarchar", 50)
    table = pa.Table.from_batches(list(result.result_set.batches))
    assert table.column("d2").to_pylist() == ["0001-01-01 00:00:00.0000000", "9999-12-31 23:59:59.9999999"]
    assert table.column("big").to_pylist() == [-(2**63), 2**63 - 1]
    assert str(table.column("dec")[0].as_py()) == "12345678901234567890.1234567891"
    assert table.column("s").to_pylist() == ["żółw 猫", None]
    assert table.column("e").to_pylist() == ["", None]


def test_errors_inside_transaction_keep_it_open(session: Any) -> None:
    run(session, "CREATE TABLE t (k nvarchar(5) NOT NULL PRIMARY KEY, v int)")
    run(session, "BEGIN TRAN INSERT INTO t VALUES ('a', 1)")
    for bad, number in (
        ("INSERT INTO t VALUES ('A', 2)", 2627),
        ("INSERT INTO t VALUES (NULL, 2)", 515),
        ("INSERT INTO t VALUES ('toolong', 2)", 2628),
        ("SELECT 1 / 0", 8134),
        ("INSERT INTO t VALUES ('b', 3000000000)", 8115),
        ("SELECT nope FROM t", 207),
        ("SELECT * FROM nope", 208),
    ):  # statement-level errors (conversion errors end the transaction)
        with pytest.raises(SqlServerError) as e:
            rows(session, bad) if bad.startswith("SELECT") else run(session, bad)
        assert e.value.number == number, bad
    assert session.in_transaction
    assert rows(session, "SELECT @@TRANCOUNT, COUNT(*) FROM t") == [[1], [1]]
    run(session, "COMMIT")
    with pytest.raises(SqlServerError) as e:
        run(session, "COMMIT")
    assert e.value.number == 3902


def test_identity(session: Any) -> None:
    run(session, "CREATE TABLE t (id int IDENTITY(10,5) PRIMARY KEY, n int)")
    run(session, "INSERT INTO t (n) VALUES (1), (2)")
    assert rows(session, "SELECT SCOPE_IDENTITY(), @@IDENTITY") == [[15], [15]]
    with pytest.raises(SqlServerError) as e:
        run(session, "INSERT INTO t (id, n) VALUES (100, 3)")
    assert e.value.number == 544
    run(
        session,
        "SET IDENTITY_INSERT t ON INSERT INTO t (id, n) VALUES (100, 3) SET IDENTITY_INSERT t OFF INSERT INTO t (n) VALUES (4)",
    )
    assert rows(session, "SELECT id FROM t ORDER BY id") == [[10, 15, 100, 105]]


def test_update_pk_and_delete_with_parameters(session: Any) -> None:
    run(session, "CREATE TABLE t (k int PRIMARY KEY, v nvarchar(10))")
    run(session, "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    with pytest.raises(SqlServerError) as e:
        run(session, "UPDATE t SET k = 2 WHERE k = 1")
    assert e.value.number == 2627
    p = {"@P1": Param("@P1", SqlType("int"), 3), "@P2": Param("@P2", SqlType("int"), 1)}
    results = list(session.execute("UPDATE t SET k = @P1 WHERE k = @P2", p))
    assert results[0].rowcount == 1
    list(session.execute("DELETE FROM t WHERE v = @P1", {"@P1": Param("@P1", SqlType("nvarchar", 10), "B")}))
    assert rows(session, "SELECT k, v FROM t") == [[3], ["a"]]


def test_catalog_views_and_multi_database(session: Any) -> None:
    run(session, "CREATE TABLE dbo.t (id int NOT NULL, name nvarchar(50), CONSTRAINT pk_t PRIMARY KEY (id))")
    got = rows(
        session,
        "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.CHARACTER_MAXIMUM_LENGTH, c.IS_NULLABLE "
        "FROM INFORMATION_SCHEMA.COLUMNS c WHERE c.TABLE_NAME = 't' ORDER BY c.ORDINAL_POSITION",
    )
    assert got == [["id", "name"], ["int", "nvarchar"], [None, 50], ["NO", "YES"]]
    assert rows(session, "SELECT name, max_length FROM sys.columns WHERE object_id = OBJECT_ID('dbo.t')") == [
        ["id", "name"],
        [4, 100],
    ]
    assert rows(session, "SELECT CONSTRAINT_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS") == [["pk_t"]]
    run(session, "INSERT INTO t VALUES (1, 'x') USE master")
    assert rows(session, "SELECT COUNT(*) FROM sales.dbo.t") == [[1]]
    assert "sales" in rows(session, "SELECT name FROM sys.databases")[0]


def test_seed_table_loads_arrow(session: Any) -> None:
    engine = session.engine
    data = pa.table({"id": pa.array(range(1000), pa.int32()), "s": pa.array([f"v{i}" for i in range(1000)])})
    engine.seed_table("sales", "dbo", "seeded", data, columns={"s": "varchar(10)"}, primary_key=["id"])
    assert rows(session, "SELECT COUNT(*), MAX(id) FROM seeded") == [[1000], [999]]
    with pytest.raises(SqlServerError) as e:
        engine.seed_table("sales", "dbo", "seeded", data.slice(0, 1), create=False)
    assert e.value.number == 2627
