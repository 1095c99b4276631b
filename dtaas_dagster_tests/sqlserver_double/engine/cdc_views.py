"""The CDC dynamic management views: ``sys.dm_cdc_log_scan_sessions`` and ``sys.dm_cdc_errors``.

Columns and types are those of the documentation pages of the same names.
Rows come from the current database's scan history (``cdc_log.ScanHistory``):
one row per recent log scan plus the aggregate row ``session_id = 0``, and one
row per failed scan. A lag monitor reads ``latency`` (seconds between the end of
the scan and the newest commit it captured), ``last_commit_cdc_time``,
``tran_count``, ``empty_scan_count`` and ``failed_sessions_count``. With
synchronous capture each committing CDC transaction is a scan of its own with
latency 0. LSNs are the DMVs' text form ``0000002a:00000130:0001``.
"""

from __future__ import annotations

from typing import Any

from ..engine_api import SqlType
from .catalog import Database
from .cdc_log import ScanHistory, ScanSession
from .cdc_lsn import lsn_dmv_text

_INT, _BIGINT, _DATETIME, _LSN = SqlType("int"), SqlType("bigint"), SqlType("datetime"), SqlType("nvarchar", 23)

SESSION_COLUMNS = [
    ("session_id", _INT), ("start_time", _DATETIME), ("end_time", _DATETIME), ("duration", _BIGINT),
    ("scan_phase", SqlType("nvarchar", 200)), ("error_count", _INT), ("start_lsn", _LSN), ("current_lsn", _LSN),
    ("end_lsn", _LSN), ("tran_count", _BIGINT), ("last_commit_lsn", _LSN), ("last_commit_time", _DATETIME),
    ("log_record_count", _BIGINT), ("schema_change_count", _INT), ("command_count", _BIGINT),
    ("first_begin_cdc_lsn", _LSN), ("last_commit_cdc_lsn", _LSN), ("last_commit_cdc_time", _DATETIME),
    ("latency", _INT), ("empty_scan_count", _INT), ("failed_sessions_count", _INT),
]  # fmt: skip
ERROR_COLUMNS = [
    ("session_id", _INT), ("phase_number", _INT), ("entry_time", _DATETIME), ("error_number", _INT),
    ("error_severity", _INT), ("error_state", _INT), ("error_message", SqlType("nvarchar", 1024)),
    ("start_lsn", _LSN), ("begin_lsn", _LSN), ("sequence_value", _LSN),
]  # fmt: skip


def _history(session: Any, db: Database) -> ScanHistory | None:
    cdc = session.engine.cdc
    if not db.is_cdc_enabled or not hasattr(cdc, "scan_history"):
        return None
    return cdc.scan_history(db)


def _session_row(s: ScanSession) -> tuple:
    commit_lsn = s.last_commit_cdc_lsn if s.last_commit_cdc_lsn is not None else s.end_lsn
    return (s.session_id, s.start_time, s.end_time, s.duration, "Done", s.error_count, lsn_dmv_text(s.start_lsn),
            lsn_dmv_text(s.end_lsn), lsn_dmv_text(s.end_lsn), s.tran_count, lsn_dmv_text(commit_lsn),
            s.last_commit_cdc_time or s.end_time, 2 * s.tran_count + s.command_count, 0, s.command_count,
            lsn_dmv_text(s.first_begin_cdc_lsn), lsn_dmv_text(s.last_commit_cdc_lsn), s.last_commit_cdc_time,
            s.latency, s.empty_scan_count, s.failed_sessions_count)  # fmt: skip


def _aggregate_row(h: ScanHistory, sessions: list[ScanSession]) -> tuple:
    last = sessions[-1]
    cdc_sessions = [s for s in sessions if s.tran_count]
    newest = cdc_sessions[-1] if cdc_sessions else None
    return (0, h.first_start, last.end_time, h.total_duration, "Aggregate", h.total_errors,
            lsn_dmv_text(last.start_lsn), lsn_dmv_text(0), lsn_dmv_text(last.end_lsn), h.total_trans,
            lsn_dmv_text(last.end_lsn), last.end_time, 2 * h.total_trans + h.total_commands, 0, h.total_commands,
            lsn_dmv_text(cdc_sessions[0].first_begin_cdc_lsn) if cdc_sessions else None,
            lsn_dmv_text(newest.last_commit_cdc_lsn) if newest else None,
            newest.last_commit_cdc_time if newest else None, h.last_latency, h.empty_scans,
            h.failed_sessions)  # fmt: skip


def log_scan_sessions(session: Any, db: Database) -> tuple[list, list]:
    history = _history(session, db)
    sessions = list(history.sessions) if history is not None else []  # a snapshot: the job thread appends
    if history is None or not sessions:
        return SESSION_COLUMNS, []
    return SESSION_COLUMNS, [_aggregate_row(history, sessions), *(_session_row(s) for s in sessions)]


def cdc_errors(session: Any, db: Database) -> tuple[list, list]:
    history = _history(session, db)
    if history is None:
        return ERROR_COLUMNS, []
    rows = [(e.session_id, 7, e.entry_time, e.number, e.severity, e.state, e.message, lsn_dmv_text(e.start_lsn),
             lsn_dmv_text(e.start_lsn), lsn_dmv_text(e.start_lsn)) for e in list(history.errors)]  # fmt: skip
    return ERROR_COLUMNS, rows


CDC_VIEWS: dict[str, Any] = {
    "sys.dm_cdc_log_scan_sessions": log_scan_sessions,
    "sys.dm_cdc_errors": cdc_errors,
}
