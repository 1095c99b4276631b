"""Variables: the one place that defines the built-in ``$name`` variables.

Path templates (and, later, transforms and Snowflake names) use ``$name`` or
``${name}``. Built-ins are resolved per table and run; global variables come
from ``variables:`` in dtaas.yaml. A global variable may not take a built-in's
name. ``$loadDate`` is the date of the load window (the date in its partition
key), so it is the same for every run of one partition; ``$runId`` differs per
run and is therefore refused in path templates (:data:`NOT_IN_PATH_TEMPLATES`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

# Per-run values: a path template that used them would put each re-run of a
# partition in a new directory, leaving two complete copies.
NOT_IN_PATH_TEMPLATES = ("runId",)
_KEY_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})T\d{6}Z-")

BUILTIN_VARIABLES = (
    "sourceDatabaseName",
    "sourceSchemaName",
    "sourceTableName",
    "partitionKey",
    "loadDate",
    "runId",
    "taskName",
)


def builtin_values(
    *, database: str, schema: str, table: str, partition_key: str, run_id: str, task: str,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The built-in variables of one table in one run."""
    now = now or dt.datetime.now(dt.timezone.utc)
    load_date = partition_key_date(partition_key) or now.astimezone(dt.timezone.utc).strftime("%Y-%m-%d")
    return {
        "sourceDatabaseName": database,
        "sourceSchemaName": schema,
        "sourceTableName": table,
        "partitionKey": partition_key,
        "loadDate": load_date,
        "runId": run_id,
        "taskName": task,
    }


def partition_key_date(key: str) -> str | None:
    """The UTC date (YYYY-MM-DD) a partition key was created, when the key carries one.

    ``$loadDate`` is that date, so a re-run of a partition on another day renders the
    same path (a key without a date falls back to today's date).
    """
    match = _KEY_DATE.match(key)
    return match.group(1) if match else None


def template_values(builtins: Mapping[str, str], global_variables: Mapping[str, str]) -> dict[str, str]:
    """Global variables overlaid by the built-ins (a built-in always wins)."""
    return {**global_variables, **builtins}
