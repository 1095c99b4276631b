"""Turning DML images into change-table rows, at commit time.

The engine reports each DML statement with Arrow before/after images
(``on_change``); they are kept on the transaction object until
``before_commit``, which runs inside the engine's commit lock right before the
DuckDB COMMIT. There the whole transaction gets one commit LSN
(``__$start_lsn``), each changed row a ``__$seqval`` in statement order, and the
rows are inserted through the transaction's own cursor (into the change table,
or into the double's log when capture lags), so they commit or roll back with
the data. A rolled-back transaction simply drops its list.

Updates follow SQL Server:

- a row whose primary-key value did not change becomes an "update before"
  (operation 3) and "update after" (4) pair sharing one seqval, with
  ``__$update_mask`` bits set for the captured columns whose value changed;
- rows whose primary-key value changed are logged by SQL Server as deletes of
  the old keys and inserts of the new ones (a "split update"): all of the
  statement's deletes (operation 1) come before its inserts (2), each with its
  own seqval and all mask bits set. So ``UPDATE t SET id = id + 1`` applied in
  ``__$seqval`` order deletes 1, 2, 3 and then inserts 2, 3, 4, and net changes
  see each key's final state. (SQL Server's collapse step may turn a delete and
  an insert of the same key value into an update; replaying either gives the
  same table.)

Large objects: in an "update before" row a varchar(max)/nvarchar(max)/
varbinary(max) column is NULL unless the update changed it, as in SQL Server's
change tables (text/ntext/image are stored as the (max) types here).

Mask layout: ordinal 1 (first captured column) is the lowest bit of the *last*
byte; the mask is ceil(captured/8) bytes long.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import types as T
from .cdc_lsn import lsn_bytes
from .cdc_schema import CaptureInstance, quote

PENDING_ATTR = "_cdc_pending"


@dataclass
class StatementChange:
    """One DML statement's images, as reported by the engine."""

    database: str
    schema: str
    table: str
    operation: str  # insert | update | delete
    before: pa.Table | None
    after: pa.Table | None
    key_columns: list[str]
    at: dt.datetime


@dataclass
class ChangePart:
    """Rows of one image going to change tables: each row's operation, seqval index and changed columns."""

    image: pa.Table
    operations: np.ndarray  # int32
    seq_index: np.ndarray  # int64, relative to the statement
    changed: dict[str, np.ndarray] | None  # column -> bool per row; None = all columns (insert/delete/split)
    command_id: int


def pending_changes(txn: Any) -> list[StatementChange]:
    pending = getattr(txn, PENDING_ATTR, None)
    if pending is None:
        pending = []
        setattr(txn, PENDING_ATTR, pending)
    return pending


def take_pending(txn: Any) -> list[StatementChange]:
    pending = getattr(txn, PENDING_ATTR, None) or []
    if hasattr(txn, PENDING_ATTR):
        delattr(txn, PENDING_ATTR)
    return pending


def _values_differ(before: pa.ChunkedArray | pa.Array, after: pa.ChunkedArray | pa.Array) -> np.ndarray:
    equal = pc.fill_null(pc.equal(before, after), False)
    both_null = pc.and_(pc.is_null(before), pc.is_null(after))
    same = pc.or_(equal, both_null)
    return np.asarray(pc.invert(same).to_numpy(zero_copy_only=False), dtype=bool)


