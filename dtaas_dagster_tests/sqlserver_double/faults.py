"""Fault injection for the SQL Server double, reached as ``server.faults``.

Tests arm faults, run client code, and assert how it copes:

* ``drop_after_rows(n, matching=None)``: close the TCP connection abruptly once
  ``n`` rows of a result have been sent (optionally only for statements whose
  SQL matches a regex). The client sees a communication-link failure
  (SQLSTATE 08S01 with Driver 18), as after a network drop.
* ``add_latency(seconds)``: sleep before answering every request.
* ``fail_statement(pattern, times=1, number=1205, ...)``: the next ``times``
  requests whose SQL matches ``pattern`` fail with a SQL Server error instead of
  running. The default is SQL Server's deadlock victim error 1205 (severity 13),
  the classic transient error retry policies must handle; use 40613/40501
  (Azure "database not available"/"service busy") or 4060 (cannot open
  database) for other cases. 1205 aborts the batch, as on SQL Server.
* ``refuse_logins(seconds=None, attempts=None, close_socket=False)``: logins
  fail with 18456 (or, with ``close_socket``, the socket is closed right after
  LOGIN7 with no answer) for a period or a number of attempts.

All methods are thread-safe; ``clear()`` disarms everything. Matching is done
on the whole SQL text of a request (a batch, or the statement of an RPC).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from .engine_api import SqlServerError

DEADLOCK_MESSAGE = (
    "Transaction (Process ID {spid}) was deadlocked on lock resources with another process and has been "
    "chosen as the deadlock victim. Rerun the transaction."
)


@dataclass
class _StatementFault:
    pattern: re.Pattern[str]
    remaining: int
    number: int
    message: str
    severity: int
    state: int
    aborts_batch: bool


@dataclass
class _DropFault:
    rows: int
    pattern: re.Pattern[str] | None
    remaining: int


class Faults:
    """The armed faults of one DoubleServer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._latency = 0.0
            self._statement_faults: list[_StatementFault] = []
            self._drops: list[_DropFault] = []
            self._refuse_until = 0.0
            self._refuse_attempts = 0
            self._refuse_close = False

    # --- arming -------------------------------------------------------------
    def add_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = seconds

    def fail_statement(
        self,
        pattern: str,
        *,
        times: int = 1,
        number: int = 1205,
        message: str | None = None,
        severity: int | None = None,
        state: int = 51,
        aborts_batch: bool | None = None,
    ) -> None:
        """The next ``times`` requests whose SQL matches ``pattern`` (re.search, case-insensitive) fail."""
        deadlock = number == 1205
        with self._lock:
            self._statement_faults.append(
                _StatementFault(
                    re.compile(pattern, re.IGNORECASE | re.DOTALL),
                    times,
                    number,
                    message or (DEADLOCK_MESSAGE if deadlock else f"Injected error {number}"),
                    severity if severity is not None else (13 if deadlock else 16),
                    state,
                    deadlock if aborts_batch is None else aborts_batch,
                )
            )

    def drop_after_rows(self, rows: int, *, matching: str | None = None, times: int = 1) -> None:
        with self._lock:
            pattern = re.compile(matching, re.IGNORECASE | re.DOTALL) if matching else None
            self._drops.append(_DropFault(rows, pattern, times))

    def refuse_logins(
        self, *, seconds: float | None = None, attempts: int | None = None, close_socket: bool = False
    ) -> None:
        if seconds is None and attempts is None:
            raise ValueError("refuse_logins needs seconds=... or attempts=...")
        with self._lock:
            self._refuse_until = time.monotonic() + seconds if seconds is not None else 0.0
            self._refuse_attempts = attempts or 0
            self._refuse_close = close_socket

    # --- hooks the server calls -------------------------------------------
    def latency(self) -> float:
        with self._lock:
            return self._latency

    def statement_error(self, sql: str, spid: int) -> SqlServerError | None:
        with self._lock:
            for fault in self._statement_faults:
                if fault.remaining > 0 and fault.pattern.search(sql):
                    fault.remaining -= 1
                    return SqlServerError(
                        fault.number,
                        fault.message.format(spid=spid),
                        severity=fault.severity,
                        state=fault.state,
                        aborts_batch=fault.aborts_batch,
                    )
        return None

    def row_limit(self, sql: str) -> int | None:
        """Rows to send before dropping the connection, for this statement (consumes the fault)."""
        with self._lock:
            for fault in self._drops:
                if fault.remaining > 0 and (fault.pattern is None or fault.pattern.search(sql)):
                    fault.remaining -= 1
                    return fault.rows
        return None

    def login_refusal(self) -> str | None:
        """None to let the login proceed, else 'error' (18456) or 'close'."""
        with self._lock:
            refuse = False
            if self._refuse_attempts > 0:
                self._refuse_attempts -= 1
                refuse = True
            elif time.monotonic() < self._refuse_until:
                refuse = True
            if not refuse:
                return None
            return "close" if self._refuse_close else "error"
