"""One-row parameterised INSERT in one DuckDB statement: pyodbc ``fast_executemany``'s shape.

Driver 18 sends ``fast_executemany`` rows as one ``sp_execute`` of
``INSERT INTO t (a, b) VALUES (@P1, @P2)`` per row. The general path (``dml``)
stages every statement as an Arrow table and checks it with several DuckDB
queries, about 5 ms each, so ~50-90 rows/s. This path keeps a per-session plan
per statement text (target table, columns, one prepared ``INSERT ... SELECT``),
converts each value in Python, and writes with a single DuckDB statement whose
``WHERE NOT EXISTS`` per key does the duplicate-key check in the same step.

It is *optimistic*: whenever a value is not plainly valid for its column (a
NULL into NOT NULL, a string too long, a value of another kind, a decimal that
does not fit, a duplicate key), it hands the statement to the general path,
which raises SQL Server's error (515, 2628, 245, 8115, 2627) with its usual
words. So this path never decides an error itself and cannot disagree with the
general path about one. Values are stored exactly as the general path stores
them (no rounding the general path does not do).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from ..engine_api import Param, StatementResult
from . import types as T
from .catalog import Column, Table
from .dialect import quote_duck
from .fast_insert import FastInsert


class Fallback(Exception):
    """The value is not plainly valid for the column: take the general path."""


Converter = Callable[[Any], Any]
_INT_RANGES = {
    "tinyint": (0, 255),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}


@dataclass
class RowPlan:
    """How one INSERT text writes a row into its table (valid while the table's columns are unchanged)."""

    table: Table
    columns_snapshot: list[Column]
    positions: list[int]  # for each table column: index of its VALUES item, or -1 (identity / NULL)
    converters: list[Converter]  # per table column
    sql: str


def _integer(name: str) -> Converter:
    low, high = _INT_RANGES[name]

    def convert(v: Any) -> Any:
        if type(v) is not int or not low <= v <= high:
            raise Fallback
        return v

    return convert


def _decimal(precision: int, scale: int) -> Converter:
    quantum = Decimal(1).scaleb(-scale)

    def convert(v: Any) -> Any:
        if type(v) is int:
            v = Decimal(v)
        if not isinstance(v, Decimal) or not v.is_finite():
            raise Fallback
        try:
            q = v.quantize(quantum, rounding=ROUND_HALF_UP)  # away from zero, as DuckDB's cast rounds
        except InvalidOperation:
            raise Fallback from None
        if q != 0 and q.adjusted() >= precision - scale:  # more integer digits than fit: 8115
            raise Fallback
        return q

    return convert


def _string(t: T.SqlType) -> Converter:
    limit = t.length if t.length is not None and t.length > 0 else None
    pad = t.name in ("char", "nchar")

    def convert(v: Any) -> Any:
        if not isinstance(v, str) or (limit is not None and len(v) > limit):
            raise Fallback
        if not v.isascii() and any(ord(c) > 0xFFFF for c in v):
            raise Fallback  # two UTF-16 code units each: the general path counts and pads them
        return v.ljust(limit) if pad and limit else v

    return convert


def _binary(t: T.SqlType) -> Converter:
    limit = t.length if t.length is not None and t.length > 0 else None
    pad = t.name == "binary"

    def convert(v: Any) -> Any:
        if not isinstance(v, (bytes, bytearray)) or (limit is not None and len(v) > limit):
            raise Fallback
        return bytes(v).ljust(limit, b"\x00") if pad and limit else bytes(v)

    return convert


def _of_type(*kinds: type, exclude: tuple[type, ...] = ()) -> Converter:
    def convert(v: Any) -> Any:
        if not isinstance(v, kinds) or isinstance(v, exclude):
            raise Fallback
        return v

    return convert


def _datetime2_text(v: Any) -> Any:
    if not isinstance(v, dt.datetime) or v.tzinfo is not None:
        raise Fallback
    return f"{v.year:04}-{v.month:02}-{v.day:02} {v.hour:02}:{v.minute:02}:{v.second:02}.{v.microsecond:06}0"


def _float(v: Any) -> Any:
    if type(v) not in (float, int):
        raise Fallback
    return float(v)


def _uuid(v: Any) -> Any:
    if not isinstance(v, uuid.UUID):
        raise Fallback
    return str(v)


def converter(t: T.SqlType) -> Converter | None:
    """Python value -> storage value for columns of ``t``; None for types this path leaves alone."""
    name = t.name
    if name in _INT_RANGES:
        return _integer(name)
    if name in ("decimal", "numeric"):
        return _decimal(t.precision or 18, t.scale or 0)
    if name in T.STRING_TYPES:
        return _string(t)
    if name in ("binary", "varbinary"):
        return _binary(t)
    simple: dict[str, Converter] = {
        "bit": _of_type(bool),
        "float": _float,
        "real": _float,
        "uniqueidentifier": _uuid,
        "date": _of_type(dt.date, exclude=(dt.datetime,)),
        "time": _of_type(dt.time),
    }
    if name in simple:
        return simple[name]
    if name == "datetime2":
        return _datetime2_text if T.is_text_stored(t) else _of_type(dt.datetime)
    return None  # money, datetime, smalldatetime, datetimeoffset, ...: the general path


def build_plan(table: Table, columns: list[Column]) -> RowPlan | None:
    """The plan for inserting one row into ``columns`` of ``table``, or None when the shape needs the general path."""
    identity = table.identity_column
    if identity is not None and any(c is identity for c in columns):
        return None  # IDENTITY_INSERT bookkeeping stays in one place
    positions, converters = [], []
    for col in table.columns:
        index = next((i for i, c in enumerate(columns) if c is col), -1)
        if index < 0 and col is not identity and col.default_sql is not None:
            return None
        conv = converter(col.type)
        if conv is None:
            return None
        positions.append(index)
        converters.append(conv)
    names = [c.name for c in table.columns]
    marks = ", ".join(f"${i + 1}" for i in range(len(names)))
    guards = [
        " AND ".join(_key_guard(table, c, names.index(_column_name(table, c)) + 1) for c in key.columns)
        for key in table.keys
    ]
    where = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {table.duck_name} WHERE {g})" for g in guards)
    sql = f"INSERT INTO {table.duck_name} SELECT {marks}" + (f" WHERE {where}" if where else "")
    return RowPlan(table, list(table.columns), positions, converters, sql)


