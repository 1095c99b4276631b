"""The ``sys.fn_cdc_*`` scalar functions and the ``cdc.fn_cdc_get_*_changes_<ci>`` table functions.

All of them read the CDC tables through the caller's DuckDB cursor, so under
SNAPSHOT isolation ``sys.fn_cdc_get_max_lsn()`` and the change rows come from
the same snapshot as the caller's data. ``sys.fn_cdc_get_max_lsn()`` is the
newest ``start_lsn`` in ``cdc.lsn_time_mapping``: with capture lag on it is
older than the newest committed transaction until a capture step runs.

Where SQL Server's answer is undocumented (``fn_cdc_has_column_changed`` with a
column the capture instance does not capture, ``fn_cdc_is_bit_set`` with a
position below 1) the double fails loudly with error 102 rather than guess.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..engine_api import ResultColumn, SqlServerError, SqlType, not_supported
from .catalog import Database
from .cdc_lsn import ZERO_LSN, lsn_bytes, lsn_int
from .cdc_query import ALL_FILTERS, NET_FILTERS, all_changes, check_range, net_changes
from .cdc_schema import CDC_SCHEMA

if TYPE_CHECKING:
    from .cdc import CdcManager

BINARY10 = SqlType("binary", 10)
TIME_TO_LSN = {
    "largest less than": ("<", "max"),
    "largest less than or equal": ("<=", "max"),
    "smallest greater than": (">", "min"),
    "smallest greater than or equal": (">=", "min"),
}


def short_name(name: str) -> str:
    """'[sys].[sp_cdc_enable_db]' -> 'sp_cdc_enable_db'."""
    return name.replace("[", "").replace("]", "").split(".")[-1].strip().lower()


def max_lsn(cursor: Any, db: Database) -> bytes | None:
    table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
    if not db.is_cdc_enabled or table is None:
        return None
    row = cursor.execute(f"SELECT max(start_lsn) FROM {table.duck_name}").fetchone()
    return bytes(row[0]) if row and row[0] is not None else ZERO_LSN


def min_lsn(manager: CdcManager, cursor: Any, db: Database, capture_instance: str) -> bytes:
    instance = manager.find_instance(db, capture_instance)
    table = db.find_table(CDC_SCHEMA, "change_tables")
    if instance is None or table is None:
        return ZERO_LSN
    row = cursor.execute(
        f"SELECT start_lsn FROM {table.duck_name} WHERE object_id = ?", [instance.object_id]
    ).fetchone()
    return bytes(row[0]) if row and row[0] is not None else ZERO_LSN


def scalar_function(manager: CdcManager, txn: Any, name: str, args: list[Any]) -> tuple[Any, SqlType]:
    fname = short_name(name)
    db = manager.session_database(txn)
    with manager.cursor(txn) as cursor:
        if fname == "fn_cdc_get_max_lsn":
            return max_lsn(cursor, db), BINARY10
        if fname == "fn_cdc_get_min_lsn":
            return min_lsn(manager, cursor, db, args[0] if args else ""), BINARY10
        if fname == "fn_cdc_map_lsn_to_time":
            return _lsn_to_time(cursor, db, args[0] if args else None), SqlType("datetime")
        if fname == "fn_cdc_map_time_to_lsn":
            return _time_to_lsn(cursor, db, *args[:2]), BINARY10
    return _pure_function(manager, db, fname, args)


def _pure_function(manager: CdcManager, db: Database, fname: str, args: list[Any]) -> tuple[Any, SqlType]:
    if fname in ("fn_cdc_increment_lsn", "fn_cdc_decrement_lsn"):
        if not args or args[0] is None:
            return None, BINARY10
        step = 1 if fname == "fn_cdc_increment_lsn" else -1
        return lsn_bytes(lsn_int(args[0]) + step), BINARY10
    if fname == "fn_cdc_get_column_ordinal":
        return _column_ordinal(manager, db, args[0], args[1]), SqlType("int")
    if fname == "fn_cdc_is_bit_set":
        return _is_bit_set(args[0], args[1]), SqlType("bit")
    if fname == "fn_cdc_has_column_changed":
        ordinal = _column_ordinal(manager, db, args[0], args[1])
        if ordinal < 1:
            raise not_supported(
                f"sys.fn_cdc_has_column_changed for column '{args[1]}', which capture instance '{args[0]}' does not "
                "capture (SQL Server's result is undocumented); check the name with sys.fn_cdc_get_column_ordinal"
            )  # fmt: skip
        return _is_bit_set(ordinal, args[2]), SqlType("bit")
    raise SqlServerError(
        4121, f"Cannot find either column \"sys\" or the user-defined function or aggregate \"sys.{fname}\", "
        "or the name is ambiguous."
    )  # fmt: skip


def _column_ordinal(manager: CdcManager, db: Database, capture_instance: Any, column: Any) -> int:
    instance = manager.find_instance(db, capture_instance)
    found = instance and next((c for c in instance.columns if c.name.lower() == str(column).lower()), None)
    return found.ordinal if found else -1


def _is_bit_set(position: Any, mask: Any) -> bool | None:
    if position is None or mask is None:
        return None
    if int(position) < 1:
        raise not_supported(f"sys.fn_cdc_is_bit_set with position {position} (positions start at 1; SQL Server's "
                            "result for others is undocumented)")  # fmt: skip
    raw = bytes(mask)
    return bool(int.from_bytes(raw, "big") >> (int(position) - 1) & 1) if raw else None


def _lsn_to_time(cursor: Any, db: Database, lsn: Any) -> dt.datetime | None:
    table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
    if table is None or lsn is None:
        return None
    row = cursor.execute(
        f"SELECT tran_end_time FROM {table.duck_name} WHERE start_lsn = ?", [lsn_bytes(lsn_int(lsn))]
    ).fetchone()  # fmt: skip
    return row[0] if row else None


def _time_to_lsn(cursor: Any, db: Database, relation: Any, when: Any) -> bytes | None:
    table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
    rule = TIME_TO_LSN.get(" ".join(str(relation or "").lower().split()))
    if rule is None:
        raise SqlServerError(
            22987, f"The relational operator '{relation}' is not valid. Use 'largest less than', "
            "'largest less than or equal', 'smallest greater than' or 'smallest greater than or equal'."
        )  # fmt: skip
    if table is None or when is None:
        return None
    op, agg = rule
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when.strip().replace("T", " "))
    row = cursor.execute(
        f"SELECT {agg}(start_lsn) FROM {table.duck_name} WHERE tran_end_time {op} ?", [when]
    ).fetchone()
    if row and row[0] is not None:
        return bytes(row[0])
    return ZERO_LSN if agg == "max" else None


def table_function(manager: CdcManager, txn: Any, name: str, args: list[Any]) -> tuple[list[ResultColumn], pa.Table]:
    fname = short_name(name)
    db = manager.session_database(txn)
    for kind, filters, reader in (("all", ALL_FILTERS, all_changes), ("net", NET_FILTERS, net_changes)):
        prefix = f"fn_cdc_get_{kind}_changes_"
        if not fname.startswith(prefix):
            continue
        instance = manager.find_instance(db, fname[len(prefix) :])
        if instance is None or len(args) != 3:
            break
        with manager.cursor(txn) as cursor:
            low = lsn_int(min_lsn(manager, cursor, db, instance.name))
            high = lsn_int(max_lsn(cursor, db))
            row_filter = check_range(kind, args[0], args[1], args[2], filters, low, high)
            return reader(cursor, instance, lsn_bytes(lsn_int(args[0])), lsn_bytes(lsn_int(args[1])), row_filter)
    raise SqlServerError(208, f"Invalid object name '{name}'.")
