"""Drive a CDC task the way the daemon does, in this process: sensor ticks and the runs they request.

``CdcHarness.tick()`` evaluates the task's ``<task>_cdc`` sensor with its cursor
against a real instance, registers the partitions it asks for, and
``run(request)`` executes the requested ``<task>_tables`` run in-process with the
request's partition, asset selection, run config and tags (as the run the
daemon would launch). ``replayed()`` replays the destination's partitions.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs

from dtaas_dagster.cdc.replay import replay, table_partitions
from dtaas_dagster.config import parse_config
from dtaas_dagster.factory import build_definitions, sqlserver_resource_key
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster_tests.runs import PASSWORD_ENV, source_config
from dtaas_dagster_tests.sqlserver_double.cdc_control import MANUAL_CAPTURE


def cdc_config(sqlserver: Any, database: str, lake: Path, tables: list[Any], **task: Any) -> dict[str, Any]:
    return {
        "sources": {"src": source_config(sqlserver, database)},
        "destinations": {"lake": {"type": "s3", "url": f"file://{lake}"}},
        "tasks": {
            "t": {
                "source": "src",
                "destination": "lake",
                "tables": tables,
                "mode": "full_load_and_cdc",
                "retry": {"max_retries": 0},
                **task,
            }
        },
    }


class Capture:
    """The capture job: a capture step on the double; a wait for SQL Server's job on a real server."""

    def __init__(self, db: Any) -> None:
        self.db = db
        if db.target.is_double:
            db.target.control.set_capture_lag(MANUAL_CAPTURE, db.name)

    def step(self, timeout: float = 60) -> None:
        if self.db.target.is_double:
            self.db.target.control.capture(self.db.name)
            return
        with closing(self.db.connect()) as conn:  # a real server: wait until max LSN passes the newest commit
            deadline = time.monotonic() + timeout
            before = conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0]
            while conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0] == before:
                if time.monotonic() > deadline:
                    raise TimeoutError("the capture job did not move max LSN; is SQL Server Agent running?")
                time.sleep(0.5)


@dataclass
class CdcHarness:
    config: dict[str, Any]
    sqlserver: Any
    instance: dg.DagsterInstance
    lake: Path
    task: str = "t"
    cursor: str | None = None
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parsed = parse_config(self.config)
        self.defs = build_definitions(self.parsed)
        self.job = self.defs.resolve_job_def(f"{self.task}_tables")
        self.sensor = self.defs.resolve_sensor_def(f"{self.task}_cdc")
        source = self.parsed.sources[self.parsed.tasks[self.task].source]
        self.resource = SqlServerResource.from_source("src", source, password=self.sqlserver.password)

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={sqlserver_resource_key("src"): self.resource}
        ) as context:
            result = self.sensor(context)
        assert isinstance(result, dg.SensorResult), result
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for event in result.asset_events or []:  # as the sensor daemon stores them
            self.instance.report_runless_asset_event(event)
        return result

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """The requested run, with exactly the assets and checks it names (as the daemon launches it)."""
        tags = {**request.tags, "dagster/sensor_name": f"{self.task}_cdc"}
        job = self.job.get_subset(
            asset_selection=set(request.asset_selection or []),
            asset_check_selection=set(request.asset_check_keys or []),
        )
        result = job.execute_in_process(
            instance=self.instance,
            partition_key=request.partition_key,
            run_config=request.run_config or {},
            tags=tags,
            raise_on_error=False,
        )
        self.results.append(result)
        return result

    def cycle(self) -> list[dg.ExecuteInProcessResult]:
        """One tick and every run it requested."""
        return [self.run(request) for request in self.tick().run_requests]

    def replayed(self, schema: str, table: str) -> pa.Table:
        from dtaas_dagster.sqlserver.names import asset_name_part

        fs = pafs.LocalFileSystem()
        partitions = table_partitions(fs, str(self.lake), [self.task, asset_name_part(schema), asset_name_part(table)])
        return replay(fs, partitions)


def source_rows(db: Any, schema: str, table: str, key: str) -> list[dict[str, Any]]:
    with closing(db.connect()) as conn:
        cursor = conn.execute(f"SELECT * FROM [{schema}].[{table}] ORDER BY [{key}]")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


__all__ = ["PASSWORD_ENV", "Capture", "CdcHarness", "cdc_config", "source_rows"]
