"""CDC lag and retention headroom of a table: defined here once, for ``dtaas health`` and the asset checks.

Definitions (docs/operations.md, "Health and checks"):

- **loaded through**: the newest LSN up to which every change of the table is in
  the destination (or there was none). It is the largest of: the ``to_lsn`` of
  its change windows (``dtaas/cdc_to_lsn``), the ``start_lsn`` of its snapshots
  (``dtaas/cdc_start_lsn``; CDC continues after it), and the position the
  sensor ``<task>_cdc`` reports when it moves an idle table past a range without
  changes (an asset observation ``dtaas/cdc_loaded_through``, at most every
  ``cdc.position_report_seconds``). Only the newest events are read.
- **oldest waiting change**: the first change SQL Server has captured after
  that LSN (up to ``sys.fn_cdc_get_max_lsn()``), in any of the table's capture
  instances.
- **lag** = the server's time now minus the commit time of the oldest waiting
  change; **0 when no change is waiting**. So an idle table never lags, however
  old its last window, and a busy table lags from the first change it has not
  loaded, not from the last one it has. Changes SQL Server has not captured yet
  (the capture job's own delay) are not seen.
- **retention headroom** = the cleanup job's retention minus the age of the
  oldest waiting change (= retention - lag): how long until the cleanup job
  may purge a change not yet loaded. The whole retention when nothing waits;
  unknown when the retention cannot be read. The cleanup job measures age
  from the newest captured commit rather than from now, so this is the
  conservative figure.
- **retention gap**: the LSN after "loaded through" is older than the capture
  instance's min LSN: changes it needed may have been purged (the sensor
  raises the same gap, docs/cdc.md). Lag and headroom then fail.

Both measures are compared with the task's thresholds (``cdc.lag_warn_seconds``,
``cdc.lag_fail_seconds``, ``cdc.headroom_warn_percent``,
``cdc.headroom_fail_percent``): ``ok``, ``warn`` or ``fail``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from dtaas_dagster.checks import metadata_value
from dtaas_dagster.config import CdcConfig
from dtaas_dagster.sqlserver.cdc import CaptureInstance, instances_of
from dtaas_dagster.sqlserver.cdc_health import LagProbe, cleanup_retention_minutes, lag_probe
from dtaas_dagster.sqlserver.errors import SqlServerError
from dtaas_dagster.sqlserver.lsn import ZERO, Lsn
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.table_load import TableSpec

OK, WARN, FAIL = "ok", "warn", "fail"
POSITION_KEY = "dtaas/cdc_loaded_through"
_RECENT_EVENTS = 20  # newest materializations looked at: windows re-executed out of order stay covered
_RANK = {OK: 0, WARN: 1, FAIL: 2}


def worst(*statuses: str) -> str:
    return max(statuses, key=lambda s: _RANK[s]) if statuses else OK


@dataclass(frozen=True)
class Retention:
    """The cleanup job's retention: minutes, or None with why (no job: nothing is purged; or unreadable)."""

    minutes: int | None
    problem: str = ""


@dataclass(frozen=True)
class TableLag:
    """One CDC table's lag and retention headroom, with their status against the thresholds."""

    table: str
    asset_key: str
    lag_status: str
    headroom_status: str
    reason: str
    loaded_through: str | None = None
    oldest_waiting_lsn: str | None = None
    oldest_waiting_committed_at: str | None = None
    lag_seconds: float | None = None
    retention_minutes: int | None = None
    headroom_seconds: float | None = None
    headroom_percent: float | None = None

    @property
    def status(self) -> str:
        return worst(self.lag_status, self.headroom_status)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def _lsn_of(metadata: Any, key: str) -> Lsn | None:
    value = metadata.get(key)
    text = None if value is None else str(metadata_value(value))
    try:
        return Lsn.from_hex(text) if text else None
    except ValueError:
        return None


