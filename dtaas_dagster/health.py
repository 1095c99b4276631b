"""``dtaas health``: is the running system healthy right now? For orchestrators (exit status, ``--json``) and people.

``dtaas check`` is the preflight (will a load work: tables, columns, plans).
``dtaas health`` answers what a liveness or readiness probe, a monitor or an
operator on call asks, with one probe per item:

- ``daemon``: every daemon the Dagster instance at ``$DAGSTER_HOME`` needs
  (sensors, schedules, the run queue, run monitoring...) wrote a heartbeat in
  the last ``--daemon-max-age`` seconds (default 300; daemons beat every 30 s).
  A heartbeat that carries errors is a warning.
- ``source <name>``: the SQL Server of every source accepts the login and
  answers (version, database).
- ``destination <name>``: every destination a task writes to takes a probe
  object (written, then deleted), as a load would write.
- ``cdc <task> <schema.table>``: per table of every CDC task, its lag and
  retention headroom against the task's thresholds, measured exactly as the
  ``cdc_lag`` / ``cdc_retention_headroom`` asset checks measure them
  (:mod:`dtaas_dagster.cdc.lag`; it reads the instance's materializations).

Each probe is ``ok``, ``warn`` or ``fail`` with a reason. Exit status: 0 when
no probe failed (warnings are printed), 1 when one did, 2 when the config
cannot be read. ``--skip`` leaves out a kind of probe (e.g. a liveness probe
of the code location that must not depend on SQL Server).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from dtaas_dagster.cdc.lag import FAIL, OK, WARN, measure, worst
from dtaas_dagster.config import ConfigError, DtaasConfig
from dtaas_dagster.sqlserver.resource import SqlServerResource

KINDS = ("daemon", "sources", "destinations", "cdc")
CDC_MODES = ("cdc", "full_load_and_cdc")
DEFAULT_DAEMON_MAX_AGE = 300.0


@dataclass(frozen=True)
class Probe:
    """One thing checked: its kind and name, ok / warn / fail, why, and the figures behind it."""

    kind: str
    name: str
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class HealthReport:
    probes: list[Probe]
    checked_at: str

    @property
    def status(self) -> str:
        return worst(*(p.status for p in self.probes))

    @property
    def healthy(self) -> bool:
        return self.status != FAIL

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "status": self.status,
            "checked_at": self.checked_at,
            "problems": [f"{p.kind} {p.name}: {p.reason}" for p in self.probes if p.status == FAIL],
            "probes": [asdict(p) for p in self.probes],
        }

    def text(self) -> str:
        lines = [f"{p.status.upper():<5} {p.kind} {p.name}: {p.reason}" for p in self.probes]
        verdict = {OK: "healthy", WARN: "healthy, with warnings", FAIL: "UNHEALTHY"}[self.status]
        return "\n".join([*lines, verdict])


def daemon_probes(instance: dg.DagsterInstance, *, max_age: float, now: float | None = None) -> list[Probe]:
    """One probe per daemon the instance needs: its last heartbeat's age and errors."""
    now = time.time() if now is None else now
    heartbeats = instance.get_daemon_heartbeats()
    probes = []
    for daemon in instance.get_required_daemon_types():
        beat = heartbeats.get(daemon)
        if beat is None:
            probes.append(
                Probe(
                    "daemon",
                    daemon,
                    FAIL,
                    "no heartbeat: is dagster-daemon running against this "
                    "instance (the same DAGSTER_HOME and storage)?",
                )
            )
            continue
        age = max(0.0, now - beat.timestamp)
        details = {"last_heartbeat_age_seconds": round(age, 1)}
        if age > max_age:
            probes.append(
                Probe(
                    "daemon",
                    daemon,
                    FAIL,
                    f"last heartbeat {age:,.0f}s ago (more than {max_age:g}s): the daemon is stopped or stuck",
                    details,
                )
            )
        elif beat.errors:
            message = (beat.errors[0].message or "").strip().splitlines()[0] if beat.errors[0].message else "?"
            probes.append(
                Probe(
                    "daemon",
                    daemon,
                    WARN,
                    f"alive ({age:,.0f}s ago) but reports {len(beat.errors)} error(s): {message}",
                    details,
                )
            )
        else:
            probes.append(Probe("daemon", daemon, OK, f"heartbeat {age:,.0f}s ago", details))
    if not probes:
        probes.append(Probe("daemon", "instance", WARN, "this instance needs no daemon (an ephemeral instance?)"))
    return probes


def source_probes(config: DtaasConfig) -> tuple[list[Probe], dict[str, SqlServerResource | str]]:
    """Every source: log in and ask for the version. Also, per source, its resource (for the CDC
    probes) or why it is unreachable."""
    from dtaas_dagster.sqlserver.errors import SqlServerError

    probes: list[Probe] = []
    reachable: dict[str, SqlServerResource | str] = {}
    for name, source in config.sources.items():
        try:
            resource = SqlServerResource.from_source(name, source, password=source.password())
            info = resource.server_info()
        except (SqlServerError, ConfigError) as exc:
            probes.append(Probe("source", name, FAIL, str(exc), {"address": f"{source.host}:{source.port}"}))
            reachable[name] = str(exc)
            continue
        reachable[name] = resource
        probes.append(
            Probe(
                "source",
                name,
                OK,
                f"SQL Server {info.product_version} ({info.edition}), database {info.database}",
                {"address": resource.address, "database": info.database},
            )
        )
    return probes, reachable


