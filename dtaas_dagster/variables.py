"""Variables: the one place that defines the built-in ``$name`` variables.

Path templates (and, later, transforms and Snowflake names) use ``$name`` or
``${name}``. Built-ins are resolved per table and run; global variables come
from ``variables:`` in dtaas.yaml. A global variable may not take a built-in's
name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

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
    return {
        "sourceDatabaseName": database,
        "sourceSchemaName": schema,
        "sourceTableName": table,
        "partitionKey": partition_key,
        "loadDate": now.astimezone(dt.timezone.utc).strftime("%Y-%m-%d"),
        "runId": run_id,
        "taskName": task,
    }


def template_values(builtins: Mapping[str, str], global_variables: Mapping[str, str]) -> dict[str, str]:
    """Global variables overlaid by the built-ins (a built-in always wins)."""
    return {**global_variables, **builtins}
