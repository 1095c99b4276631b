"""RPC parameters (client -> TDS -> Python values handed to the engine) and the RPC procedures."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pyodbc
import pytest

from dtaas_dagster_tests.double_tests.conftest_protocol import (
    PASSWORD,
    StubEngine,
    StubServerProcess,
    conn_str,
    server,
    stub_engine,
)
from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

__all__ = ["server", "stub_engine"]

VALUES = [
    7,
    -(2**63),
    2**63 - 1,
    Decimal("1234567890123456789012345678.0123456789"),
    Decimal("-0.01"),
    1.0000000000000002,
    "Grüße 😀 日本語",
    "",
    None,
    b"\x00\x01\xff",
    dt.date(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2024, 2, 29, 1, 2, 3, 456789),
    True,
    "é" * 5000,
    b"\xab" * 9000,
]


def _echo_sql(n: int) -> str:
    return "ECHO " + ", ".join("?" * n)


def _received(engine: StubEngine) -> list:
    sql, params = [c for c in engine.calls if c[0].startswith("ECHO")][-1]
    return [p.value for p in params.values()]


# FreeTDS's own limits (its bytes are wrong before the double sees them): dates before
# 1600 are shifted by its calendar arithmetic, datetime parameters lose their
# fraction, strings are cut at 4,000 characters and binary at 8,000 bytes.
FREETDS_REPLACEMENTS = {
    10: dt.date(1753, 1, 1),
    11: dt.datetime(9999, 12, 31, 23, 59, 59),
    15: b"\xab" * 8000,
    12: dt.datetime(2024, 2, 29, 1, 2, 3),
    14: "é" * 4000,
}
FREETDS_VALUES = [FREETDS_REPLACEMENTS.get(i, v) for i, v in enumerate(VALUES)]


@pytest.mark.parametrize("driver", ["msodbc18", "freetds"])
def test_parameters_decode_to_exact_python_values(server: DoubleServer, stub_engine: StubEngine, driver: str) -> None:
    values = VALUES if driver == "msodbc18" else FREETDS_VALUES
    with pyodbc.connect(conn_str(server, driver), autocommit=True, timeout=10) as conn:
        conn.cursor().execute(_echo_sql(len(values)), *values)
    got = _received(stub_engine)
    assert got == values
    assert got[7] == "" and got[8] is None  # empty string is not NULL


def test_parameters_echo_back_through_result_set(server: DoubleServer) -> None:
    """Decoded parameters re-encoded as a result: both directions agree."""
    values = [
        42,
        Decimal("-12345.6789"),
        "ünïcödé",
        dt.datetime(2001, 2, 3, 4, 5, 6, 789000),
        b"\x01\x02",
        dt.date(2020, 1, 31),
        None,
    ]
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        row = conn.cursor().execute(_echo_sql(len(values)), *values).fetchone()
    assert list(row) == values


def test_uuid_parameter(server: DoubleServer, stub_engine: StubEngine) -> None:
    value = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        conn.cursor().execute(_echo_sql(1), value)
    assert _received(stub_engine) == [value]


@pytest.mark.parametrize("fast", [False, True])
def test_executemany_with_driver18(fast: bool) -> None:
    rows = [(i, f"name {i}", Decimal(i) / 100, dt.datetime(2024, 1, 1, 0, 0, 0, i)) for i in range(1, 51)]
    # INSERT, not ECHO: rows of result sets left unread would make the driver cancel the rest
    sql = "INSERT INTO t VALUES (?, ?, ?, ?) /*types:int,nvarchar(50),decimal(18,2),datetime2(7)*/"
    with StubServerProcess() as proc:
        with pyodbc.connect(conn_str(proc), autocommit=False, timeout=10) as conn:  # type: ignore[arg-type]
            cursor = conn.cursor()
            cursor.fast_executemany = fast
            cursor.executemany(sql, rows)
            conn.commit()
        calls = proc.calls()
    received = [tuple(v for _t, v in params.values()) for s, params in calls if s.startswith("INSERT")]
    assert received == rows


def test_prepared_statement_is_reused_with_sp_execute(server: DoubleServer, stub_engine: StubEngine) -> None:
    with pyodbc.connect(conn_str(server), autocommit=True, timeout=10) as conn:
        cursor = conn.cursor()
        for i in range(3):
            assert cursor.execute("ECHO ?", i).fetchone()[0] == i
    kinds = sorted({kind for _app, kind, _text in server.traffic})
    assert "sp_prepexec" in kinds
    assert len([c for c in stub_engine.calls if c[0].startswith("ECHO")]) == 3


def test_sp_describe_undeclared_parameters_by_rpc(server: DoubleServer) -> None:
    import pytds

    with pytds.connect(dsn="127.0.0.1", port=server.port, user="sa", password=PASSWORD, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.callproc("sp_describe_undeclared_parameters", ("ECHO @P1, @P2 /*types:decimal(18,2),nvarchar(max)*/",))
        rows = cursor.fetchall()
        names = [d[0] for d in cursor.description]
    assert names[:7] == [
        "parameter_ordinal",
        "name",
        "suggested_system_type_id",
        "suggested_system_type_name",
        "suggested_max_length",
        "suggested_precision",
        "suggested_scale",
    ]
    assert [r[:7] for r in rows] == [
        (1, "@P1", 106, "decimal(18,2)", 17, 18, 2),
        (2, "@P2", 231, "nvarchar(max)", -1, 0, 0),
    ]


def test_sp_datatype_info_100_by_rpc(server: DoubleServer) -> None:
    import pytds

    with pytds.connect(dsn="127.0.0.1", port=server.port, user="sa", password=PASSWORD, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.callproc("sp_datatype_info_100", (93, 3))
        rows = cursor.fetchall()
    assert {r[0] for r in rows} == {"datetime2", "datetime", "smalldatetime"}
    datetime2 = next(r for r in rows if r[0] == "datetime2")
    assert datetime2[2] == 27 and datetime2[14] == 7  # PRECISION, MAXIMUM_SCALE


def test_other_procedures_reach_the_engine_with_output_parameters(
    server: DoubleServer, stub_engine: StubEngine
) -> None:
    import pytds

    with pytds.connect(dsn="127.0.0.1", port=server.port, user="sa", password=PASSWORD, autocommit=True) as conn:
        cursor = conn.cursor()
        result = cursor.callproc("dbo.add_one", {"@value": 41, "@result": pytds.output(param_type="int")})
        status = cursor.get_proc_return_status()
    assert result[-1] == 42  # the OUTPUT value came back in a RETURNVALUE token
    assert status == 7
    assert stub_engine.calls[-1][0] == "EXEC dbo.add_one @value = @value, @result = @result OUTPUT"