def loaded_through(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> Lsn | None:
    """The newest LSN the table is loaded through (see the module docstring); None: CDC has not started."""
    found: list[Lsn] = []
    for record in instance.fetch_materializations(asset_key, limit=_RECENT_EVENTS).records:
        event = record.asset_materialization
        if event is None:
            continue
        kind = event.metadata.get("dtaas/kind")
        key = "dtaas/cdc_to_lsn" if kind is not None and kind.value == "cdc" else "dtaas/cdc_start_lsn"
        lsn = _lsn_of(event.metadata, key)
        if lsn is not None:
            found.append(lsn)
    # the newest position observation (other observations, e.g. a permanent load failure, may be newer)
    for observed in instance.fetch_observations(asset_key, limit=_RECENT_EVENTS).records:
        observation = observed.asset_observation
        lsn = None if observation is None else _lsn_of(observation.metadata, POSITION_KEY)
        if lsn is not None:
            found.append(lsn)
            break
    return max(found) if found else None


def _level(value: float, warn: float, fail: float, *, above: bool) -> str:
    """ok / warn / fail: ``value`` past ``warn`` then ``fail`` (above them, or below them)."""
    if (value > fail) if above else (value < fail):
        return FAIL
    if (value > warn) if above else (value < warn):
        return WARN
    return OK


def _reading_instance(instances: Sequence[CaptureInstance], next_lsn: Lsn) -> CaptureInstance:
    """The instance the sensor reads ``next_lsn`` from: the newest started at or before it, else the oldest."""
    started = [i for i in instances if i.start_lsn <= next_lsn]
    return started[-1] if started else instances[0]


def assess(
    spec: TableSpec,
    *,
    task_mode: str,
    position: Lsn | None,
    instances: Sequence[CaptureInstance],
    probe: LagProbe,
    retention: Retention,
    cdc: CdcConfig,
) -> TableLag:
    """One table's lag and headroom from its position and the probe (pure; see the module docstring)."""
    base: dict[str, Any] = {"table": spec.qualified, "asset_key": spec.asset_key.to_user_string()}
    if not instances:
        return TableLag(
            **base,
            lag_status=FAIL,
            headroom_status=FAIL,
            reason="not captured by CDC (no capture instance); see docs/cdc.md to enable it",
        )
    if position is None:
        why = (
            "no snapshot loaded yet; the sensor requests one"
            if task_mode == "full_load_and_cdc"
            else "CDC has not started for this table yet"
        )
        return TableLag(
            **base, lag_status=WARN, headroom_status=WARN, reason=f"{why}: is the sensor {spec.task}_cdc running?"
        )
    base.update(loaded_through=position.hex, retention_minutes=retention.minutes)
    next_lsn = position.increment()
    reading = _reading_instance(instances, next_lsn)
    probed = probe.instances.get(reading.name)
    if next_lsn <= probe.max_lsn and probed is not None and next_lsn < probed.min_lsn:
        return TableLag(
            **base,
            lag_status=FAIL,
            headroom_status=FAIL,
            reason=(
                f"retention gap: loaded through {position.hex}, but capture instance {reading.name} now starts at "
                f"{probed.min_lsn.hex}; changes in between may have been purged. Take a new snapshot "
                f"({spec.task}_full_load) or set cdc.on_retention_gap: resnapshot (docs/cdc.md)"
            ),
        )
    waiting = [
        w
        for i in instances
        if (w := probe.instances.get(i.name)) is not None and w.first_lsn is not None and w.first_lsn >= next_lsn
    ]
    oldest = min(waiting, key=lambda w: w.first_lsn or ZERO) if waiting else None
    if oldest is None:
        lag = 0.0
        text = "no change waiting"
    elif oldest.committed_at is None:
        return TableLag(
            **base,
            lag_status=WARN,
            headroom_status=WARN,
            oldest_waiting_lsn=oldest.first_lsn.hex if oldest.first_lsn else None,
            reason="a change is waiting but its commit time is not in cdc.lsn_time_mapping",
        )
    else:
        lag = max(0.0, (probe.now - oldest.committed_at).total_seconds())
        text = f"oldest change not loaded committed {lag:,.0f}s ago"
        base.update(
            oldest_waiting_lsn=oldest.first_lsn.hex if oldest.first_lsn else None,
            oldest_waiting_committed_at=oldest.committed_at.isoformat(),
        )
    lag_status = _level(lag, cdc.lag_warn_seconds, cdc.lag_fail_seconds, above=True)
    if retention.minutes is None:
        headroom_status = WARN if retention.problem else OK
        return TableLag(
            **base,
            lag_status=lag_status,
            headroom_status=headroom_status,
            lag_seconds=round(lag, 3),
            reason=f"{text}; {retention.problem or 'no cleanup job: changes are not purged'}",
        )
    headroom = retention.minutes * 60 - lag
    percent = 100.0 * headroom / (retention.minutes * 60) if retention.minutes else 0.0
    headroom_status = _level(percent, cdc.headroom_warn_percent, cdc.headroom_fail_percent, above=False)
    return TableLag(
        **base,
        lag_status=lag_status,
        headroom_status=headroom_status,
        lag_seconds=round(lag, 3),
        headroom_seconds=round(headroom, 3),
        headroom_percent=round(percent, 2),
        reason=f"{text}; {headroom:,.0f}s ({percent:.0f}%) of the {retention.minutes}-minute retention "
        "left before the cleanup job may purge it",
    )


def read_retention(sqlserver: SqlServerResource) -> Retention:
    try:
        return Retention(cleanup_retention_minutes(sqlserver))
    except SqlServerError as exc:
        return Retention(None, f"retention unknown: {exc}")


def measure(
    *,
    instance: dg.DagsterInstance,
    sqlserver: SqlServerResource,
    specs: Sequence[TableSpec],
    task_mode: str,
    cdc: CdcConfig,
) -> list[TableLag]:
    """Lag and headroom of every table of one CDC task: the instance's events, then SQL Server (two batches)."""
    capture = sqlserver.capture_instances()
    positions = {spec.asset_key: loaded_through(instance, spec.asset_key) for spec in specs}
    froms: dict[str, Lsn] = {}
    for spec in specs:
        position = positions[spec.asset_key]
        for ci in instances_of(capture, spec.schema, spec.table):
            start = position.increment() if position is not None else ZERO
            froms[ci.name] = min(froms.get(ci.name, start), start)
    probe = lag_probe(sqlserver, froms)
    retention = read_retention(sqlserver)
    return [
        assess(
            spec,
            task_mode=task_mode,
            position=positions[spec.asset_key],
            instances=instances_of(capture, spec.schema, spec.table),
            probe=probe,
            retention=retention,
            cdc=cdc,
        )
        for spec in specs
    ]
