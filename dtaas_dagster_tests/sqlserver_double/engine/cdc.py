"""Change Data Capture for the double, as SQL Server exposes it.

SQL Server's capture job reads the transaction log after the fact; the double
has no log. The engine reports every DML statement's before/after images
(``on_change``) and the CDC manager turns them into change rows in
``before_commit``, inside the engine's commit lock and through the committing
transaction's cursor, so they commit or roll back with the data:

- by default capture is synchronous: the rows go straight into the change
  tables and ``cdc.lsn_time_mapping``, visible exactly when the data is;
- with a capture lag (per database or double-wide, ``set_capture_lag``) they
  go into the double's log and reach the change tables only when a capture
  step moves them, after the lag or on request (``capture``); until then
  ``sys.fn_cdc_get_max_lsn()`` lags the newest commit, as on SQL Server.

Every committed writing transaction moves the LSN counter, CDC or not, so LSNs
show gaps like SQL Server's; a rolled-back transaction leaves no change rows
and no LSN mapping.

Module map: ``cdc_lsn`` (LSN shape and allocation), ``cdc_schema`` (system,
change and log tables), ``cdc_capture`` (images -> change rows), ``cdc_log``
(capture modes, log scans, idle entries), ``cdc_jobs`` (the capture and
cleanup job thread), ``cdc_retention`` (cleanup and purge), ``cdc_query`` and
``cdc_functions`` (the TVFs and ``sys.fn_cdc_*``), ``cdc_procs`` (the
``sys.sp_cdc_*`` procedures), ``cdc_ddl`` (DDL on tracked tables),
``cdc_views`` (the CDC DMVs), this module (the hooks the engine calls and the
double's control API).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from ..engine_api import ResultColumn, SqlServerError, SqlType, StatementResult
from . import cdc_ddl, cdc_functions, cdc_log, cdc_procs, cdc_retention
from .catalog import Database
from .cdc_capture import StatementChange, pending_changes, statement_parts, take_pending, write_part
from .cdc_jobs import JobSettings, JobThread
from .cdc_lsn import FIRST_LSN, allocate_commit, lsn_bytes, lsn_int
from .cdc_schema import CDC_SCHEMA, CaptureInstance, datetime_value

DbKey = tuple[str, int]


class CdcManager:
    """The engine's CDC hooks (see the package README, "CDC hook interface") and the double's CDC controls."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._lock = threading.RLock()
        self._last_lsn = FIRST_LSN
        self._instances: dict[DbKey, dict[str, CaptureInstance]] = {}
        self._default_lag: float | None = None
        self._lags: dict[DbKey, float | None] = {}
        self._histories: dict[DbKey, cdc_log.ScanHistory] = {}
        self._jobs: dict[DbKey, JobSettings] = {}
        self._capture_faults: dict[DbKey, list[int]] = {}  # [remaining, error number]
        self._job_thread: JobThread | None = None

    # -- per-database state -------------------------------------------------------
    @staticmethod
    def _key(db: Database) -> DbKey:
        return (db.name.lower(), db.database_id)  # a re-created database starts afresh

    def instances(self, db: Database) -> dict[str, CaptureInstance]:
        """Capture instances of ``db`` by lower-case name."""
        return self._instances.setdefault(self._key(db), {})

    def instances_of(self, db: Database, schema: str, table: str) -> list[CaptureInstance]:
        return [ci for ci in self.instances(db).values() if ci.is_source(schema, table)]

    def find_instance(self, db: Database, name: Any) -> CaptureInstance | None:
        return self.instances(db).get(str(name or "").lower())

    def scan_history(self, db: Database) -> cdc_log.ScanHistory:
        return self._histories.setdefault(self._key(db), cdc_log.ScanHistory())

    def job_settings(self, db: Database) -> JobSettings:
        return self._jobs.setdefault(self._key(db), JobSettings())

    def capture_lag(self, db: Database) -> float | None:
        return self._lags.get(self._key(db), self._default_lag)

    def last_lsn(self) -> int:
        with self._lock:
            return self._last_lsn

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

    def session_database(self, txn: Any) -> Database:
        session = getattr(txn, "session", None)
        return self.engine.database(getattr(session, "database", None) or "master")

    # -- hooks the engine calls ---------------------------------------------------
    def on_change(self, txn: Any, database: str, schema: str, table: str, operation: str,
                  before: pa.Table | None, after: pa.Table | None) -> None:  # fmt: skip
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
        touched: dict[str, tuple[dt.datetime, int]] = {}
        for change, parts, seq_base in planned:
            db = self.engine.database(change.database)
            lagging = self.capture_lag(db) is not None
            for instance in self.instances_of(db, change.schema, change.table):
                target = instance.log_duck_name if lagging else None
                for part in parts:
                    write_part(txn.cursor, instance, part, lsns.commit, lsns.seqvals, seq_base, target)
            began, rows = touched.get(db.name, (change.at, 0))
            touched[db.name] = (began, rows + sum(p.image.num_rows for p in parts))
        for database, (began, rows) in touched.items():
            self._map_lsn(txn, self.engine.database(database), lsns.commit, lsns.tran_begin, began, rows)

    def _map_lsn(self, txn: Any, db: Database, commit: int, tran_begin: int, began: dt.datetime, rows: int) -> None:
        tran_id = int(getattr(txn, "descriptor", 0) or 0).to_bytes(10, "big")
        began, ended = datetime_value(began), datetime_value(dt.datetime.now())
        if self.capture_lag(db) is not None:
            cdc_log.write_log_mapping(txn.cursor, db, commit, tran_begin, began, ended, tran_id)
            return
        table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
        assert table is not None, f"cdc.lsn_time_mapping missing in CDC-enabled database {db.name}"
        txn.cursor.execute(f"INSERT INTO {table.duck_name} VALUES (?, ?, ?, ?, ?)",
                           [lsn_bytes(commit), began, ended, tran_id, lsn_bytes(tran_begin)])  # fmt: skip
        cdc_log.record_synchronous_scan(self.scan_history(db), tran_begin, commit, rows)

    def after_rollback(self, txn: Any) -> None:
        take_pending(txn)

    def on_ddl(self, txn: Any, database: str, schema: str, table: str, ddl_text: str) -> None:
        cdc_ddl.on_ddl(self, txn, database, schema, table, ddl_text)

    def call_procedure(self, txn: Any, name: str, args: Any) -> StatementResult:
        return cdc_procs.call(self, txn, cdc_functions.short_name(name), args)

    def scalar_function(self, txn: Any, name: str, args: list[Any]) -> tuple[Any, SqlType]:
        return cdc_functions.scalar_function(self, txn, name, args)

    def table_function(self, txn: Any, name: str, args: list[Any]) -> tuple[list[ResultColumn], pa.Table]:
        return cdc_functions.table_function(self, txn, name, args)

    def max_lsn(self, cursor: Any, db: Database) -> bytes | None:
        return cdc_functions.max_lsn(cursor, db)

    def min_lsn(self, cursor: Any, db: Database, capture_instance: str) -> bytes:
        return cdc_functions.min_lsn(self, cursor, db, capture_instance)

    # -- capture lag (the double's control API) ---------------------------------------
    def set_capture_lag(self, lag_seconds: float | None, database: str | None = None) -> None:
        """Capture synchronously (None), ``lag_seconds`` after each commit, or only on ``capture`` (math.inf).

        ``database`` None sets the double-wide default for databases without a setting of their own.
        A database that stops lagging first captures everything still waiting, so LSN order holds.
        """
        lag = cdc_log.check_lag(lag_seconds)
        targets = [self.engine.database(database)] if database else list(self.engine.databases.values())
        with self.engine.commit_lock:
            for db in targets:
                explicit = database is not None
                if not explicit and self._key(db) in self._lags:
                    continue
                if self.capture_lag(db) is not None and lag is None and db.is_cdc_enabled:
                    cdc_log.capture_step(self, db, locked=True)
                if explicit:
                    self._lags[self._key(db)] = lag
            if database is None:
                self._default_lag = lag
        self._ensure_job_thread()

    def capture(self, database: str, up_to_lsn: bytes | None = None) -> dict[str, Any]:
        """One capture step now: move every committed transaction (or those up to ``up_to_lsn``)."""
        db = self._cdc_database(database)
        up_to = None if up_to_lsn is None else lsn_int(bytes(up_to_lsn))
        return cdc_log.capture_step(self, db, up_to=up_to).as_dict()

    def capture_status(self, database: str) -> dict[str, Any]:
        """The database's capture lag, its committed-but-not-captured transactions and both LSN ends."""
        db = self._cdc_database(database)
        with self.cursor(None) as cursor:
            pending, newest = cdc_log.pending_status(cursor, db)
            max_lsn = self.max_lsn(cursor, db)
        return {"lag_seconds": self.capture_lag(db), "pending_transactions": pending,
                "newest_commit_lsn": newest or max_lsn, "max_lsn": max_lsn}  # fmt: skip

    def fail_capture(self, database: str, times: int = 1, number: int = cdc_log.SCAN_FAILED[0]) -> None:
        """The next ``times`` capture steps of ``database`` fail (kept in sys.dm_cdc_errors); changes wait."""
        self._capture_faults[self._key(self.engine.database(database))] = [int(times), int(number)]

    def raise_injected_capture_fault(self, db: Database) -> None:
        fault = self._capture_faults.get(self._key(db))
        if not fault or fault[0] <= 0:
            return
        fault[0] -= 1
        text = cdc_log.SCAN_FAILED[1] if fault[1] == cdc_log.SCAN_FAILED[0] else "injected capture failure"
        raise SqlServerError(fault[1], text)

    # -- retention (the double's control API) -------------------------------------------
    def set_cleanup_job(self, database: str, retention_minutes: float | None = None, threshold: int | None = None,
                        interval_seconds: float | None = None) -> None:  # fmt: skip
        """Configure ``database``'s cleanup job; with ``interval_seconds`` it also runs on that timer."""
        settings = self.job_settings(self._cdc_database(database))
        if retention_minutes is not None:
            settings.retention_minutes = cdc_retention.check_retention(retention_minutes)
        if threshold is not None:
            settings.threshold = cdc_retention.check_threshold(threshold)
        settings.cleanup_interval = None if interval_seconds is None else float(interval_seconds)
        self._ensure_job_thread()

    def run_cleanup(self, database: str, retention_minutes: float | None = None) -> dict[str, Any]:
        """Run the cleanup job for ``database`` now (its retention, or ``retention_minutes``)."""
        db = self._cdc_database(database)
        settings = self.job_settings(db)
        retention = settings.retention_minutes if retention_minutes is None else cdc_retention.check_retention(
            retention_minutes)  # fmt: skip
        return cdc_retention.run_cleanup_job(self, db, retention, settings.threshold)

    def purge_changes(self, database: str, capture_instance: str | None, up_to_lsn: bytes) -> int:
        """Delete change rows with ``__$start_lsn <= up_to_lsn``; the min LSN becomes the next commit LSN.

        ``capture_instance`` None purges every capture instance of the database.
        Returns the number of change rows deleted.
        """
        db = self._cdc_database(database)
        every = list(self.instances(db).values())
        targets = every if capture_instance is None else [cdc_procs.require_instance(self, db, capture_instance)]
        with self.cursor(None) as cursor:
            return cdc_retention.purge_changes(cursor, db, targets, every, bytes(up_to_lsn))

    def close(self) -> None:
        """Stop the job thread (the engine is going away)."""
        with self._lock:
            thread, self._job_thread = self._job_thread, None
        if thread is not None:
            thread.stop()

    def _cdc_database(self, database: str) -> Database:
        db = self.engine.database(database)
        cdc_procs.require_cdc_db(db)
        return db

    def _jobs_needed(self) -> bool:
        lags = [self._default_lag, *self._lags.values()]
        return any(lag is not None and lag != cdc_log.MANUAL for lag in lags) or any(
            s.cleanup_interval is not None for s in self._jobs.values())  # fmt: skip

    def _ensure_job_thread(self) -> None:
        with self._lock:
            if self._jobs_needed() and self._job_thread is None:
                self._job_thread = JobThread(self)

    def keep_job_thread(self, thread: JobThread) -> bool:
        """Called by the job thread each tick: forget dropped databases; False when the thread should end."""
        with self._lock:
            live = {self._key(db) for db in list(self.engine.databases.values())}
            for settings in (self._lags, self._jobs, self._histories, self._capture_faults, self._instances):
                for key in [k for k in settings if k not in live]:
                    del settings[key]
            if self._job_thread is thread and not self._jobs_needed():
                self._job_thread = None
            return self._job_thread is thread
