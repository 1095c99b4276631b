"""The CDC query functions: ``cdc.fn_cdc_get_all_changes_<ci>`` and ``cdc.fn_cdc_get_net_changes_<ci>``.

Both read the change table through the caller's DuckDB cursor, so a SNAPSHOT
transaction sees change rows and ``sys.fn_cdc_get_max_lsn()`` from the same
snapshot as its data. Range checks follow SQL Server: a NULL bound,
``from_lsn`` below the capture instance's ``start_lsn``, ``to_lsn`` above the
database's max LSN, ``from_lsn > to_lsn`` or an unknown row filter all raise
error 313 with SQL Server's (misleading) "insufficient number of arguments"
text.

Net changes: per key (the capture instance's index columns) the last image in
the range, with operation 2 when the row did not exist before the range, 4
when it did, 1 when it is gone at the end, and nothing when it was inserted
and deleted inside the range. ``all with merge`` reports 5 instead of 2/4;
``all with mask`` ORs the update masks of the range into the row of an
operation 4 (SQL Server's exact mask rules are subtler).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..engine_api import ResultColumn, SqlServerError, SqlType
from .cdc_lsn import lsn_int
from .cdc_schema import CaptureInstance, quote

BINARY10 = SqlType("binary", 10)
LSN_COLUMNS = [ResultColumn("__$start_lsn", BINARY10), ResultColumn("__$seqval", BINARY10),
               ResultColumn("__$operation", SqlType("int")), ResultColumn("__$update_mask", SqlType("varbinary", 128))]  # fmt: skip
ALL_FILTERS = ("all", "all update old")
NET_FILTERS = ("all", "all with mask", "all with merge")


def error_313(kind: str) -> SqlServerError:
    return SqlServerError(
        313,
        f"An insufficient number of arguments were supplied for the procedure or function cdc.fn_cdc_get_{kind}_changes_ ... .",
        state=3,
    )


def check_range(
    kind: str, from_lsn: Any, to_lsn: Any, row_filter: Any, filters: tuple[str, ...], min_lsn: int, max_lsn: int
) -> str:
    """Validate the TVF arguments; returns the normalised row filter."""
    normalized = str(row_filter or "").strip().lower()
    normalized = " ".join(normalized.split())
    if from_lsn is None or to_lsn is None or normalized not in filters:
        raise error_313(kind)
    low, high = lsn_int(from_lsn), lsn_int(to_lsn)
    if low < min_lsn or high > max_lsn or low > high:
        raise error_313(kind)
    return normalized


def _result_columns(instance: CaptureInstance, with_seqval: bool) -> list[ResultColumn]:
    leading = LSN_COLUMNS if with_seqval else [c for c in LSN_COLUMNS if c.name != "__$seqval"]
    return leading + [ResultColumn(c.name, c.type) for c in instance.columns]


def all_changes(
    cursor: Any, instance: CaptureInstance, from_lsn: bytes, to_lsn: bytes, row_filter: str
) -> tuple[list[ResultColumn], pa.Table]:
    columns = _result_columns(instance, with_seqval=True)
    skip_old = 'AND "__$operation" <> 3' if row_filter == "all" else ""
    sql = (
        f"SELECT {', '.join(quote(c.name) for c in columns)} FROM {instance.change_table.duck_name} "
        f'WHERE "__$start_lsn" BETWEEN ? AND ? {skip_old} '
        'ORDER BY "__$start_lsn", "__$seqval", "__$operation"'
    )
    return columns, cursor.execute(sql, [bytes(from_lsn), bytes(to_lsn)]).to_arrow_table()


def net_changes(
    cursor: Any, instance: CaptureInstance, from_lsn: bytes, to_lsn: bytes, row_filter: str
) -> tuple[list[ResultColumn], pa.Table]:
    if not instance.supports_net_changes:
        raise SqlServerError(208, f"Invalid object name 'cdc.fn_cdc_get_net_changes_{instance.name}'.")
    _, changes = all_changes(cursor, instance, from_lsn, to_lsn, "all")
    columns = _result_columns(instance, with_seqval=False)
    rows = changes.to_pylist()
    keys = instance.index_columns
    order: list[tuple] = []
    net: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        state = net.get(key)
        if state is None:
            state = net[key] = {"existed": row["__$operation"] != 2, "mask": 0}
            order.append(key)
        state["last"] = row
        if row["__$operation"] == 4 and row["__$update_mask"]:
            state["mask"] |= int.from_bytes(row["__$update_mask"], "big")
    out = [r for r in (_net_row(net[k], row_filter, instance) for k in order) if r is not None]
    out.sort(key=lambda r: r["__$start_lsn"])
    schema = pa.schema([(c.name, changes.schema.field(c.name).type) for c in columns])
    return columns, pa.Table.from_pylist(out, schema=schema)


def _net_row(state: dict[str, Any], row_filter: str, instance: CaptureInstance) -> dict[str, Any] | None:
    last = dict(state["last"])
    exists = last["__$operation"] != 1
    if not state["existed"] and not exists:
        return None
    if not exists:
        operation = 1
    elif row_filter == "all with merge":
        operation = 5
    else:
        operation = 4 if state["existed"] else 2
    last["__$operation"] = operation
    width = (len(instance.columns) + 7) // 8
    with_mask = row_filter == "all with mask" and operation == 4
    last["__$update_mask"] = state["mask"].to_bytes(width, "big") if with_mask else None
    last.pop("__$seqval", None)
    return last
