"""VariablesResource: static, query (bound parameters, one value, retried like a read, cached per run), built-ins."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dtaas_dagster.sqlserver.errors import SqlServerError
from dtaas_dagster.sqlserver.variable_sql import VariableSqlError, bind_variables
from dtaas_dagster.variables import (
    QueryVariable,
    VariableError,
    VariablesResource,
    builtin_values,
    check_variable_value,
)
from dtaas_dagster_tests.sqlserver.test_resource import resource_for

HOSTILE = "x'; DROP TABLE dbo.customers--"


def builtins(database: str = "sales", run_id: str = "run-1") -> dict[str, str]:
    return builtin_values(
        database=database,
        schema="dbo",
        table="Orders",
        partition_key="2026-12-02T021503Z-full-r3f9a1c",
        run_id=run_id,
        task="demo",
    )


def test_builtins_follow_dtaas_and_the_partition_key() -> None:
    values = builtins()
    assert values["sourceTableName"] == "dbo.Orders" and values["sourceTableShortName"] == "Orders"
    assert (values["loadDate"], values["loadYear"], values["loadMonth"], values["loadDay"], values["loadHour"]) == (
        "2026-12-02",
        "2026",
        "12",
        "02",
        "02",
    )
    assert values["runId"] == "run-1" and values["partitionKey"] == "2026-12-02T021503Z-full-r3f9a1c"


def test_dtaas_quoted_form_becomes_a_parameter() -> None:
    bound = bind_variables("SELECT Id FROM Customers WHERE Name = '$sourceDatabaseName' AND t = ${sourceTableName}")
    assert bound.sql == "SELECT Id FROM Customers WHERE Name = ? AND t = ?"
    assert bound.parameters == ("sourceDatabaseName", "sourceTableName")
    with pytest.raises(VariableSqlError, match=r"'db_' \+ \$x|'prefix_' \+ \$x"):
        bind_variables("SELECT 1 WHERE a = 'db_$x'")


@pytest.mark.parametrize("value", ["..", "../etc", "a/../b", "/abs", "a\nb", "tab\there", ""])
def test_values_that_could_escape_a_path_are_refused(value: str) -> None:
    with pytest.raises(VariableError, match=r"variable \$v "):
        check_variable_value("v", value)
    assert check_variable_value("v", "dbo.Orders") == "dbo.Orders"


@pytest.fixture()
def customers(sqlserver, sqlserver_db):  # type: ignore[no-untyped-def]
    sqlserver_db.seed_table(
        "dbo",
        "customers",
        pa.table(
            {
                "id": pa.array([12345, 777, 9], pa.int32()),
                "name": pa.array(["sales", HOSTILE, "dup"]),
                "tenant": pa.array(["a", "b", "dup"]),
            }
        ),
        primary_key=["id"],
    )
    return resource_for(sqlserver, sqlserver_db.name, "msodbc18")


def _resolve(resource: VariablesResource, source: object, database: str, run_id: str = "run-1") -> dict[str, str]:
    return resource.resolve(builtins=builtins(database, run_id), run_id=run_id, source=lambda name: source)


def test_query_variable_runs_with_bound_parameters_even_for_a_hostile_database_name(customers) -> None:  # type: ignore[no-untyped-def]
    variables = VariablesResource(
        static={"ETLCustomerId": "42"},
        queries=[
            QueryVariable(
                name="CustomerId",
                source="sales",
                query="SELECT id FROM dbo.customers WHERE name = '$sourceDatabaseName'",
            )
        ],
    )
    assert _resolve(variables, customers, "sales")["CustomerId"] == "12345"
    resolved = _resolve(variables, customers, HOSTILE, run_id="run-2")
    assert resolved["CustomerId"] == "777" and resolved["ETLCustomerId"] == "42"
    with customers.connect() as connection:  # the table is intact: the name was a value, not SQL
        assert connection.cursor().execute("SELECT COUNT(*) FROM dbo.customers").fetchone()[0] == 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT id FROM dbo.customers", r"\$CustomerId \(source sales\) returned more than one row\(s\) and 1 column"),
        ("SELECT id, name FROM dbo.customers WHERE id = 9", r"returned 1 row\(s\) and 2 column\(s\)"),
        ("SELECT id FROM dbo.customers WHERE id = 0", r"returned 0 row\(s\)"),
        ("SELECT NULL", r"returned NULL"),
        ("SELECT '../../etc'", r"\$CustomerId contains a '\.\.' path segment"),
    ],
)
def test_query_variable_must_return_one_value(customers, query: str, message: str) -> None:  # type: ignore[no-untyped-def]
    variables = VariablesResource(queries=[QueryVariable(name="CustomerId", source="sales", query=query)])
    with pytest.raises(VariableError, match=message):
        _resolve(variables, customers, "sales", run_id=f"run-{query}")


def test_a_failing_query_is_retried_like_a_read(customers) -> None:  # type: ignore[no-untyped-def]
    variables = VariablesResource(
        queries=[QueryVariable(name="CustomerId", source="sales", query="SELECT nope FROM dbo.customers")]
    )
    with pytest.raises(SqlServerError, match=r"query variable \$CustomerId \(source sales\): .*nope") as failure:
        _resolve(variables, customers, "sales", run_id="bad-query")
    assert failure.value.retryable


@pytest.mark.double_only
def test_query_variable_failure_is_retryable_and_the_value_is_cached_per_run(sqlserver, customers) -> None:  # type: ignore[no-untyped-def]
    variables = VariablesResource(
        queries=[
            QueryVariable(name="CustomerId", source="sales", query="SELECT id FROM dbo.customers WHERE tenant = 'a'")
        ]
    )
    sqlserver.control.fail_statement(r"tenant = 'a'", times=1)
    with pytest.raises(SqlServerError) as failure:
        _resolve(variables, customers, "sales", run_id="cached-run")
    assert failure.value.retryable  # transient: the step's RetryPolicy retries it, as for a read
    assert _resolve(variables, customers, "sales", run_id="cached-run")["CustomerId"] == "12345"
    sqlserver.control.fail_statement(r"tenant = 'a'", times=1)
    # Same run and parameters: the cached value, no query (the armed failure stays armed) ...
    assert _resolve(variables, customers, "sales", run_id="cached-run")["CustomerId"] == "12345"
    # ... a new run queries again (and meets the failure).
    with pytest.raises(SqlServerError):
        _resolve(variables, customers, "sales", run_id="another-run")
