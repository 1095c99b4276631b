"""Schedules: a task's full load on a cron or an interval.

A tick names the snapshot after its scheduled time (``...-full-sched``),
registers the partition and requests the ``<task>_tables`` run; the run key is
the partition key, so a tick evaluated twice starts one run.
"""

import datetime as dt

import dagster as dg

from dtaas_dagster.config import ConfigError, ScheduleConfig
from dtaas_dagster.jobs import load_run_tags
from dtaas_dagster.partitions import partitions_def_name, snapshot_key


def interval_to_cron(minutes: int) -> str:
    """Cron for an interval that divides an hour, a day or a week evenly; a clear error otherwise."""
    if minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *"
    if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
        return "0 * * * *" if minutes == 60 else f"0 */{minutes // 60} * * *"
    if minutes == 10080:
        return "0 0 * * 0"
    raise ConfigError(
        f"schedule.interval_minutes {minutes} does not divide an hour or a day evenly, so it has no cron form; "
        "use one that does (e.g. 15, 30, 120, 360) or give a cron expression."
    )


def build_full_load_schedule(*, task: str, schedule: ScheduleConfig, tables_job: object) -> dg.ScheduleDefinition:
    cron = schedule.cron or interval_to_cron(schedule.interval_minutes or 60)

    @dg.schedule(
        name=f"{task}_schedule",
        job=tables_job,  # type: ignore[arg-type]
        cron_schedule=cron,
        execution_timezone=schedule.timezone,
        description=f"Full load of task {task} on {cron} ({schedule.timezone}).",
    )
    def full_load_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        key = snapshot_key(when, "sched")
        # Schedules cannot return dynamic-partition requests; adding the key first is Dagster's
        # documented way (add_dynamic_partitions ignores a key that exists).
        context.instance.add_dynamic_partitions(partitions_def_name(task), [key])
        return dg.RunRequest(run_key=key, partition_key=key, tags=load_run_tags(task, key, trigger="schedule"))

    return full_load_schedule
