"""Global variables in dtaas.yaml: static text, or the value of a SQL query on a named source.

    variables:
      ETLCustomerId: "12345"                       # static (the old form, still valid)
      CustomerId:                                  # query
        source: sales
        query: SELECT Id FROM dbo.Customers WHERE Name = '$sourceDatabaseName'

Cross-checks against the rest of the file (the source exists, every ``$name``
in a query is a built-in or a static variable) are in :mod:`.model`.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from dtaas_dagster.config.base import Model, fix
from dtaas_dagster.sqlserver.variable_sql import VariableSqlError, bind_variables


class QueryVariableSpec(Model):
    """A variable whose value is the single value a SQL query returns (once per run and table)."""

    source: str = Field(description="Name of a source under `sources`; the query runs there.")
    query: str = Field(
        min_length=1,
        description=(
            "SQL returning exactly one row with one column. $name / '$name' references to built-ins and static "
            "variables are sent as bound parameters, never spliced into the text."
        ),
        json_schema_extra=fix("write e.g. SELECT Id FROM dbo.Customers WHERE Name = '$sourceDatabaseName'"),
    )

    @field_validator("query")
    @classmethod
    def _bindable(cls, value: str) -> str:
        try:
            bind_variables(value)
        except VariableSqlError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def references(self) -> tuple[str, ...]:
        return bind_variables(self.query).parameters
