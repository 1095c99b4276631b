"""When committed changes reach the change tables: synchronously, or lagging like SQL Server's capture job.

SQL Server's capture job scans the transaction log every few seconds and copies
the changes of committed transactions into the change tables, in one
transaction of its own per scan. Until it has, neither the change rows nor the
transaction's ``cdc.lsn_time_mapping`` entry exist, so
``sys.fn_cdc_get_max_lsn()`` lags the newest committed transaction ("About
Change Data Capture": "there is a built in latency between the time that a
change is committed to a source table and the time that the change appears
within its associated change table").

The double's capture lag is set per database (a double-wide default applies to
databases without their own setting):

- ``None`` (the default): synchronous, the committing transaction writes its
  change rows and mapping entry itself;
- ``N`` seconds: the committing transaction writes them to the double's log
  (``__cdc_log``, see ``cdc_schema``) and the capture job thread (``cdc_jobs``)
  moves each transaction once it is N seconds old;
- ``math.inf`` (:data:`MANUAL`): only an explicit capture step moves them.

A capture step ("log scan") runs in its own DuckDB transaction while holding
the engine's commit lock, so every LSN allocated before it belongs to a
committed transaction it can see, and it moves transactions strictly in LSN
order. A scan that finds no CDC transaction although the log moved on writes
an idle entry into ``cdc.lsn_time_mapping`` (``tran_id`` all zeroes): the
mapping table "records the completion of LSN processing in periods of low or no
change activity" (cdc.lsn_time_mapping), so the max LSN moves while tracked
tables are quiet. Each scan is kept for ``sys.dm_cdc_log_scan_sessions`` and
each failure for ``sys.dm_cdc_errors`` (``cdc_views``).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from ..engine_api import SqlServerError
from .catalog import Database
from .cdc_lsn import lsn_bytes, lsn_int
from .cdc_schema import CDC_SCHEMA, datetime_value, log_mapping_name, quote

if TYPE_CHECKING:
    from .cdc import CdcManager

MANUAL = math.inf  # capture lag meaning "only an explicit capture step moves changes"
IDLE_TRAN_ID = bytes(10)
KEPT_SESSIONS = 32  # sys.dm_cdc_errors documents "the previous 32 sessions"; the double keeps as many scans
MAPPING_COLUMNS = ["start_lsn", "tran_begin_time", "tran_end_time", "tran_id", "tran_begin_lsn"]
SCAN_FAILED = (22859, "Log Scan process failed in processing log records. Refer to previous errors in the current "
               "session to identify the cause and correct any associated problems.")  # fmt: skip


def check_lag(lag_seconds: float | None) -> float | None:
    """A valid capture lag: None (synchronous), seconds >= 0, or :data:`MANUAL`."""
    if lag_seconds is None:
        return None
    lag = float(lag_seconds)
    if math.isnan(lag) or lag < 0:
        raise ValueError(f"capture lag {lag_seconds!r} must be None (synchronous), seconds >= 0, or math.inf (manual)")
    return lag


@dataclass
class ScanSession:
    """One log scan, as ``sys.dm_cdc_log_scan_sessions`` shows it (LSNs as integers, times naive local)."""

    session_id: int
    start_time: dt.datetime
    end_time: dt.datetime
    start_lsn: int | None
    end_lsn: int | None
    tran_count: int = 0
    command_count: int = 0
    first_begin_cdc_lsn: int | None = None
    last_commit_cdc_lsn: int | None = None
    last_commit_cdc_time: dt.datetime | None = None
    error_count: int = 0
    empty_scan_count: int = 0
    failed_sessions_count: int = 0

    @property
    def duration(self) -> int:
        """Seconds; 0 for a scan without CDC transactions, as documented."""
        return int((self.end_time - self.start_time).total_seconds()) if self.tran_count else 0

    @property
    def latency(self) -> int:
        """Seconds between the scan's end and the newest commit it captured."""
        if self.last_commit_cdc_time is None:
            return 0
        return max(0, round((self.end_time - self.last_commit_cdc_time).total_seconds()))


@dataclass
class CaptureError:
    """One row of ``sys.dm_cdc_errors``."""

    session_id: int
    entry_time: dt.datetime
    number: int
    severity: int
    state: int
    message: str
    start_lsn: int | None


