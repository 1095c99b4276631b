"""Change partitions: one window of a capture instance, read as Arrow and written like a snapshot.

A change file has the table's captured columns (exact types, as in a full load)
plus four columns, in this order after them:

- ``_dtaas_op``: ``insert``, ``update``, ``delete`` (``update_before`` too with
  ``cdc.update_before_images: true``);
- ``_dtaas_lsn``: the commit LSN (``__$start_lsn``) as 20 lower-case hex digits;
- ``_dtaas_seqval``: ``__$seqval``, the same way (text order is LSN order);
- ``_dtaas_commit_time``: the commit time from ``cdc.lsn_time_mapping``, UTC.

Rows are in ``(__$start_lsn, __$seqval, __$operation)`` order. An update that
changes the primary key, when SQL Server records it as an update pair (3/4)
rather than a split update (1/2), is written as a ``delete`` of the old key
(its before-image) followed by an ``update`` with the new key, at the same
LSN and seqval, so replaying the rows by key in order gives the table.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.bulk import BulkRead
from dtaas_dagster.sqlserver.cdc import ChangeWindow
from dtaas_dagster.sqlserver.lsn import hex_column
from dtaas_dagster.sqlserver.snapshot import SnapshotPlan, convert_batch
from dtaas_dagster.stream import SourceCount

OP, LSN, SEQVAL, COMMIT_TIME = "_dtaas_op", "_dtaas_lsn", "_dtaas_seqval", "_dtaas_commit_time"
CHANGE_FIELDS = (
    pa.field(OP, pa.string(), nullable=False),
    pa.field(LSN, pa.string(), nullable=False),
    pa.field(SEQVAL, pa.string(), nullable=False),
    pa.field(COMMIT_TIME, pa.timestamp("us", tz="UTC")),
)
CHANGE_COLUMNS = tuple(f.name for f in CHANGE_FIELDS)
_META_FETCH = (
    pa.field("__dtaas_lsn", pa.binary()),
    pa.field("__dtaas_seqval", pa.binary()),
    pa.field("__dtaas_operation", pa.int32()),
    pa.field("__dtaas_commit_time", pa.timestamp("ms")),
)
_DELETE, _INSERT, _BEFORE, _AFTER = 1, 2, 3, 4
_OP_NAMES = {_DELETE: "delete", _INSERT: "insert", _BEFORE: "update_before", _AFTER: "update"}


@functools.cache
def _op_name_of_code() -> pa.Array:
    # built on first use: pa.array() at import time would import pandas (0.3 s) into every
    # process that loads the definitions
    return pa.array([_OP_NAMES.get(code, "unknown") for code in range(5)], pa.string())


def _op_names(operations: np.ndarray) -> pa.Array:
    """``_dtaas_op`` for SQL Server's ``__$operation`` codes (a take in Arrow, no Python objects)."""
    return _op_name_of_code().take(pa.array(operations))


@dataclass(frozen=True)
class ChangePlan:
    """How one change window is read: the captured columns' plan, the window, the key."""

    data: SnapshotPlan
    window: ChangeWindow
    key: tuple[str, ...]
    update_before_images: bool = False

    @property
    def target_schema(self) -> pa.Schema:
        return pa.schema([*self.data.target_schema, *CHANGE_FIELDS])


def changes_read(plan: ChangePlan) -> BulkRead:
    """The arrow-odbc read of a window, with its completeness check (see queries.build_changes_batch)."""
    columns = [c.name for c in plan.data.columns]
    return BulkRead(
        sql=queries.build_changes_batch(plan.window.capture_instance, columns),
        fetch_schema=pa.schema([*_META_FETCH, *plan.data.fetch_schema]),
        what=f"changes {plan.window}",
        max_text_size=plan.data.max_text_size,
        max_binary_size=plan.data.max_binary_size,
        parameters=(plan.window.from_lsn.hex, plan.window.to_lsn.hex),
    )


def _convert(batch: pa.RecordBatch, plan: ChangePlan) -> tuple[pa.RecordBatch, np.ndarray]:
    """The data columns in their target types plus the change columns; and the raw operations."""
    meta = len(_META_FETCH)
    data = pa.RecordBatch.from_arrays(batch.columns[meta:], schema=plan.data.fetch_schema)
    converted = convert_batch(data, plan.data)
    operations = batch.column(2).to_numpy(zero_copy_only=False).astype(np.int8)
    names = _op_names(operations)
    commit = pc.assume_timezone(batch.column(3).cast(pa.timestamp("us")), "UTC")
    arrays = [*converted.columns, names, hex_column(batch.column(0)), hex_column(batch.column(1)), commit]
    return pa.RecordBatch.from_arrays(arrays, schema=plan.target_schema), operations


def _key_changed(batch: pa.RecordBatch, key: Sequence[str], before: np.ndarray) -> np.ndarray:
    """For each before-image row index, whether its key differs from the next (after-image) row's."""
    changed = np.zeros(len(before), dtype=bool)
    if not len(before):
        return changed
    for name in key:
        column = batch.column(name)
        left, right = column.take(pa.array(before)), column.take(pa.array(before + 1))
        differs = pc.fill_null(pc.not_equal(left, right), True).to_numpy(zero_copy_only=False)
        changed |= differs.astype(bool)
    return changed


def _resolve_pairs(batch: pa.RecordBatch, operations: np.ndarray, plan: ChangePlan) -> pa.RecordBatch:
    """Before-images: a key change becomes a delete of the old key; others are kept or dropped."""
    before = np.flatnonzero(operations == _BEFORE)
    if not len(before):
        return batch
    key_changed = _key_changed(batch, plan.key, before)
    codes = operations.copy()
    codes[before[key_changed]] = _DELETE
    keep = np.ones(len(operations), dtype=bool)
    if not plan.update_before_images:
        keep[before[~key_changed]] = False
    arrays = list(batch.columns)
    arrays[batch.schema.get_field_index(OP)] = _op_names(codes)
    resolved = pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
    return resolved.filter(pa.array(keep))


def change_batches(
    fetched: Iterator[pa.RecordBatch], plan: ChangePlan, count: SourceCount | None = None
) -> Iterator[pa.RecordBatch]:
    """Fetched window batches -> change-file batches (see the module docstring).

    A before-image is always followed by its after-image (same LSN and seqval);
    when a fetch batch ends between the two, the before-image waits for the next.
    Before-images left out are counted in ``count.dropped`` (the row count check).
    """
    carry: pa.RecordBatch | None = None
    carry_ops = np.zeros(0, dtype=np.int8)
    for raw in fetched:
        batch, operations = _convert(raw, plan)
        if carry is not None:
            batch = pa.Table.from_batches([carry, batch]).combine_chunks().to_batches()[0]
            operations = np.concatenate([carry_ops, operations])
            carry = None
        if len(operations) and operations[-1] == _BEFORE:
            carry, carry_ops = batch.slice(len(operations) - 1), operations[-1:]
            batch, operations = batch.slice(0, len(operations) - 1), operations[:-1]
        if batch.num_rows:
            resolved = _resolve_pairs(batch, operations, plan)
            if count is not None:
                count.dropped += batch.num_rows - resolved.num_rows
            yield resolved
    if carry is not None:  # a before-image without its after-image: not expected from SQL Server
        raise RuntimeError(
            f"changes {plan.window}: an update before-image ended the window without its after-image; re-run the window"
        )
