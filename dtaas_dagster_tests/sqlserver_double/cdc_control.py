"""The double's CDC controls over the control channel: capture lag, capture steps, cleanup, faults.

Both ends live here so ``process.py`` stays about processes: :func:`cdc_handlers`
gives the child's ``ControlService`` its CDC methods (calling the engine's
``CdcManager``), and :class:`CdcControls` gives ``DoubleControl`` and
``DoubleProcess`` the same methods as typed calls.

Capture lag (see ``engine/cdc_log.py``)::

    double.set_capture_lag(2.0)                      # every database: changes appear 2 s after commit
    double.set_capture_lag(MANUAL_CAPTURE, "shop")   # shop: only double.capture("shop") moves them
    double.capture("shop")                           # -> {"transactions": 3, "max_lsn": b"..."}
    double.capture_status("shop")                    # lag, pending transactions, newest commit LSN, max LSN
    double.set_capture_lag(None, "shop")             # synchronous again (captures what waits first)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MANUAL_CAPTURE = math.inf  # a capture lag meaning "only capture() moves changes"


def cdc_handlers(engine: Any) -> dict[str, Callable[..., Any]]:
    """The child side: control-channel method name -> the engine's CDC manager call."""
    cdc = engine.cdc
    return {
        "purge_changes": lambda database, capture_instance, up_to_lsn: int(
            cdc.purge_changes(database, capture_instance, up_to_lsn)),
        "set_capture_lag": cdc.set_capture_lag,
        "capture": cdc.capture,
        "capture_status": cdc.capture_status,
        "fail_capture": cdc.fail_capture,
        "run_cleanup": cdc.run_cleanup,
        "set_cleanup_job": cdc.set_cleanup_job,
    }  # fmt: skip


class CdcControls:
    """The parent side: typed CDC calls over ``self.call(method, *args, **kwargs)``."""

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def purge_changes(self, database: str, capture_instance: str | None, up_to_lsn: bytes) -> int:
        """Delete change rows with ``__$start_lsn <= up_to_lsn`` (every capture instance when None).

        Each purged instance's min LSN becomes the next commit LSN in ``cdc.lsn_time_mapping``
        (error 22957 when there is none: SQL Server's cleanup always keeps the newest transaction);
        mapping entries below every instance's min LSN go too, as after SQL Server's cleanup job.
        """
        return int(self.call("purge_changes", database, capture_instance, bytes(up_to_lsn)))

    def set_capture_lag(self, lag_seconds: float | None, database: str | None = None) -> None:
        """Capture synchronously (None, the default), ``lag_seconds`` after each commit, or manually (math.inf).

        ``database`` None sets the double-wide default (databases with their own setting keep it).
        """
        self.call("set_capture_lag", lag_seconds, database)

    def capture(self, database: str, up_to_lsn: bytes | None = None) -> dict[str, Any]:
        """A capture step now: move committed changes (all, or up to ``up_to_lsn``) into the change tables."""
        return dict(self.call("capture", database, None if up_to_lsn is None else bytes(up_to_lsn)))

    def capture_status(self, database: str) -> dict[str, Any]:
        """``lag_seconds``, ``pending_transactions``, ``newest_commit_lsn`` (captured or not) and ``max_lsn``."""
        return dict(self.call("capture_status", database))

    def fail_capture(self, database: str, times: int = 1, number: int = 22859) -> None:
        """The next ``times`` capture steps of ``database`` fail (shown in sys.dm_cdc_errors); changes wait."""
        self.call("fail_capture", database, times, number)

    def run_cleanup(self, database: str, retention_minutes: float | None = None) -> dict[str, Any]:
        """Run the cleanup job now; returns ``low_water_mark``, ``deleted_rows``, ``deleted_mappings``.

        ``retention_minutes`` (fractions allowed, for tests) overrides the job's retention for this run.
        """
        return dict(self.call("run_cleanup", database, retention_minutes))

    def set_cleanup_job(self, database: str, retention_minutes: float | None = None, threshold: int | None = None,
                        interval_seconds: float | None = None) -> None:  # fmt: skip
        """Set the cleanup job's retention/threshold; with ``interval_seconds`` it runs on that timer."""
        self.call("set_cleanup_job", database, retention_minutes, threshold, interval_seconds)
