"""Helpers for the protocol-layer tests: a stub engine and client connection strings.

The stub engine stands in for the DuckDB engine so the protocol layer can be
tested on its own: it serves canned Arrow result sets, records the decoded
parameters of every call, raises the errors a test asks for, and keeps a
transaction flag. Everything between the client and the stub is the real
protocol layer and real drivers.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.sqlserver_double.engine_api import (
    Param,
    ResultColumn,
    ResultSet,
    SqlServerError,
    SqlType,
    StatementResult,
)
from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

PASSWORD = "Proto-Test-Pw1!"
DRIVER18 = (
    "/work/main/.venv/lib/python3.11/site-packages/mssql_python_odbc/libs/linux/debian_ubuntu/"
    "x86_64/lib/libmsodbcsql-18.6.so.2.1"
)


def driver18_path() -> str:
    from pathlib import Path

    import mssql_python_odbc  # noqa: F401  (the package that ships Driver 18)

    base = Path(mssql_python_odbc.__file__).parent
    found = sorted(base.glob("libs/linux/debian_ubuntu/x86_64/lib/libmsodbcsql-18*.so*"))
    return str(found[-1]) if found else DRIVER18


def conn_str(
    server: DoubleServer,
    driver: str = "msodbc18",
    *,
    encrypt: str = "no",
    database: str | None = None,
    password: str = PASSWORD,
    extra: str = "",
) -> str:
    if driver == "freetds":
        parts = ["DRIVER={FreeTDS}", "SERVER=127.0.0.1", f"PORT={server.port}", "TDS_Version=7.4"]
    else:
        parts = [
            f"DRIVER={{{driver18_path()}}}",
            f"SERVER=127.0.0.1,{server.port}",
            f"Encrypt={encrypt}",
            "TrustServerCertificate=yes",
        ]
    parts += ["UID=sa", f"PWD={password}"]
    if database:
        parts.append(f"DATABASE={database}")
    return ";".join(parts) + (";" + extra if extra else "")


@dataclass
class Canned:
    columns: list[ResultColumn]
    table: pa.Table
    batch_rows: int = 65536

    def result(self) -> ResultSet:
        return ResultSet(self.columns, iter(self.table.to_batches(max_chunksize=self.batch_rows)))


@dataclass
class StubEngine:
    """Engine protocol implementation for protocol tests (no T-SQL at all)."""

    canned: dict[str, Canned | Callable[[], Canned]] = field(default_factory=dict)
    server_name: str = "DOUBLE"
    version: str = "16.0.1000"
    calls: list[tuple[str, dict[str, Param]]] = field(default_factory=list)
    sessions: list[StubSession] = field(default_factory=list)

    def authenticate(self, user: str, password: str) -> bool:
        return user == "sa" and password == PASSWORD

    def open_session(self, user: str, database: str | None) -> StubSession:
        if database == "no_such_db":
            raise SqlServerError(4060, f'Cannot open database "{database}" requested by the login.', severity=11)
        session = StubSession(self, database or "master")
        self.sessions.append(session)
        return session


class StubSession:
    """Splits a batch on ';' and answers each statement; errors do not end the iteration."""

    def __init__(self, engine: StubEngine, database: str) -> None:
        self.engine = engine
        self.database = database
        self._txn = 0
        self._next_txn = 0x1000
        self.closed = False

    @property
    def in_transaction(self) -> bool:
        return self._txn != 0

    @property
    def transaction_descriptor(self) -> int:
        return self._txn

    def execute(self, sql: str, params: Mapping[str, Param] | None = None) -> Iterator[StatementResult]:
        self.engine.calls.append((sql, dict(params or {})))
        return _Statements(self, [s.strip() for s in sql.split(";") if s.strip()], dict(params or {}))

    def describe_undeclared_parameters(self, sql: str) -> list[tuple[str, SqlType]]:
        count = sql.count("?") or len(set(re.findall(r"@P\d+", sql)))
        declared = re.findall(r"/\*types:(.*?)\*/", sql)
        names = re.split(r",(?![^(]*\))", declared[0]) if declared else ["int"] * count
        return [(f"@P{i + 1}", _parse_type(names[i])) for i in range(count)]

    def begin_transaction(self) -> None:
        self._next_txn += 1
        self._txn = self._next_txn

    commits = 0
    rollbacks = 0

    def commit(self) -> None:
        self._txn = 0
        self.commits += 1

    def rollback(self) -> None:
        self._txn = 0
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True


def _parse_type(text: str) -> SqlType:
    m = re.fullmatch(r"(\w+)(?:\((\w+)(?:,(\d+))?\))?", text.strip())
    assert m, text
    name, a, b = m.groups()
    if name in ("decimal", "numeric"):
        return SqlType(name, precision=int(a), scale=int(b or 0))
    if name in ("datetime2", "time", "datetimeoffset"):
        return SqlType(name, scale=int(a) if a else 7)
    if a:
        return SqlType(name, length=-1 if a == "max" else int(a))
    return SqlType(name)


class _Statements:
    def __init__(self, session: StubSession, statements: list[str], params: dict[str, Param]) -> None:
        self.session, self.statements, self.params = session, statements, params

    def __iter__(self) -> _Statements:
        return self

    def __next__(self) -> StatementResult:
        if not self.statements:
            raise StopIteration
        return self._one(self.statements.pop(0))

    def _one(self, stmt: str) -> StatementResult:
        engine = self.session.engine
        upper = stmt.upper()
        if stmt in engine.canned:
            canned = engine.canned[stmt]
            canned = canned() if callable(canned) else canned
            return StatementResult(result_set=canned.result())
        if upper.startswith("RAISE "):  # RAISE <number> [ABORT]
            words = stmt.split()
            raise SqlServerError(int(words[1]), f"stub error {words[1]}", aborts_batch="ABORT" in upper)
        if upper == "BOOM":
            raise RuntimeError("the stub engine exploded")
        if upper.startswith("ECHO"):
            return StatementResult(result_set=echo_result(self.params))
        if upper.startswith("BEGIN TRAN"):
            self.session.begin_transaction()
            return StatementResult(env_changes=[("begin_tran", self.session.transaction_descriptor)])
        if upper.startswith("COMMIT"):
            descriptor = self.session.transaction_descriptor
            self.session.commit()
            return StatementResult(env_changes=[("commit_tran", descriptor)])
        if upper.startswith("USE "):
            old, self.session.database = self.session.database, stmt.split()[1]
            return StatementResult(
                env_changes=[("database", self.session.database, old)],
                messages=[f"Changed database context to '{self.session.database}'."],
            )
        if upper.startswith("INSERT"):
            return StatementResult(rowcount=1)
        if upper.startswith("EXEC DBO.ADD_ONE"):  # a procedure with an OUTPUT parameter and RETURN 7
            return StatementResult(return_status=7, output_params={"@result": self.params["@value"].value + 1})
        return StatementResult()


def echo_result(params: Mapping[str, Param]) -> ResultSet:
    """One row holding every parameter value, typed as the client declared it."""
    from dtaas_dagster_tests.sqlserver_double.tds.tokens import arrow_type

    columns, arrays = [], []
    for name, p in params.items():
        t = p.type
        value = p.value
        if t.name == "uniqueidentifier" and value is not None:
            value = str(value).upper()
        if t.name == "datetimeoffset" and value is not None:
            value = (
                value.strftime("%Y-%m-%d %H:%M:%S.%f")
                + "0 "
                + value.strftime("%z")[:3]
                + ":"
                + value.strftime("%z")[3:]
            )
        if t.name == "time" and value is not None:
            value = (
                dt.timedelta(
                    hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
                )
                // dt.timedelta(microseconds=1)
                * 1000
            )
        columns.append(ResultColumn(name.lstrip("@"), t))
        arrays.append(pa.array([value], type=arrow_type(t) if t.name != "time" else pa.time64("ns")))
    table = pa.Table.from_arrays(arrays, names=[c.name for c in columns])
    return ResultSet(columns, iter(table.to_batches()))


def _col(name: str, type_: SqlType) -> ResultColumn:
    return ResultColumn(name, type_)


TYPES_COLUMNS = [
    _col("ti", SqlType("tinyint")),
    _col("si", SqlType("smallint")),
    _col("i", SqlType("int")),
    _col("bi", SqlType("bigint")),
    _col("b", SqlType("bit")),
    _col("r", SqlType("real")),
    _col("f", SqlType("float")),
    _col("d38", SqlType("decimal", precision=38, scale=10)),
    _col("d18", SqlType("decimal", precision=18, scale=2)),
    _col("n5", SqlType("numeric", precision=5, scale=0)),
    _col("m", SqlType("money")),
    _col("c", SqlType("char", length=5)),
    _col("vc", SqlType("varchar", length=20)),
    _col("nc", SqlType("nchar", length=3)),
    _col("nv", SqlType("nvarchar", length=50)),
    _col("vmax", SqlType("varchar", length=-1)),
    _col("nvmax", SqlType("nvarchar", length=-1)),
    _col("bn", SqlType("binary", length=4)),
    _col("vb", SqlType("varbinary", length=10)),
    _col("vbmax", SqlType("varbinary", length=-1)),
    _col("dt", SqlType("date")),
    _col("tm", SqlType("time", scale=7)),
    _col("dtm", SqlType("datetime")),
    _col("dt2", SqlType("datetime2", scale=7)),
    _col("dt2us", SqlType("datetime2", scale=6)),
    _col("dto", SqlType("datetimeoffset", scale=7)),
    _col("g", SqlType("uniqueidentifier")),
]

TYPES_VALUES: dict[str, tuple[pa.DataType, list[Any]]] = {
    "ti": (pa.uint8(), [0, 255, None]),
    "si": (pa.int16(), [-32768, 32767, None]),
    "i": (pa.int32(), [-(2**31), 2**31 - 1, None]),
    "bi": (pa.int64(), [-(2**63), 2**63 - 1, None]),
    "b": (pa.bool_(), [False, True, None]),
    "r": (pa.float32(), [1.5, -3.25, None]),
    "f": (pa.float64(), [1.0000000000000002, -1e308, None]),
    "d38": (
        pa.decimal128(38, 10),
        [Decimal("-9999999999999999999999999999.9999999999"), Decimal("1234567890123456789012345678.0123456789"), None],
    ),
    "d18": (pa.decimal128(18, 2), [Decimal("-12.34"), Decimal("9999999999999999.99"), None]),
    "n5": (pa.decimal128(5, 0), [Decimal("-99999"), Decimal("12345"), None]),
    "m": (pa.decimal128(19, 4), [Decimal("-922337203685477.5808"), Decimal("922337203685477.5807"), None]),
    "c": (pa.string(), ["ab   ", "xyz  ", None]),
    "vc": (pa.string(), ["", "café €", None]),
    "nc": (pa.string(), ["日本語", "abc", None]),
    "nv": (pa.string(), ["", "Grüße 😀 Ω", None]),
    "vmax": (pa.string(), ["x" * 10000, "", None]),
    "nvmax": (pa.string(), ["ü" * 5000 + "😀", "", None]),
    "bn": (pa.binary(), [b"\x00\x01\x02\x03", b"\xff\xff\xff\xff", None]),
    "vb": (pa.binary(), [b"", b"\x00\xff", None]),
    "vbmax": (pa.binary(), [bytes(range(256)) * 40, b"", None]),
    "dt": (pa.date32(), [dt.date(1, 1, 1), dt.date(9999, 12, 31), None]),
    "tm": (pa.time64("ns"), [0, 86_399_999_999_900, None]),
    "dtm": (pa.timestamp("us"), [dt.datetime(1753, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 997000), None]),
    "dt2": (pa.string(), ["0001-01-01 00:00:00.0000000", "9999-12-31 23:59:59.9999999", None]),
    "dt2us": (pa.timestamp("us"), [dt.datetime(2024, 2, 29, 12, 34, 56, 789012), dt.datetime(1970, 1, 1), None]),
    "dto": (pa.string(), ["2024-01-02 03:04:05.1234567 +05:30", "9999-12-31 23:59:59.9999999 +00:00", None]),
    "g": (pa.string(), ["6F9619FF-8B86-D011-B42D-00C04FC964FF", "00000000-0000-0000-0000-000000000000", None]),
}

TYPES_SQL = "SELECT * FROM types"
SMALL_SQL = "SELECT * FROM small"  # three rows (i int, s nvarchar(10)): for clients without datetimeoffset


def small_canned() -> Canned:
    columns = [_col("i", SqlType("int")), _col("s", SqlType("nvarchar", length=10))]
    return Canned(columns, pa.table({"i": pa.array([1, 2, 3], pa.int32()), "s": ["a", "ü", None]}))


def types_canned(rows: slice = slice(None)) -> Canned:
    arrays = [pa.array(TYPES_VALUES[c.name][1][rows], type=TYPES_VALUES[c.name][0]) for c in TYPES_COLUMNS]
    return Canned(TYPES_COLUMNS, pa.Table.from_arrays(arrays, names=[c.name for c in TYPES_COLUMNS]))


def numbers_canned(rows: int, batch_rows: int = 65536) -> Canned:
    columns = [_col("n", SqlType("bigint")), _col("s", SqlType("nvarchar", length=30))]
    import pyarrow.compute as pc

    n = pa.array(range(rows), type=pa.int64())
    s = pc.binary_join_element_wise(pa.array(["row"] * rows), pc.cast(n, pa.string()), "-")
    return Canned(columns, pa.table({"n": n, "s": s}), batch_rows)


FAILING_SQL = "SELECT * FROM failing"  # one batch of rows, then error 8115 while streaming


class FailingCanned(Canned):
    def result(self) -> ResultSet:
        def batches() -> Iterator[pa.RecordBatch]:
            yield from self.table.to_batches()
            raise SqlServerError(8115, "Arithmetic overflow error converting expression to data type int.")

        return ResultSet(self.columns, batches())


def failing_canned() -> Canned:
    small = small_canned()
    return FailingCanned(small.columns, small.table)


@pytest.fixture
def stub_engine() -> StubEngine:
    engine = StubEngine()
    engine.canned[TYPES_SQL] = types_canned
    engine.canned[SMALL_SQL] = small_canned
    engine.canned[FAILING_SQL] = failing_canned
    engine.canned["SELECT * FROM numbers"] = lambda: numbers_canned(200_000, 5000)
    return engine


@pytest.fixture
def server(stub_engine: StubEngine) -> Iterator[DoubleServer]:
    with DoubleServer(stub_engine) as srv:
        yield srv


def uuid_upper(u: uuid.UUID) -> str:
    return str(u).upper()


def _serve_in_child(pipe: Any, canned_numbers: int) -> None:
    engine = StubEngine()
    engine.canned[TYPES_SQL] = types_canned
    engine.canned[SMALL_SQL] = small_canned
    engine.canned["SELECT * FROM numbers"] = lambda: numbers_canned(canned_numbers)
    with DoubleServer(engine) as srv:
        pipe.send(srv.port)
        while True:
            request = pipe.recv()
            if request == "calls":
                pipe.send([(sql, {k: (p.type, p.value) for k, p in params.items()}) for sql, params in engine.calls])
            else:
                break


class StubServerProcess:
    """A DoubleServer with the stub engine in a child process.

    Needed where a client blocks inside the driver while holding the GIL (pyodbc's
    ``fast_executemany`` calls SQLDescribeParam without releasing it), which would
    starve a server thread in the same process.
    """

    def __init__(self, canned_numbers: int = 1000) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve_in_child, args=(child, canned_numbers), daemon=True)
        self.port = 0

    def __enter__(self) -> StubServerProcess:
        self._process.start()
        if not self._pipe.poll(60):
            raise RuntimeError("the stub double process did not report its port within 60 s")
        self.port = self._pipe.recv()
        return self

    def calls(self) -> list[tuple[str, dict[str, tuple[SqlType, Any]]]]:
        self._pipe.send("calls")
        return self._pipe.recv()

    def __exit__(self, *exc: object) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
