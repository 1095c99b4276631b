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
