"""Per-statement dispatch: session statements here, DDL in ``ddl.py``, DML in ``dml.py``.

Statements that sqlglot does not model well (SET options, USE, BEGIN/COMMIT/
ROLLBACK, EXEC, ALTER DATABASE, DECLARE/SET @v) are recognised from their
tokens; everything else goes through sqlglot and the translator.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from ..engine_api import Param, ResultColumn, ResultSet, SqlServerError, SqlType, StatementResult, not_supported
from . import aborts, fast_insert
from . import types as T
from .session import DuckDbSession, Variable, map_duckdb_error
from .translate import Translator, parse

BATCH_ROWS = 65536
_SET_OPTION = re.compile(
    r"^SET\s+(ANSI_\w+|QUOTED_IDENTIFIER|NOCOUNT|XACT_ABORT|CONCAT_NULL_YIELDS_NULL|ARITHABORT|"
    r"NUMERIC_ROUNDABORT|CURSOR_CLOSE_ON_COMMIT|IMPLICIT_TRANSACTIONS|FMTONLY|NOEXEC|STATISTICS\s+\w+|"
    r"SHOWPLAN_\w+|DEADLOCK_PRIORITY|TEXTSIZE|LOCK_TIMEOUT|DATEFORMAT|DATEFIRST|LANGUAGE|ROWCOUNT|"
    r"CONTEXT_INFO|NO_BROWSETABLE)\s+(\S+)\s*$",
    re.I,
)
_ISOLATION = re.compile(
    r"^SET\s+TRANSACTION\s+ISOLATION\s+LEVEL\s+(READ\s+UNCOMMITTED|READ\s+COMMITTED|"
    r"REPEATABLE\s+READ|SNAPSHOT|SERIALIZABLE)\s*$",
    re.I,
)
_IDENTITY_INSERT = re.compile(r"^SET\s+IDENTITY_INSERT\s+(\S+)\s+(ON|OFF)\s*$", re.I)
_SET_VAR = re.compile(r"^SET\s+(@\w+)\s*=\s*(.+)$", re.I | re.S)
_USE = re.compile(r"^USE\s+\[?([^\]\s;]+)\]?\s*$", re.I)
_TRAN = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|SAVE)(\s+(TRAN|TRANSACTION|WORK)(\s+\S+)?)?\s*$", re.I)
_ALTER_DB = re.compile(
    r"^ALTER\s+DATABASE\s+\[?([^\]\s]+)\]?\s+SET\s+(ALLOW_SNAPSHOT_ISOLATION|"
    r"READ_COMMITTED_SNAPSHOT)\s+(ON|OFF)(\s+WITH\s+.+)?\s*$",
    re.I | re.S,
)


def first_word(text: str) -> str:
    return text.split(None, 1)[0].upper() if text.strip() else ""


def run_statement(session: DuckDbSession, text: str, params: dict[str, Param]) -> StatementResult:
    """Run one statement; errors raise SqlServerError (the batch continues unless aborts_batch)."""
    first = text.split(None, 1)[0].upper()
    try:
        if first != "INSERT":  # an INSERT flushes itself unless it joins the buffered rows
            session.flush_pending_rows()
        if first == "SET":
            return _set(session, text, params)
        if first == "USE":
            return _use(session, text)
        if first in ("BEGIN", "COMMIT", "ROLLBACK", "SAVE"):
            return _transaction(session, text)
        if first in ("EXEC", "EXECUTE"):
            from .procedures import execute_procedure

            return execute_procedure(session, text, params)
        if first == "ALTER" and re.match(r"ALTER\s+DATABASE", text, re.I):
            return _alter_database(session, text)
        if first == "DECLARE":
            return _declare(session, text, params)
        return _parsed(session, text, params)
    except duckdb.Error as e:
        if session.in_transaction:
            session.recover()
        raise map_duckdb_error(e) from e


def _parsed(session: DuckDbSession, text: str, params: dict[str, Param]) -> StatementResult:
    from . import ddl, dml

    insert = fast_insert.scan(text) if first_word(text) == "INSERT" else None
    if insert is not None:
        done = dml.insert_fast(session, insert, params, text)
        if done is not None:
            return done
    session.flush_pending_rows()
    node = parse(text)
    if isinstance(node, (exp.Select, exp.Union, exp.Except, exp.Intersect)):
        return run_select(session, node, params)
    handlers = {
        exp.Insert: dml.insert,
        exp.Update: dml.update,
        exp.Delete: dml.delete,
        exp.Create: ddl.create,
        exp.Drop: ddl.drop,
        exp.TruncateTable: ddl.truncate,
        exp.Alter: ddl.alter,
    }
    handler = handlers.get(type(node))
    if handler is None:
        raise not_supported(text[:200])
    return handler(session, node, params, text)


# -- SELECT ---------------------------------------------------------------------------
def run_select(session: DuckDbSession, node: exp.Expression, params: dict[str, Param]) -> StatementResult:
    """Run a SELECT and hand back a lazy, contract-typed Arrow stream."""
    tr = Translator(session, params)
    translated = tr.select(node)
    cursor = session.cursor
    for name, table in translated.registrations.items():
        cursor.register(name, table)
    cursor.execute(translated.sql, translated.params)
    with warnings.catch_warnings():  # DuckDB warns about a copy; batches are still streamed
        warnings.simplefilter("ignore")
        reader = cursor.to_arrow_reader(BATCH_ROWS)
    columns = _columns(translated.columns, reader.schema)
    batches = _converted(session, reader, columns, list(translated.registrations))
    if columns and not session.nocount:
        pass
    return StatementResult(result_set=ResultSet(columns, _counting(session, batches)), rowcount=None)


def _columns(static: list[ResultColumn] | None, schema: pa.Schema) -> list[ResultColumn]:
    cols: list[ResultColumn] = []
    for i, f in enumerate(schema):
        known = static[i] if static and i < len(static) else None
        name = known.name if known is not None else f.name
        if name.startswith("$") or name.startswith('"$') or (known is None and f.name.startswith(("(", "CAST", "$"))):
            name = ""
        if known is not None and known.type.name != "?":
            t = known.type
        else:
            t = _arrow_to_sql(f.type)
        cols.append(ResultColumn(name, t))
    return cols


def _arrow_to_sql(dtype: pa.DataType) -> SqlType:
    if pa.types.is_decimal(dtype) and dtype.precision == 38 and dtype.scale == 0:
        return SqlType("bigint")
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return SqlType("nvarchar", 4000)
    if pa.types.is_timestamp(dtype):
        return SqlType("datetimeoffset", scale=7) if dtype.tz else SqlType("datetime2", scale=6)
    if pa.types.is_null(dtype):
        return SqlType("int")
    try:
        return T.infer_from_arrow(dtype)
    except SqlServerError:
        return SqlType("nvarchar", 4000)


def _converted(
    session: DuckDbSession, reader: pa.RecordBatchReader, columns: list[ResultColumn], registered: list[str]
) -> Iterator[pa.RecordBatch]:
    names = [c.name for c in columns]
    try:
        for batch in reader:
            arrays = [
                T.to_contract(batch.column(i), c.type)
                if not pa.types.is_null(batch.column(i).type)
                else pa.nulls(batch.num_rows, T.arrow_type(c.type))
                for i, c in enumerate(columns)
            ]
            yield pa.RecordBatch.from_arrays(arrays, names=names)
    except duckdb.Error as e:  # raised while the rows stream: the batch may end here too
        if session.in_transaction:
            session.recover()
        raise aborts.apply(session, map_duckdb_error(e)) from e
    finally:
        for name in registered:
            try:
                session.cursor.unregister(name)
            except duckdb.Error:
                pass


def _counting(session: DuckDbSession, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    session.rowcount = 0
    for batch in batches:
        session.rowcount += batch.num_rows
        yield batch


def scalar(session: DuckDbSession, expression_sql: str, params: dict[str, Param]) -> tuple[Any, SqlType | None]:
    """Evaluate ``SELECT <expression>`` (T-SQL) and return its single value and type."""
    result = run_select(session, parse(f"SELECT {expression_sql}"), params)
    assert result.result_set is not None
    table = pa.Table.from_batches(list(result.result_set.batches), schema=None) if True else None
    value = table.column(0)[0].as_py() if table.num_rows else None
    return value, result.result_set.columns[0].type


# -- session statements -------------------------------------------------------------------
def _set(session: DuckDbSession, text: str, params: dict[str, Param]) -> StatementResult:
    if m := _SET_OPTION.match(text):
        option, value = re.sub(r"\s+", " ", m.group(1).upper()), m.group(2).strip().upper()
        if option == "NOCOUNT":
            session.options["nocount"] = value
        elif option == "IMPLICIT_TRANSACTIONS" and value == "ON":
            raise not_supported(text)
        elif option == "ROWCOUNT" and value not in ("0",):
            raise not_supported(text)
        else:
            session.options[option.lower()] = value
        return StatementResult()
    if m := _ISOLATION.match(text):
        session.options["isolation"] = re.sub(r"\s+", " ", m.group(1).upper())
        return StatementResult()
    if m := _IDENTITY_INSERT.match(text):
        return _identity_insert(session, m.group(1), m.group(2).upper())
    if m := _SET_VAR.match(text):
        name = m.group(1).lower()
        var = session.variables.get(name)
        if var is None:
            raise SqlServerError(137, f'Must declare the scalar variable "{m.group(1)}".')
        value, _ = scalar(session, m.group(2), params)
        var.value = _coerce(session, value, var.type)
        return StatementResult()
    raise not_supported(text[:200])


def _coerce(session: DuckDbSession, value: Any, t: SqlType) -> Any:
    if value is None:
        return None
    duck = "TIMESTAMP" if t.name in ("datetime2", "datetimeoffset") else T.storage_type(t)
    row = session.cursor.execute(f"SELECT TRY_CAST($x AS {duck})", {"x": value}).fetchall()
    row = row[0] if row else None
    if row is None or row[0] is None:
        raise SqlServerError(
            245, f"Conversion failed when converting the value '{value}' to data type {T.type_text(t)}."
        )
    return row[0]


def _identity_insert(session: DuckDbSession, name: str, value: str) -> StatementResult:
    parts = [p.strip("[]") for p in name.split(".")]
    db = session.engine.database(parts[-3] if len(parts) >= 3 else session.database)
    table = db.find_table(parts[-2] if len(parts) >= 2 else "dbo", parts[-1])
    if table is None:
        raise SqlServerError(208, f"Invalid object name '{name}'.")
    if table.identity_column is None:
        raise SqlServerError(8106, f"Table '{name}' does not have the identity property. Cannot perform SET operation.")
    if value == "ON":
        session.identity_insert.add(table.object_id)
    else:
        session.identity_insert.discard(table.object_id)
    return StatementResult()


def _use(session: DuckDbSession, text: str) -> StatementResult:
    m = _USE.match(text)
    if not m:
        raise not_supported(text)
    db = session.engine.database(m.group(1))
    old, session.database = session.database, db.name
    return StatementResult(
        messages=[f"Changed database context to '{db.name}'."], env_changes=[("database", db.name, old)]
    )


def _transaction(session: DuckDbSession, text: str) -> StatementResult:
    m = _TRAN.match(text)
    if not m or m.group(1).upper() == "SAVE" or (m.group(1).upper() == "BEGIN" and not m.group(2)):
        raise not_supported(text)
    verb = m.group(1).upper()
    if verb == "BEGIN":
        was_open = session.in_transaction
        session.begin_transaction()
        changes = [] if was_open else [("begin_tran", session.transaction_descriptor)]
        return StatementResult(env_changes=changes)
    descriptor = session.transaction_descriptor
    if verb == "COMMIT":
        session.commit()
        return StatementResult(env_changes=[] if session.in_transaction else [("commit_tran", descriptor)])
    session.rollback()
    return StatementResult(env_changes=[("rollback_tran", descriptor)])


def _alter_database(session: DuckDbSession, text: str) -> StatementResult:
    m = _ALTER_DB.match(text)
    if not m:
        raise not_supported(text[:200])
    name = session.database if m.group(1).upper() == "CURRENT" else m.group(1)
    db = session.engine.database(name)
    on = m.group(3).upper() == "ON"
    if m.group(2).upper() == "ALLOW_SNAPSHOT_ISOLATION":
        db.allow_snapshot_isolation = on
    else:
        db.read_committed_snapshot = on
    return StatementResult()


def _declare(session: DuckDbSession, text: str, params: dict[str, Param]) -> StatementResult:
    node = parse(text)
    if not isinstance(node, exp.Declare):
        raise not_supported(text[:200])
    for item in node.expressions:
        names = item.this if isinstance(item.this, list) else [item.this]
        kind = item.args.get("kind")
        if kind is None or not isinstance(kind, exp.DataType):
            raise not_supported(text[:200])
        t = T.from_datatype(kind)
        default = item.args.get("default")
        value = None
        if default is not None:
            value, _ = scalar(session, default.sql("tsql"), params)
            value = _coerce(session, value, t)
        for n in names:
            session.variables["@" + n.name.lower()] = Variable(t, value)
    return StatementResult()