def statement_parts(change: StatementChange, command_id: int) -> tuple[list[ChangePart], int]:
    """The change-table rows of one statement, and how many seqvals it uses."""
    if change.operation == "insert" and change.after is not None:
        n = change.after.num_rows
        return [ChangePart(change.after, np.full(n, 2, np.int32), np.arange(n), None, command_id)], n
    if change.operation == "delete" and change.before is not None:
        n = change.before.num_rows
        return [ChangePart(change.before, np.full(n, 1, np.int32), np.arange(n), None, command_id)], n
    assert change.before is not None and change.after is not None, "an update needs both images"
    before, after = change.before, change.after
    split = np.zeros(before.num_rows, dtype=bool)
    for key in change.key_columns:
        if key in before.column_names and key in after.column_names:
            split |= _values_differ(before.column(key), after.column(key))
    common = [c for c in before.column_names if c in after.column_names]
    changed = {c: _values_differ(before.column(c), after.column(c)) for c in common}
    kept = ~split
    updated = int(kept.sum())
    moved = int(split.sum())
    parts = []
    if updated:
        keep_mask = pa.array(kept)
        kept_changed = {c: v[kept] for c, v in changed.items()}
        seq = np.arange(updated)
        parts += [
            ChangePart(before.filter(keep_mask), np.full(updated, 3, np.int32), seq, kept_changed, command_id),
            ChangePart(after.filter(keep_mask), np.full(updated, 4, np.int32), seq, kept_changed, command_id),
        ]
    if moved:  # split update: every delete of the statement, then every insert
        split_mask = pa.array(split)
        parts += [
            ChangePart(
                before.filter(split_mask),
                np.full(moved, 1, np.int32),
                np.arange(updated, updated + moved),
                None,
                command_id,
            ),
            ChangePart(
                after.filter(split_mask),
                np.full(moved, 2, np.int32),
                np.arange(updated + moved, updated + 2 * moved),
                None,
                command_id,
            ),
        ]
    return parts, updated + 2 * moved


def update_masks(part: ChangePart, instance: CaptureInstance) -> list[bytes]:
    """``__$update_mask`` of each row of ``part`` for ``instance``'s captured columns."""
    width = (len(instance.columns) + 7) // 8
    n = part.image.num_rows
    bits = np.zeros((n, width * 8), dtype=bool)
    for col in instance.columns:
        if part.changed is None:
            bits[:, col.ordinal - 1] = True
        else:
            found = next((v for k, v in part.changed.items() if k.lower() == col.name.lower()), None)
            bits[:, col.ordinal - 1] = True if found is None else found
    packed = np.packbits(bits, axis=1, bitorder="little")[:, ::-1]
    return [row.tobytes() for row in packed]


def _image_column(image: pa.Table, name: str) -> pa.ChunkedArray | None:
    lowered = name.lower()
    return next((image.column(i) for i, c in enumerate(image.column_names) if c.lower() == lowered), None)


def _captured_values(part: ChangePart, instance: CaptureInstance, index: int) -> pa.ChunkedArray | pa.Array:
    """Captured column ``index`` of ``part``'s rows (NULL where the image has no such column, or a LOB before-image)."""
    col = instance.columns[index]
    n = part.image.num_rows
    found = _image_column(part.image, col.name)
    if found is None:
        return pa.nulls(n, T.storage_arrow_type(col.type))
    if part.changed is None or col.type.length != -1 or not np.any(part.operations == 3):
        return found
    changed = next((v for k, v in part.changed.items() if k.lower() == col.name.lower()), np.ones(n, dtype=bool))
    keep = pa.array(changed | (part.operations != 3))
    return pc.if_else(keep, found, pa.nulls(n, found.type))


def write_part(
    cursor: Any,
    instance: CaptureInstance,
    part: ChangePart,
    start_lsn: int,
    seqvals: list[int],
    seq_base: int,
    target: str | None = None,
) -> None:
    """Insert ``part``'s rows into ``target`` (default: the instance's change table) through ``cursor``."""
    n = part.image.num_rows
    if n == 0:
        return
    columns: dict[str, Any] = {
        "__$seqval": pa.array([lsn_bytes(seqvals[seq_base + int(i)]) for i in part.seq_index], pa.binary()),
        "__$operation": pa.array(part.operations, pa.int32()),
        "__$update_mask": pa.array(update_masks(part, instance), pa.binary()),
    }
    for index in range(len(instance.columns)):
        columns[f"c{index}"] = _captured_values(part, instance, index)
    staged = pa.table(columns)
    view = f"__cdc_stage_{id(staged)}"
    captured_sql = [T.conversion_sql(quote(f"c{i}"), col.type) for i, col in enumerate(instance.columns)]
    names = [quote(c.name) for c in instance.change_table.columns]
    select = ["?", "NULL", '"__$seqval"', '"__$operation"', '"__$update_mask"', *captured_sql, str(part.command_id)]
    cursor.register(view, staged)
    try:
        cursor.execute(
            f"INSERT INTO {target or instance.change_table.duck_name} ({', '.join(names)}) "
            f"SELECT {', '.join(select)} FROM {quote(view)}",
            [lsn_bytes(start_lsn)],
        )
    finally:
        cursor.unregister(view)