def _key_guard(table: Table, column: str, mark: int) -> str:
    """``key = $n``, strings compared without trailing blanks as the collation compares them."""
    if table.require_column(column).type.name in T.STRING_TYPES:
        return f"rtrim({quote_duck(column)}) = rtrim(${mark})"
    return f"{quote_duck(column)} = ${mark}"


def _column_name(table: Table, name: str) -> str:
    return table.require_column(name).name


def row_values(plan: RowPlan, items: list[Any], session: Any) -> list[Any]:
    """Storage values of every table column in order; raises Fallback for anything not plainly valid."""
    values = []
    identity = plan.table.identity_column
    for col, index, conv in zip(plan.table.columns, plan.positions, plan.converters):
        value = items[index] if index >= 0 else None
        if value is None:
            if not col.type.nullable and col is not identity:
                raise Fallback
        else:
            value = conv(value)
        values.append(value)
    if identity is not None:  # last, so a Fallback never uses up an identity value
        at = plan.table.columns.index(identity)
        values[at] = session.last_identity = session.engine.next_identity(plan.table, 1)
    return values


def item_values(insert: FastInsert, params: dict[str, Param]) -> list[Any]:
    """The one VALUES row as Python values (parameters resolved); raises Fallback when one is missing."""
    qmarks = list(params.values())
    lowered = {k.lower(): p for k, p in params.items()}
    out = []
    for kind, value in insert.rows[0]:
        if kind == "p":
            param = (qmarks.pop(0) if qmarks else None) if value == "?" else lowered.get(value.lower())
            if param is None:
                raise Fallback
            value = param.value
        out.append(value)
    return out


def one_row_image(table: Table, values: list[Any]) -> pa.Table:
    """The written row in the contract's Arrow form (for the CDC manager)."""
    from .dml import to_image

    arrays = [
        pa.array([v], T.storage_arrow_type(c.type) if c.type.name != "uniqueidentifier" else pa.string())
        for c, v in zip(table.columns, values)
    ]
    return to_image(table, pa.table(arrays, names=[c.name for c in table.columns]))


def insert_row(session: Any, plan: RowPlan, values: list[Any]) -> StatementResult | None:
    """Write the row (or buffer it inside BEGIN TRAN); None when a key already holds it (2627 on the general path)."""
    table = plan.table
    if session.in_transaction:
        if not _buffer(session, plan, values):
            return None
    elif not table.is_tracked_by_cdc:  # DuckDB's own autocommit: no BEGIN/COMMIT round trips
        if not session.cursor.execute(plan.sql, values).fetchone()[0]:
            return None
    else:
        with session.autocommit_scope() as txn:
            if not session.write(plan.sql, values).fetchone()[0]:
                return None
            txn.changed = True
            session.engine.cdc.on_change(
                txn, table.database.name, table.schema, table.name, "insert", None, one_row_image(table, values)
            )
    session.rowcount = 1
    return StatementResult(rowcount=None if session.nocount else 1)


