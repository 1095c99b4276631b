"""Change Data Capture for the double, as SQL Server exposes it.

SQL Server's capture job reads the transaction log after the fact; the double
has no log, so it captures synchronously: the engine reports every DML
statement's before/after images (``on_change``) and the CDC manager writes the
change rows in ``before_commit``, inside the engine's commit lock and through
the committing transaction's cursor. Consequences, all deliberate:

- change rows become visible exactly when the data does (SQL Server lags by the
  capture job's polling interval; clients must cope with both);
- a rolled-back transaction leaves no change rows and no LSN mapping;
- every committed writing transaction moves the LSN counter, CDC or not, so
  LSNs show gaps like SQL Server's;
- ``sys.fn_cdc_get_max_lsn()`` reads ``cdc.lsn_time_mapping`` in the caller's
  transaction, so under SNAPSHOT it matches the data that transaction sees.

Module map: ``cdc_lsn`` (LSN shape and allocation), ``cdc_schema`` (system and
change tables), ``cdc_capture`` (images -> change rows), ``cdc_query`` (the
TVFs), ``cdc_procs`` (the ``sys.sp_cdc_*`` procedures), this module (the hooks
the engine calls, scalar functions, the purge hook).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from ..engine_api import ResultColumn, SqlServerError, SqlType, StatementResult
from . import cdc_procs
from .catalog import Database
from .cdc_capture import StatementChange, pending_changes, statement_parts, take_pending, write_part
from .cdc_lsn import FIRST_LSN, ZERO_LSN, allocate_commit, lsn_bytes, lsn_int
from .cdc_query import ALL_FILTERS, NET_FILTERS, all_changes, check_range, net_changes
from .cdc_schema import CDC_SCHEMA, CaptureInstance

BINARY10 = SqlType("binary", 10)
TIME_TO_LSN = {
    "largest less than": ("<", "max"),
    "largest less than or equal": ("<=", "max"),
    "smallest greater than": (">", "min"),
    "smallest greater than or equal": (">=", "min"),
}


def datetime_value(value: dt.datetime) -> dt.datetime:
    """``value`` rounded to SQL Server datetime's 1/300 s ticks, so it survives a round trip exactly."""
    ticks = round(value.microsecond * 300 / 1_000_000)
    base = value.replace(microsecond=0)
    return base + dt.timedelta(milliseconds=round(ticks * 1000 / 300))


def short_name(name: str) -> str:
    """'[sys].[sp_cdc_enable_db]' -> 'sp_cdc_enable_db'."""
    return name.replace("[", "").replace("]", "").split(".")[-1].strip().lower()


