"""What the Dagster UI shows about a table asset before and after it loads.

Definition metadata (the asset's page, the catalog's search and lineage):

- ``dagster/table_name``: ``<database>.<schema>.<table>`` of the SQL Server
  table the asset copies (an S3 destination holds files, not a table, so the
  name a person searches for is the source's);
- ``dagster/uri``: where the table's partitions live, the destination URL
  plus the part of the path template that is the same for every partition
  (``s3://lake/raw/sales/dbo/orders/`` for the default template); each
  materialization's metadata names its partition's own directory;
- for a Snowflake destination, ``dagster/table_name`` is the target table as
  its templates name it (left out when a template needs a run-time variable);
- ``source_table`` and ``mode`` as before.

From the task config: ``owners``, ``tags`` and a ``freshness`` policy
(Dagster's ``FreshnessPolicy.time_window`` or ``.cron``), the same for every
table of the task.
"""

from __future__ import annotations

import datetime as dt
import string
from typing import Any

import dagster as dg

from dtaas_dagster.config import (
    Destination,
    FreshnessConfig,
    S3Destination,
    SnowflakeDestination,
    SqlServerSource,
    TaskConfig,
)
from dtaas_dagster.destinations.location import render_partition_dir
from dtaas_dagster.table_load import TableSpec
from dtaas_dagster.variables import builtin_values, template_values

# Template variables whose value differs between partitions of one table.
_PER_PARTITION = frozenset({"partitionKey", "loadDate", "loadYear", "loadMonth", "loadDay", "loadHour", "runId"})


def _definition_values(spec: TableSpec, database: str, variables: dict[str, str]) -> dict[str, str]:
    """Template values known when the definitions load; the per-partition ones are placeholders."""
    builtins = builtin_values(
        database=database, schema=spec.schema, table=spec.table, partition_key="-", run_id="-", task=spec.task
    )
    return dict(template_values(builtins, variables))


def _same_for_every_partition(template: str, values: dict[str, str]) -> bool:
    """No per-partition variable, and no query variable (its value comes with each run)."""
    names = set(string.Template(template).get_identifiers())
    return not (names & _PER_PARTITION or names - values.keys())


def table_uri(*, destination: S3Destination, spec: TableSpec, database: str, variables: dict[str, str]) -> str:
    """The destination URL of the directory that holds every partition of the table (ends with '/').

    ``variables`` are the static global variables; a segment that uses a query
    variable (resolved per run) ends the stable part like a per-partition one.
    """
    values = _definition_values(spec, database, variables)
    stable = []
    for segment in destination.path_template.split("/"):
        if not _same_for_every_partition(segment, values):
            break
        stable.append(segment)
    base = f"file://{destination.local_path.as_posix()}" if destination.is_local else destination.url.rstrip("/")
    relative = render_partition_dir("/".join(stable), values) if stable else ""
    return f"{base}/{relative}/" if relative else f"{base}/"


def snowflake_table_name(
    *, destination: SnowflakeDestination, spec: TableSpec, database: str, variables: dict[str, str]
) -> str | None:
    """``DATABASE.SCHEMA.TABLE`` of a Snowflake target as its templates name it (before the identifier
    policy's case and quoting), or None when a template uses a variable known only at run time."""
    values = _definition_values(spec, database, variables)
    templates = (destination.database, destination.schema, destination.table)
    if not all(_same_for_every_partition(t, values) for t in templates):
        return None
    return ".".join(string.Template(t).substitute(values) for t in templates)


def table_metadata(
    *, spec: TableSpec, source: SqlServerSource, destination: Destination, mode: str, variables: dict[str, str]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"source_table": f"{source.database}.{spec.qualified}", "mode": mode}
    if isinstance(destination, S3Destination):
        metadata["dagster/table_name"] = f"{source.database}.{spec.qualified}"
        metadata["dagster/uri"] = table_uri(
            destination=destination, spec=spec, database=source.database, variables=variables
        )
        return metadata
    name = snowflake_table_name(destination=destination, spec=spec, database=source.database, variables=variables)
    if name is not None:  # the Snowflake table itself: what a person searches the catalog for
        metadata["dagster/table_name"] = name
    return metadata


def freshness_policy(freshness: FreshnessConfig | None) -> dg.FreshnessPolicy | None:
    if freshness is None:
        return None
    if freshness.cron is not None:
        return dg.FreshnessPolicy.cron(
            deadline_cron=freshness.cron,
            timezone=freshness.timezone,
            lower_bound_delta=dt.timedelta(minutes=freshness.lower_bound_minutes),
        )
    assert freshness.max_lag_minutes is not None  # the model requires one of the two
    warn = dt.timedelta(minutes=freshness.warn_lag_minutes) if freshness.warn_lag_minutes else None
    return dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=freshness.max_lag_minutes), warn_window=warn)


def asset_options(task: TaskConfig) -> dict[str, Any]:
    """``AssetOut`` keywords from the task config: owners, tags, freshness policy."""
    return {"owners": list(task.owners), "tags": dict(task.tags), "freshness_policy": freshness_policy(task.freshness)}