# -- rows buffered inside an explicit transaction -------------------------------------------------
@dataclass
class PendingRows:
    """Rows of one plan not yet written to DuckDB, and every key value the table holds with them.

    DuckDB transactions are snapshots, so inside BEGIN TRAN only this session changes
    what it sees: the key sets loaded once stay right until the rows are flushed, which
    happens before any other statement of the session runs and before COMMIT.
    """

    plan: RowPlan
    rows: list[list[Any]]
    keys: list[tuple[list[int], set[tuple[Any, ...]]]]  # per key: table column positions, values held


def _normal(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.lower().rstrip(" ") if isinstance(v, str) else v for v in values)  # as the collation compares


def _start(session: Any, plan: RowPlan) -> PendingRows:
    table = plan.table
    names = [c.name.lower() for c in table.columns]
    keys = []
    for key in table.keys:
        cols = ", ".join(quote_duck(_column_name(table, c)) for c in key.columns)
        held = session.cursor.execute(f"SELECT DISTINCT {cols} FROM {table.duck_name}").fetchall()
        keys.append(([names.index(c.lower()) for c in key.columns], {_normal(tuple(r)) for r in held}))
    return PendingRows(plan, [], keys)


def _buffer(session: Any, plan: RowPlan, values: list[Any]) -> bool:
    """Add the row to the session's pending rows; False for a duplicate key (nothing buffered)."""
    pending = session.pending_rows
    if pending is None or pending.plan is not plan:
        flush(session)
        pending = session.pending_rows = _start(session, plan)
    row_keys = [_normal(tuple(values[i] for i in positions)) for positions, _ in pending.keys]
    for key, (_, held) in zip(row_keys, pending.keys):
        if None not in key and key in held:
            return False
    for key, (_, held) in zip(row_keys, pending.keys):
        if None not in key:
            held.add(key)
    pending.rows.append(values)
    txn = session.txn
    txn.changed = True
    table = plan.table
    if table.is_tracked_by_cdc:
        session.engine.cdc.on_change(
            txn, table.database.name, table.schema, table.name, "insert", None, one_row_image(table, values)
        )
    return True


def flush(session: Any) -> None:
    """Write the session's pending rows with one DuckDB statement (logged for replay)."""
    pending, session.pending_rows = session.pending_rows, None
    if pending is None or not pending.rows:
        return
    from .dml import STAGE

    table = pending.plan.table
    columns = list(zip(*pending.rows))
    arrays = [
        pa.array(list(v), T.storage_arrow_type(c.type) if c.type.name != "uniqueidentifier" else pa.string())
        for c, v in zip(table.columns, columns)
    ]
    rows = pa.table(arrays, names=[c.name for c in table.columns])
    session.write(f"INSERT INTO {table.duck_name} SELECT * FROM {STAGE}", registrations={STAGE: rows})


def plan_for(session: Any, insert: FastInsert, table: Table, columns: list[Column], text: str) -> RowPlan | None:
    """The session's cached plan for ``text`` (rebuilt when the table or its columns changed)."""
    key = (session.database.lower(), text)
    plan = session.row_plans.get(key)
    if (
        plan is not None
        and plan.table is table
        and len(plan.columns_snapshot) == len(table.columns)
        and all(a is b for a, b in zip(plan.columns_snapshot, table.columns))
    ):
        return plan
    plan = build_plan(table, columns)
    if len(session.row_plans) > 200:
        session.row_plans.clear()
    session.row_plans[key] = plan
    return plan


def try_insert(
    session: Any, insert: FastInsert, table: Table, columns: list[Column], params: dict[str, Param], text: str
) -> StatementResult | None:
    """Insert the single VALUES row on this path; None to take the general path."""
    plan = plan_for(session, insert, table, columns, text) if len(insert.rows) == 1 else None
    try:
        values = row_values(plan, item_values(insert, params), session) if plan is not None else None
    except Fallback:
        values = None
    done = insert_row(session, plan, values) if plan is not None and values is not None else None
    if done is None:
        flush(session)  # the general path must see the buffered rows
    return done