@dataclass
class ScanHistory:
    """A database's log scans since the double started: the last ones, plus running totals."""

    sessions: deque[ScanSession] = field(default_factory=lambda: deque(maxlen=KEPT_SESSIONS))
    errors: deque[CaptureError] = field(default_factory=lambda: deque(maxlen=KEPT_SESSIONS))
    next_id: int = 1
    empty_scans: int = 0
    failed_sessions: int = 0
    total_errors: int = 0
    total_trans: int = 0
    total_commands: int = 0
    total_duration: int = 0
    last_latency: int = 0
    first_start: dt.datetime | None = None

    def record(self, session: ScanSession) -> ScanSession:
        """Keep a finished scan. Consecutive empty scans share one row whose empty_scan_count counts them
        ("Administer and Monitor Change Data Capture": ten scans with changes then five empty ones give 11 rows)."""
        empty = session.tran_count == 0 and session.error_count == 0
        self.empty_scans = self.empty_scans + 1 if empty else 0
        last = self.sessions[-1] if self.sessions else None
        if empty and last is not None and last.empty_scan_count and not last.error_count:
            last.empty_scan_count = self.empty_scans
            last.end_time, last.end_lsn = session.end_time, session.end_lsn or last.end_lsn
            return last
        session.session_id, self.next_id = self.next_id, self.next_id + 1
        session.empty_scan_count = self.empty_scans
        session.failed_sessions_count = self.failed_sessions
        self.total_trans += session.tran_count
        self.total_commands += session.command_count
        self.total_duration += session.duration
        self.last_latency = session.latency or self.last_latency
        self.first_start = self.first_start or session.start_time
        self.sessions.append(session)
        return session

    def new_session(self, start: dt.datetime, start_lsn: int | None) -> ScanSession:
        return ScanSession(0, start, start, start_lsn, None)  # numbered when recorded

    def fail(self, session: ScanSession, error: SqlServerError) -> None:
        self.failed_sessions += 1
        self.total_errors += 1
        session.error_count = 1
        self.record(session)
        self.errors.append(CaptureError(session.session_id, dt.datetime.now(), error.number, error.severity,
                                        error.state, error.message, session.start_lsn))  # fmt: skip


@dataclass
class CaptureResult:
    transactions: int
    max_lsn: bytes | None

    def as_dict(self) -> dict[str, Any]:
        return {"transactions": self.transactions, "max_lsn": self.max_lsn}


def record_synchronous_scan(history: ScanHistory, tran_begin: int, commit: int, commands: int) -> None:
    """A synchronous commit is a scan of its own: zero latency by construction."""
    now = dt.datetime.now()
    session = history.new_session(now, tran_begin)
    session.end_time, session.end_lsn = now, commit
    session.tran_count, session.command_count = 1, commands
    session.first_begin_cdc_lsn, session.last_commit_cdc_lsn, session.last_commit_cdc_time = tran_begin, commit, now
    history.record(session)


def write_log_mapping(
    cursor: Any, db: Database, commit: int, tran_begin: int, began: dt.datetime, ended: dt.datetime, tran_id: bytes
) -> None:
    """The committing transaction's mapping entry, waiting in the log for a capture step."""
    cursor.execute(
        f"INSERT INTO {log_mapping_name(db)} VALUES (?, ?, ?, ?, ?, ?)",
        [lsn_bytes(commit), began, ended, tran_id, lsn_bytes(tran_begin), time.time()],
    )


def capture_step(
    manager: CdcManager,
    db: Database,
    *,
    up_to: int | None = None,
    committed_before: float | None = None,
    locked: bool = False,
) -> CaptureResult:
    """One log scan of ``db``: move committed transactions (all, up to an LSN, or those old enough).

    ``locked`` says the caller already holds the engine's commit lock.
    """
    if locked:
        return _scan(manager, db, up_to, committed_before)
    with manager.engine.commit_lock:
        return _scan(manager, db, up_to, committed_before)