def destination_probes(config: DtaasConfig) -> list[Probe]:
    """Every destination a task writes to: a probe object written and deleted."""
    from dtaas_dagster.errors import PermanentLoadError
    from dtaas_dagster.factory import build_io_manager

    probes, seen = [], set()
    for task in config.tasks.values():
        if task.destination in seen:
            continue
        seen.add(task.destination)
        manager = build_io_manager(config.destinations[task.destination], task, name=task.destination)
        try:
            where = manager.check_writable()
        except (PermanentLoadError, OSError, ValueError) as exc:
            probes.append(Probe("destination", task.destination, FAIL, str(exc)))
            continue
        probes.append(Probe("destination", task.destination, OK, f"writable at {where}", {"url": where}))
    return probes


def cdc_probes(
    config: DtaasConfig, instance: dg.DagsterInstance | None, sources: dict[str, SqlServerResource | str]
) -> list[Probe]:
    """Per table of every CDC task: lag and retention headroom (cdc/lag.py)."""
    from dtaas_dagster.factory import task_specs
    from dtaas_dagster.sqlserver.cdc import CdcNotEnabled
    from dtaas_dagster.sqlserver.errors import SqlServerError

    probes = []
    for task_name, task in config.tasks.items():
        if task.mode not in CDC_MODES:
            continue
        resource = sources.get(task.source)
        if instance is None or not isinstance(resource, SqlServerResource):
            why = (
                "there is no Dagster instance (above)"
                if instance is None
                else f"source {task.source} is not reachable: {resource}"
            )
            probes.append(Probe("cdc", task_name, FAIL, f"not measured: {why}"))
            continue

        def listed(r: SqlServerResource = resource) -> list[tuple[str, str]]:
            return [(t.schema, t.name) for t in r.list_tables()]

        try:
            specs = task_specs(task_name=task_name, config=config, list_tables=listed)
            lags = measure(instance=instance, sqlserver=resource, specs=specs, task_mode=task.mode, cdc=task.cdc)
        except (SqlServerError, ConfigError, CdcNotEnabled) as exc:
            probes.append(Probe("cdc", task_name, FAIL, f"not measured: {exc}"))
            continue
        for lag in lags:
            details = {k: v for k, v in lag.as_json().items() if k not in ("table", "status", "reason")}
            probes.append(Probe("cdc", f"{task_name} {lag.table}", lag.status, lag.reason, details))
    return probes


def _instance(probes: list[Probe]) -> dg.DagsterInstance | None:
    """The instance at $DAGSTER_HOME, or None with a failed probe saying why."""
    try:
        return dg.DagsterInstance.get()
    except dg.DagsterError as exc:  # DAGSTER_HOME unset, not absolute, not a directory, bad dagster.yaml
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        probes.append(
            Probe(
                "instance",
                "DAGSTER_HOME",
                FAIL,
                f"no Dagster instance ({first}); set DAGSTER_HOME "
                "to the directory holding the deployment's dagster.yaml",
            )
        )
        return None


def health(
    config: DtaasConfig, *, daemon_max_age: float = DEFAULT_DAEMON_MAX_AGE, skip: Iterable[str] = ()
) -> HealthReport:
    """Every probe that is not skipped, in order: daemon, sources, destinations, CDC tables."""
    skipped = set(skip)
    probes: list[Probe] = []
    measure_cdc = "cdc" not in skipped and any(task.mode in CDC_MODES for task in config.tasks.values())
    instance = None
    if "daemon" not in skipped or measure_cdc:  # CDC positions live in the instance
        instance = _instance(probes)
    try:
        if instance is not None and "daemon" not in skipped:
            probes += daemon_probes(instance, max_age=daemon_max_age)
        sources: dict[str, SqlServerResource | str] = {}
        if "sources" not in skipped or measure_cdc:  # the CDC probes query the sources
            found, sources = source_probes(config)
            probes += [] if "sources" in skipped else found
        if "destinations" not in skipped:
            probes += destination_probes(config)
        if measure_cdc:
            probes += cdc_probes(config, instance, sources)
    finally:
        if instance is not None:
            instance.dispose()
    return HealthReport(probes, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def run_health(config_path: str | None, *, as_json: bool, daemon_max_age: float, skip: Iterable[str]) -> int:
    """The ``dtaas health`` command: print the report, exit 0 (healthy) or 1 (a probe failed)."""
    from dtaas_dagster.config import load_config

    report = health(load_config(config_path), daemon_max_age=daemon_max_age, skip=skip)
    print(json.dumps(report.as_json(), indent=2) if as_json else report.text())
    return 0 if report.healthy else 1
