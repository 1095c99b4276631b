"""Sensors: turning requests into table-loading runs through Dagster's own machinery.

``<task>_full_load_requests`` (running by default) watches the successful runs
of ``<task>_full_load``. For each one it requests a ``<task>_tables`` run for
the partition that request named, through ``SensorResult`` (the partition is
registered in the same result). The run key is the request run's id, so a
request is loaded once even if a tick is evaluated twice; the cursor is the
newest request-run update time already handled.
"""

import datetime as dt

import dagster as dg

from dtaas_dagster.jobs import (
    REQUESTED_BY_TAG,
    full_load_job_name,
    load_run_tags,
    requested_partition,
)
from dtaas_dagster.partitions import partitions_def_name

REQUEST_POLL_SECONDS = 5
_BATCH = 50


def full_load_requests_sensor_name(task: str) -> str:
    return f"{task}_full_load_requests"


def _copied_user_tags(run: dg.DagsterRun) -> dict[str, str]:
    """Tags a person set on the request (not Dagster's or ours) carry over to the load run."""
    return {k: v for k, v in run.tags.items() if not k.startswith(("dagster/", ".dagster", "dtaas/"))}


def build_full_load_requests_sensor(*, task: str, tables_job: object) -> dg.SensorDefinition:
    """The sensor that starts the load a ``<task>_full_load`` run asked for."""
    request_job = full_load_job_name(task)

    @dg.sensor(
        name=full_load_requests_sensor_name(task),
        job=tables_job,  # type: ignore[arg-type]
        minimum_interval_seconds=REQUEST_POLL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Starts the {task}_tables run for each successful {request_job} run "
            "(a full load requested from the launchpad)."
        ),
    )
    def full_load_requests(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        after = dt.datetime.fromtimestamp(float(context.cursor), tz=dt.UTC) if context.cursor else None
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=request_job, statuses=[dg.DagsterRunStatus.SUCCESS], updated_after=after),
            limit=_BATCH,
            order_by="update_timestamp",
            ascending=True,
        )
        if not records:
            return dg.SkipReason(f"no new {request_job} runs")
        requests, keys = [], []
        for record in records:
            run = record.dagster_run
            key = requested_partition(context.instance, run, task)
            keys.append(key)
            requests.append(
                dg.RunRequest(
                    run_key=run.run_id,
                    partition_key=key,
                    tags={
                        **_copied_user_tags(run),
                        **load_run_tags(task, key, trigger="request"),
                        REQUESTED_BY_TAG: run.run_id,
                    },
                )
            )
            context.log.info(f"request run {run.run_id}: loading partition {key}")
        newest = max(r.update_timestamp for r in records)
        if newest.tzinfo is None:
            newest = newest.replace(tzinfo=dt.UTC)
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(partitions_def_name(task), keys)],
            cursor=str(newest.timestamp()),
        )

    return full_load_requests