class CdcManager:
    """The engine's CDC hooks (see the package README, "CDC hook interface")."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._lock = threading.RLock()
        self._last_lsn = FIRST_LSN
        self._instances: dict[tuple[str, int], dict[str, CaptureInstance]] = {}

    # -- capture instances ------------------------------------------------------
    def instances(self, db: Database) -> dict[str, CaptureInstance]:
        """Capture instances of ``db`` by lower-case name (a fresh dict for a re-created database)."""
        return self._instances.setdefault((db.name.lower(), db.database_id), {})

    def instances_of(self, db: Database, schema: str, table: str) -> list[CaptureInstance]:
        return [ci for ci in self.instances(db).values() if ci.is_source(schema, table)]

    def find_instance(self, db: Database, name: str) -> CaptureInstance | None:
        return self.instances(db).get(str(name or "").lower())

    def next_lsn(self) -> int:
        """A fresh LSN outside any commit (capture-instance start, DDL)."""
        with self._lock:
            self._last_lsn = allocate_commit(self._last_lsn, 0).commit
            return self._last_lsn

    @contextmanager
    def cursor(self, txn: Any) -> Iterator[Any]:
        """The transaction's cursor, or a short transaction of our own when there is none."""
        if txn is not None and getattr(txn, "cursor", None) is not None:
            yield txn.cursor
            return
        cursor = self.engine.con.cursor()
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield cursor
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()

    # -- hooks the engine calls ---------------------------------------------------
    def on_change(
        self,
        txn: Any,
        database: str,
        schema: str,
        table: str,
        operation: str,
        before: pa.Table | None,
        after: pa.Table | None,
    ) -> None:
        db = self.engine.database(database)
        if not db.is_cdc_enabled or not self.instances_of(db, schema, table):
            return
        source = db.find_table(schema, table)
        key = source.primary_key.columns if source is not None and source.primary_key else []
        change = StatementChange(db.name, schema, table, operation.lower(), before, after, list(key), dt.datetime.now())
        pending_changes(txn).append(change)

    def before_commit(self, txn: Any) -> None:
        """Give the transaction its LSNs and write its change rows (engine commit lock held)."""
        changes = take_pending(txn)
        with self._lock:
            planned = []
            total = 0
            for command_id, change in enumerate(changes, start=1):
                parts, count = statement_parts(change, command_id)
                planned.append((change, parts, total))
                total += count
            lsns = allocate_commit(self._last_lsn, total)
            self._last_lsn = lsns.commit
        touched: dict[str, dt.datetime] = {}
        for change, parts, seq_base in planned:
            db = self.engine.database(change.database)
            for instance in self.instances_of(db, change.schema, change.table):
                for part in parts:
                    write_part(txn.cursor, instance, part, lsns.commit, lsns.seqvals, seq_base)
                touched.setdefault(db.name, change.at)
        for database, began in touched.items():
            self._map_lsn(txn, self.engine.database(database), lsns.commit, lsns.tran_begin, began)

    def _map_lsn(self, txn: Any, db: Database, commit: int, tran_begin: int, began: dt.datetime) -> None:
        table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
        assert table is not None, f"cdc.lsn_time_mapping missing in CDC-enabled database {db.name}"
        tran_id = int(getattr(txn, "descriptor", 0) or 0).to_bytes(10, "big")
        txn.cursor.execute(
            f"INSERT INTO {table.duck_name} VALUES (?, ?, ?, ?, ?)",
            [lsn_bytes(commit), datetime_value(began), datetime_value(dt.datetime.now()), tran_id,
             lsn_bytes(tran_begin)],
        )  # fmt: skip

    def after_rollback(self, txn: Any) -> None:
        take_pending(txn)

    def on_ddl(self, txn: Any, database: str, schema: str, table: str, ddl_text: str) -> None:
        db = self.engine.database(database)
        if not db.is_cdc_enabled:
            return
        instances = self.instances_of(db, schema, table)
        if not instances:
            return
        if ddl_text.lstrip().upper().startswith("DROP TABLE"):
            with self.cursor(txn) as cursor:
                for instance in instances:
                    cdc_procs.drop_instance(self, cursor, db, instance)
            return
        history = db.find_table(CDC_SCHEMA, "ddl_history")
        assert history is not None
        lsn = lsn_bytes(self.next_lsn())
        with self.cursor(txn) as cursor:
            for instance in instances:
                cursor.execute(
                    f"INSERT INTO {history.duck_name} VALUES (?, ?, 0, ?, ?, ?)",
                    [instance.source_object_id, instance.object_id, ddl_text, lsn, datetime_value(dt.datetime.now())],
                )

    def call_procedure(self, txn: Any, name: str, args: Any) -> StatementResult:
        return cdc_procs.call(self, txn, short_name(name), args)

    # -- functions ---------------------------------------------------------------
    def session_database(self, txn: Any) -> Database:
        session = getattr(txn, "session", None)
        return self.engine.database(getattr(session, "database", None) or "master")

    def max_lsn(self, cursor: Any, db: Database) -> bytes | None:
        table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
        if not db.is_cdc_enabled or table is None:
            return None
        row = cursor.execute(f"SELECT max(start_lsn) FROM {table.duck_name}").fetchone()
        return bytes(row[0]) if row and row[0] is not None else ZERO_LSN

    def min_lsn(self, cursor: Any, db: Database, capture_instance: str) -> bytes:
        instance = self.find_instance(db, capture_instance)
        table = db.find_table(CDC_SCHEMA, "change_tables")
        if instance is None or table is None:
            return ZERO_LSN
        row = cursor.execute(
            f"SELECT start_lsn FROM {table.duck_name} WHERE lower(capture_instance) = lower(?)", [instance.name]
        ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else ZERO_LSN

    def scalar_function(self, txn: Any, name: str, args: list[Any]) -> tuple[Any, SqlType]:
        fname = short_name(name)
        db = self.session_database(txn)
        with self.cursor(txn) as cursor:
            if fname == "fn_cdc_get_max_lsn":
                return self.max_lsn(cursor, db), BINARY10
            if fname == "fn_cdc_get_min_lsn":
                return self.min_lsn(cursor, db, args[0] if args else ""), BINARY10
            if fname == "fn_cdc_map_lsn_to_time":
                return self._lsn_to_time(cursor, db, args[0] if args else None), SqlType("datetime")
            if fname == "fn_cdc_map_time_to_lsn":
                return self._time_to_lsn(cursor, db, *args[:2]), BINARY10
        return self._pure_function(db, fname, args)

    def _pure_function(self, db: Database, fname: str, args: list[Any]) -> tuple[Any, SqlType]:
        if fname in ("fn_cdc_increment_lsn", "fn_cdc_decrement_lsn"):
            if not args or args[0] is None:
                return None, BINARY10
            step = 1 if fname == "fn_cdc_increment_lsn" else -1
            return lsn_bytes(lsn_int(args[0]) + step), BINARY10
        if fname == "fn_cdc_get_column_ordinal":
            instance = self.find_instance(db, args[0])
            found = instance and next((c for c in instance.columns if c.name.lower() == str(args[1]).lower()), None)
            return (found.ordinal if found else -1), SqlType("int")
        if fname == "fn_cdc_is_bit_set":
            position, mask = int(args[0]), bytes(args[1] or b"")
            return bool(int.from_bytes(mask, "big") >> (position - 1) & 1) if mask else None, SqlType("bit")
        if fname == "fn_cdc_has_column_changed":
            ordinal, _ = self._pure_function(db, "fn_cdc_get_column_ordinal", args[:2])
            return self._pure_function(db, "fn_cdc_is_bit_set", [ordinal, args[2]])
        raise SqlServerError(
            4121, f"Cannot find either column \"sys\" or the user-defined function or aggregate \"sys.{fname}\", "
            "or the name is ambiguous."
        )  # fmt: skip

    def _lsn_to_time(self, cursor: Any, db: Database, lsn: Any) -> dt.datetime | None:
        table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
        if table is None or lsn is None:
            return None
        row = cursor.execute(
            f"SELECT tran_end_time FROM {table.duck_name} WHERE start_lsn = ?", [lsn_bytes(lsn_int(lsn))]
        ).fetchone()
        return row[0] if row else None

    def _time_to_lsn(self, cursor: Any, db: Database, relation: Any, when: Any) -> bytes | None:
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

    def table_function(self, txn: Any, name: str, args: list[Any]) -> tuple[list[ResultColumn], pa.Table]:
        fname = short_name(name)
        db = self.session_database(txn)
        for kind, filters, reader in (("all", ALL_FILTERS, all_changes), ("net", NET_FILTERS, net_changes)):
            prefix = f"fn_cdc_get_{kind}_changes_"
            if not fname.startswith(prefix):
                continue
            instance = self.find_instance(db, fname[len(prefix) :])
            if instance is None or len(args) != 3:
                break
            with self.cursor(txn) as cursor:
                min_lsn = lsn_int(self.min_lsn(cursor, db, instance.name))
                max_lsn = lsn_int(self.max_lsn(cursor, db))
                row_filter = check_range(kind, args[0], args[1], args[2], filters, min_lsn, max_lsn)
                return reader(cursor, instance, lsn_bytes(lsn_int(args[0])), lsn_bytes(lsn_int(args[1])), row_filter)
        raise SqlServerError(208, f"Invalid object name '{name}'.")

    # -- retention ----------------------------------------------------------------
    def purge_changes(self, database: str, capture_instance: str | None, up_to_lsn: bytes) -> int:
        """Delete change rows with ``__$start_lsn <= up_to_lsn``; the min LSN becomes the next LSN.

        ``capture_instance`` None purges every capture instance of the database.
        Returns the number of change rows deleted.
        """
        db = self.engine.database(database)
        if capture_instance is None:
            targets = list(self.instances(db).values())
        else:
            found = self.find_instance(db, capture_instance)
            if found is None:
                raise SqlServerError(22964, f"Capture instance '{capture_instance}' does not exist in database '{db.name}'.")
            targets = [found]
        low_water = lsn_bytes(lsn_int(up_to_lsn) + 1)
        with self.cursor(None) as cursor:
            return sum(cdc_procs.move_low_water_mark(cursor, db, ci, low_water) for ci in targets)
