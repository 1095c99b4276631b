"""The CDC asset checks ``cdc_lag`` and ``cdc_retention_headroom`` of every table of a CDC task.

Lag matters most when nothing loads (a stopped sensor, failing runs), so these
checks are not evaluated by the loads themselves: they are one
``multi_asset_check`` per task (step ``<task>_cdc_lag_and_headroom``), run by the
schedule ``<task>_cdc_checks`` (``cdc.checks_cron``, every five minutes by default), through
the job ``<task>_cdc_checks`` that selects only them, the pattern Dagster
documents for checks on their own cadence. They run from the UI too (the
asset's *Checks* tab). The table runs leave them out (the tables job's
selection and the CDC sensor's run requests name the step checks only), so a
load never waits for them and Dagster never expects them from a load.

What lag and headroom mean, and the thresholds: :mod:`dtaas_dagster.cdc.lag`.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from dtaas_dagster.cdc.lag import FAIL, OK, TableLag, measure
from dtaas_dagster.config import CdcConfig
from dtaas_dagster.jobs import TASK_TAG
from dtaas_dagster.logs import job_run_config
from dtaas_dagster.sqlserver.cdc import CdcNotEnabled
from dtaas_dagster.sqlserver.errors import SqlServerError
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.table_load import TableSpec

CDC_LAG = "cdc_lag"
CDC_HEADROOM = "cdc_retention_headroom"


def cdc_checks_name(task: str) -> str:
    """The job and the schedule that evaluate the CDC checks."""
    return f"{task}_cdc_checks"


def cdc_checks_op_name(task: str) -> str:
    """The multi-asset check's own name (its step); op and job names must differ."""
    return f"{task}_cdc_lag_and_headroom"


def _severity(status: str) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if status == FAIL else dg.AssetCheckSeverity.WARN


def lag_results(lag: TableLag, key: dg.AssetKey, cdc: CdcConfig, names: set[str]) -> list[dg.AssetCheckResult]:
    """The two checks of one table from its measured lag (only the selected ones)."""
    common: dict[str, Any] = {
        "loaded_through_lsn": lag.loaded_through or "",
        "oldest_waiting_lsn": lag.oldest_waiting_lsn or "",
        "oldest_waiting_committed_at": lag.oldest_waiting_committed_at or "",
    }
    results = []
    if CDC_LAG in names:
        metadata = {**common, "lag_warn_seconds": cdc.lag_warn_seconds, "lag_fail_seconds": cdc.lag_fail_seconds}
        if lag.lag_seconds is not None:
            metadata["lag_seconds"] = dg.MetadataValue.float(lag.lag_seconds)
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=CDC_LAG,
                passed=lag.lag_status == OK,
                severity=_severity(lag.lag_status),
                description=f"{lag.table}: {lag.reason}",
                metadata=metadata,
            )
        )
    if CDC_HEADROOM in names:
        metadata = {
            **common,
            "headroom_warn_percent": cdc.headroom_warn_percent,
            "headroom_fail_percent": cdc.headroom_fail_percent,
        }
        for name in ("retention_minutes", "headroom_seconds", "headroom_percent"):
            value = getattr(lag, name)
            if value is not None:
                metadata[name] = dg.MetadataValue.float(float(value))
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=CDC_HEADROOM,
                passed=lag.headroom_status == OK,
                severity=_severity(lag.headroom_status),
                description=f"{lag.table}: {lag.reason}",
                metadata=metadata,
            )
        )
    return results


def build_cdc_checks(
    *, task: str, mode: str, cdc: CdcConfig, specs: Sequence[TableSpec], sqlserver_key: str
) -> dg.AssetChecksDefinition:
    """``<task>_cdc_checks``: lag and retention headroom of each table (see the module docstring)."""
    check_specs = [
        spec
        for table in specs
        for spec in (
            dg.AssetCheckSpec(
                CDC_LAG,
                asset=table.asset_key,
                description=(
                    f"The oldest change of {table.qualified} not yet loaded was committed less than "
                    f"{cdc.lag_warn_seconds}s ago (warn), {cdc.lag_fail_seconds}s (fail); 0 when none waits."
                ),
            ),
            dg.AssetCheckSpec(
                CDC_HEADROOM,
                asset=table.asset_key,
                description=(
                    f"More than {cdc.headroom_warn_percent:g}% (warn) / {cdc.headroom_fail_percent:g}% (fail) of the "
                    f"cleanup job's retention is left before a change of {table.qualified} not yet loaded is purged."
                ),
            ),
        )
    ]
    by_key = {table.asset_key: table for table in specs}

    @dg.multi_asset_check(
        name=cdc_checks_op_name(task),
        specs=check_specs,
        can_subset=True,
        required_resource_keys={sqlserver_key},
        description=f"CDC lag and retention headroom of the tables of task {task} (docs/operations.md).",
        op_tags={TASK_TAG: task},
    )
    def cdc_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        sqlserver: SqlServerResource = getattr(context.resources, sqlserver_key)
        names: dict[dg.AssetKey, set[str]] = {}
        for check in context.selected_asset_check_keys:
            names.setdefault(check.asset_key, set()).add(check.name)
        chosen = [by_key[key] for key in by_key if key in names]
        try:
            lags = measure(instance=context.instance, sqlserver=sqlserver, specs=chosen, task_mode=mode, cdc=cdc)
        except (SqlServerError, CdcNotEnabled) as exc:  # the source's state is the finding: report it on each table
            lags = [
                TableLag(table.qualified, table.asset_key.to_user_string(), FAIL, FAIL, f"cannot be measured: {exc}")
                for table in chosen
            ]
        for table, lag in zip(chosen, lags, strict=True):
            if lag.status != OK:
                log = context.log.error if lag.status == FAIL else context.log.warning
                log(f"{table.qualified}: {lag.reason}")
            yield from lag_results(lag, table.asset_key, cdc, names[table.asset_key])

    return cdc_checks


def build_cdc_checks_job(*, task: str, checks: dg.AssetChecksDefinition) -> Any:
    """The job that runs only the CDC checks of a task (in the run's own process: one step)."""
    return dg.define_asset_job(
        name=cdc_checks_name(task),
        selection=dg.AssetSelection.checks(checks),
        executor_def=dg.in_process_executor,
        description=f"Evaluate the CDC lag and retention headroom checks of task {task}.",
        tags={TASK_TAG: task},
        config=job_run_config(),  # JSON logs when DTAAS_LOG_FORMAT=json (dtaas_dagster.logs)
    )


def build_cdc_checks_schedule(*, task: str, cron: str, job: Any) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=cdc_checks_name(task),
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        description=f"Evaluates the CDC lag and retention headroom checks of task {task} ({cron}, UTC).",
    )


__all__ = [
    "CDC_HEADROOM",
    "CDC_LAG",
    "build_cdc_checks",
    "build_cdc_checks_job",
    "build_cdc_checks_schedule",
    "cdc_checks_name",
    "cdc_checks_op_name",
    "lag_results",
]
