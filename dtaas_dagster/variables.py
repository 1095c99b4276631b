"""Variables: the built-in ``$name`` variables (the one place that defines them) and ``VariablesResource``.

``$name`` or ``${name}`` is used in path templates, add_column values and
query variables' SQL. Three kinds (docs/variables.md):

- **built-ins**, per table and run: :data:`BUILTIN_VARIABLES`. ``$sourceTableName``
  is schema-qualified (``dbo.Orders``), as in the original DTaaS, so its path
  templates and control-table queries keep their meaning; the bare name is
  ``$sourceTableShortName``. ``$loadDate`` and its parts (``$loadYear``,
  ``$loadMonth``, ``$loadDay``, ``$loadHour``) are the UTC time in the
  partition key, so every run of one partition renders the same path;
  ``$runId`` differs per run and is refused in path templates
  (:data:`NOT_IN_PATH_TEMPLATES`), but allowed in add_column values.
- **static** global variables: ``variables: {ETLCustomerId: "12345"}``;
- **query** global variables: ``variables: {CustomerId: {source: sales, query: "SELECT ..."}}``,
  run on the named source with ``$name`` references bound as parameters
  (:mod:`dtaas_dagster.sqlserver.variable_sql`).

:class:`VariablesResource` resolves the global ones once per run and table
(query results are cached per run in the step process) and refuses a value
that could escape a path (``..``, a leading ``/``, control characters).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

from dagster import Config, ConfigurableResource
from pydantic import Field

from dtaas_dagster.sqlserver.variable_sql import bind_variables

# Per-run values: a path template that used them would put each re-run of a
# partition in a new directory, leaving two complete copies.
NOT_IN_PATH_TEMPLATES = ("runId",)
_KEY_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})T\d{6}Z-")
_KEY_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})\d{4}Z-")

BUILTIN_VARIABLES = (
    "sourceDatabaseName",
    "sourceSchemaName",
    "sourceTableName",
    "sourceTableShortName",
    "partitionKey",
    "loadDate",
    "loadYear",
    "loadMonth",
    "loadDay",
    "loadHour",
    "runId",
    "taskName",
)


def builtin_values(
    *,
    database: str,
    schema: str,
    table: str,
    partition_key: str,
    run_id: str,
    task: str,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The built-in variables of one table (``table`` is its bare name) in one run."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    match = _KEY_TIME.match(partition_key)
    year, month, day, hour = match.groups() if match else (f"{now:%Y}", f"{now:%m}", f"{now:%d}", f"{now:%H}")
    return {
        "sourceDatabaseName": database,
        "sourceSchemaName": schema,
        "sourceTableName": f"{schema}.{table}",
        "sourceTableShortName": table,
        "partitionKey": partition_key,
        "loadDate": f"{year}-{month}-{day}",
        "loadYear": year,
        "loadMonth": month,
        "loadDay": day,
        "loadHour": hour,
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


# --------------------------------------------------------------------- global variables
class VariableError(ValueError):
    """A variable cannot be resolved or its value is refused; the message names it and the fix."""


def check_variable_value(name: str, value: str) -> str:
    """Refuse a value that could escape a path or break a name: ``..``, a leading ``/``, control characters."""
    text = str(value)
    problem = None
    if text == "":
        problem = "is empty"
    elif text.startswith(("/", "\\")):
        problem = "starts with a '/'"
    elif ".." in re.split(r"[/\\]", text):
        problem = "contains a '..' path segment"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        problem = "contains a control character"
    if problem:
        shown = repr(text[:40]) if not any(ord(ch) < 32 for ch in text) else "(not shown)"
        raise VariableError(
            f"variable ${name} {problem} ({shown}); a variable's value must stay inside one "
            "path segment or name. Fix the value (or the query that returns it)"
        )
    return text


# Query results, per (run id, variable, parameter values), for the life of the step process.
_QUERY_CACHE: dict[tuple[str, str, tuple[str, ...]], str] = {}


class QueryVariable(Config):
    """A variable whose value is the one value a SQL query returns."""

    name: str = Field(description="Variable name, used as $name.")
    source: str = Field(description="Name of the source (in dtaas.yaml) the query runs on.")
    query: str = Field(description="SQL returning one row with one column; $name references become parameters.")


class VariablesResource(ConfigurableResource):
    """The global variables of dtaas.yaml: static values and values from SQL queries."""

    static: dict[str, str] = Field(default_factory=dict, description="Static variables: name -> value.")
    queries: list[QueryVariable] = Field(default_factory=list, description="Query variables, resolved per run.")

    def source_names(self) -> list[str]:
        return sorted({q.source for q in self.queries})

    def names(self) -> list[str]:
        return [*self.static, *(q.name for q in self.queries)]

    def resolve(
        self,
        *,
        builtins: Mapping[str, str],
        run_id: str,
        source: Callable[[str], Any],
    ) -> dict[str, str]:
        """Every variable of one table in one run: static, query (cached per run) and built-in values.

        ``source(name)`` returns the ``SqlServerResource`` of a source. A query that
        fails with a transient error raises it unchanged (the step retries, as for a
        read); anything a retry cannot fix is a :class:`VariableError`.
        """
        values = {name: check_variable_value(name, value) for name, value in self.static.items()}
        parameters_from = {**values, **builtins}
        for query in self.queries:
            bound = bind_variables(query.query)
            parameters = tuple(str(parameters_from[name]) for name in bound.parameters)
            key = (run_id, query.name, parameters)
            if key not in _QUERY_CACHE:
                if len(_QUERY_CACHE) > 1000:
                    _QUERY_CACHE.clear()
                _QUERY_CACHE[key] = _run_query(query, bound.sql, parameters, source(query.source))
            values[query.name] = check_variable_value(query.name, _QUERY_CACHE[key])
        return {**values, **builtins}


def _run_query(query: QueryVariable, sql: str, parameters: tuple[str, ...], sqlserver: Any) -> str:
    from dtaas_dagster.sqlserver.errors import SqlServerError

    try:
        with sqlserver.connect() as connection:
            cursor = connection.cursor()
            cursor.execute(sql, *parameters)
            if cursor.description is None:
                raise VariableError(
                    f"query variable ${query.name} (source {query.source}) returned no result set; "
                    "its query must be a SELECT returning one row with one column"
                )
            columns = len(cursor.description)
            rows = cursor.fetchmany(2)
    except SqlServerError as exc:
        if exc.retryable:  # like a failed read: the same kind of error, so the step's RetryPolicy retries it
            raise type(exc)(f"query variable ${query.name} (source {query.source}): {exc}") from None
        raise VariableError(
            f"query variable ${query.name} (source {query.source}) failed: {exc}; fix its query in dtaas.yaml"
        ) from None
    if columns != 1 or len(rows) != 1:
        got = f"{len(rows) if len(rows) < 2 else 'more than one'} row(s) and {columns} column(s)"
        raise VariableError(
            f"query variable ${query.name} (source {query.source}) returned {got}; it must return "
            "exactly one row with one column. Fix its query in dtaas.yaml (e.g. SELECT TOP (1) ...)"
        )
    value = rows[0][0]
    if value is None:
        raise VariableError(
            f"query variable ${query.name} (source {query.source}) returned NULL; it must return a "
            "value. Fix its query (e.g. COALESCE(..., 'default'))"
        )
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return str(value)
