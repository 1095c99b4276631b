"""The double's stand-ins for SQL Server Agent's CDC jobs: capture (when it lags) and cleanup (on a timer).

SQL Server creates a capture job and a cleanup job per CDC-enabled database
(``msdb.dbo.cdc_jobs``, ``sys.sp_cdc_help_jobs``). The double keeps each
database's job settings here and runs both jobs from one daemon thread that
exists only while some database needs it (a capture lag that is finite and
not zero-cost to wait for, or a cleanup interval): by default nothing runs in
the background and capture is synchronous.

- capture: every :data:`TICK_SECONDS`, each database whose capture lag is a
  finite number of seconds gets a log scan that moves the transactions
  committed at least that long ago (``cdc_log.capture_step``);
- cleanup: when a database has a cleanup interval, the cleanup job
  (``cdc_retention.run_cleanup_job``) runs that often with the database's
  retention and threshold. SQL Server's job runs daily at 02:00; tests want
  seconds. It also runs on demand (``CdcManager.run_cleanup``).

Failures of a background scan are kept for ``sys.dm_cdc_errors`` and retried on
the next tick, as the capture job retries; they never stop the thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine_api import SqlServerError
from .cdc_retention import DEFAULT_RETENTION_MINUTES, DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from .catalog import Database
    from .cdc import CdcManager

log = logging.getLogger(__name__)
TICK_SECONDS = 0.05


@dataclass
class JobSettings:
    """A database's cleanup job settings (``sys.sp_cdc_change_job @job_type = N'cleanup'``)."""

    retention_minutes: float = DEFAULT_RETENTION_MINUTES
    threshold: int = DEFAULT_THRESHOLD
    cleanup_interval: float | None = None  # seconds between background cleanup runs; None = on demand only
    last_cleanup: float = 0.0  # time.monotonic() of the last background run
    created: bool = False  # SQL Server creates the jobs with the database's first capture instance


class JobThread:
    """The background thread running capture scans and cleanup runs."""

    def __init__(self, manager: CdcManager) -> None:
        self.manager = manager
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="double-cdc-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS) and self.manager.keep_job_thread(self):
            for db in list(self.manager.engine.databases.values()):
                if self._stop.is_set():
                    return
                try:
                    self._tick(db)
                except SqlServerError:
                    pass  # kept in sys.dm_cdc_errors by the scan; the next tick retries
                except Exception:  # noqa: BLE001 - a dropped database mid-scan; never kill the job thread
                    log.debug("CDC job tick failed for database %s", db.name, exc_info=True)

    def _tick(self, db: Database) -> None:
        from .cdc_log import capture_step

        manager = self.manager
        if not db.is_cdc_enabled or not manager.instances(db):
            return
        lag = manager.capture_lag(db)
        if lag is not None and not math.isinf(lag):
            capture_step(manager, db, committed_before=time.time() - lag)
        settings = manager.job_settings(db)
        interval = settings.cleanup_interval
        if interval is not None and time.monotonic() - settings.last_cleanup >= interval:
            settings.last_cleanup = time.monotonic()
            manager.run_cleanup(db.name)