def _scan(manager: CdcManager, db: Database, up_to: int | None, committed_before: float | None) -> CaptureResult:
    history = manager.scan_history(db)
    session = history.new_session(dt.datetime.now(), None)
    cursor = manager.engine.con.cursor()
    cursor.execute("BEGIN TRANSACTION")
    try:
        manager.raise_injected_capture_fault(db)
        moved = _move(cursor, manager, db, session, up_to, committed_before)
        max_lsn = manager.max_lsn(cursor, db)
        cursor.execute("COMMIT")
    except Exception as exc:
        try:
            cursor.execute("ROLLBACK")
        except duckdb.Error:
            pass  # e.g. the database was dropped under the scan; the error below says what failed
        error = exc if isinstance(exc, SqlServerError) else SqlServerError(SCAN_FAILED[0], f"{SCAN_FAILED[1]} ({exc})")
        session.end_time = dt.datetime.now()
        history.fail(session, error)
        raise error from exc
    finally:
        cursor.close()
    session.end_time = dt.datetime.now()
    history.record(session)
    return CaptureResult(moved, max_lsn)


def _move(
    cursor: Any,
    manager: CdcManager,
    db: Database,
    session: ScanSession,
    up_to: int | None,
    committed_before: float | None,
) -> int:
    log_mapping = log_mapping_name(db)
    conditions, params = ["TRUE"], []
    if up_to is not None:
        conditions.append("start_lsn <= ?")
        params.append(lsn_bytes(up_to))
    if committed_before is not None:
        conditions.append("commit_epoch <= ?")
        params.append(committed_before)
    row = cursor.execute(
        f"SELECT max(start_lsn), count(*), min(tran_begin_lsn), max(tran_end_time) FROM {log_mapping} "
        f"WHERE {' AND '.join(conditions)}", params,
    ).fetchone()  # fmt: skip
    if row[0] is None:
        _write_idle_entry(cursor, manager, db, session)
        return 0
    high = bytes(row[0])
    commands = 0
    for instance in list(manager.instances(db).values()):
        names = ", ".join(quote(c.name) for c in instance.change_table.columns)
        moved = cursor.execute(
            f"INSERT INTO {instance.change_table.duck_name} ({names}) SELECT {names} FROM {instance.log_duck_name} "
            'WHERE "__$start_lsn" <= ?', [high],
        ).fetchone()  # fmt: skip
        commands += int(moved[0]) if moved else 0
        cursor.execute(f'DELETE FROM {instance.log_duck_name} WHERE "__$start_lsn" <= ?', [high])
    mapping = _mapping(db)
    columns = ", ".join(MAPPING_COLUMNS)
    cursor.execute(
        f"INSERT INTO {mapping} ({columns}) SELECT {columns} FROM {log_mapping} WHERE start_lsn <= ?", [high]
    )
    cursor.execute(f"DELETE FROM {log_mapping} WHERE start_lsn <= ?", [high])
    session.start_lsn = lsn_int(row[2]) if row[2] is not None else lsn_int(high)
    session.end_lsn = session.last_commit_cdc_lsn = lsn_int(high)
    session.first_begin_cdc_lsn = session.start_lsn
    session.tran_count, session.command_count = int(row[1]), commands
    session.last_commit_cdc_time = row[3]
    return int(row[1])


def _write_idle_entry(cursor: Any, manager: CdcManager, db: Database, session: ScanSession) -> None:
    """A mapping entry for a scan that found the log moved on but no CDC transaction to capture."""
    if not manager.instances(db):
        return
    pending = cursor.execute(f"SELECT count(*) FROM {log_mapping_name(db)}").fetchone()[0]
    newest = manager.last_lsn()
    current = manager.max_lsn(cursor, db)
    if pending or current is None or newest <= lsn_int(current):
        return
    now = dt.datetime.now()
    cursor.execute(f"INSERT INTO {_mapping(db)} ({', '.join(MAPPING_COLUMNS)}) VALUES (?, ?, ?, ?, NULL)",
                   [lsn_bytes(newest), datetime_value(now), datetime_value(now), IDLE_TRAN_ID])  # fmt: skip
    session.start_lsn, session.end_lsn = lsn_int(current), newest


def _mapping(db: Database) -> str:
    table = db.find_table(CDC_SCHEMA, "lsn_time_mapping")
    assert table is not None, f"cdc.lsn_time_mapping missing in CDC-enabled database {db.name}"
    return table.duck_name


def pending_status(cursor: Any, db: Database) -> tuple[int, bytes | None]:
    """How many committed transactions wait in ``db``'s log, and the newest one's commit LSN."""
    row = cursor.execute(f"SELECT count(*), max(start_lsn) FROM {log_mapping_name(db)}").fetchone()
    return int(row[0]), (bytes(row[1]) if row[1] is not None else None)
