"""Describing a step's tables ahead, in bulk (sqlserver/facts_session.py), against the SQL Server fixture.

A session must give exactly the facts the one-table path gives, read far fewer
statements, never use a description older than MAX_AGE_SECONDS, and leave the
one-table path's errors as they were.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.sqlserver import facts_session
from dtaas_dagster.sqlserver.errors import SqlServerTableNotFound
from dtaas_dagster.sqlserver.facts_session import FactsSession
from dtaas_dagster.sqlserver.resource import SqlServerResource, _database_options
from dtaas_dagster.sqlserver.snapshot import SnapshotOptions, profile_columns
from dtaas_dagster_tests.all_types import seed_all_types
from dtaas_dagster_tests.sqlserver.test_resource import resource_for

# The one-table describe statement (queries.TABLE_COLUMNS; the driver sends ? as @P<n>);
# the bulk one says "TABLE_NAME IN (".
ONE_TABLE_DESCRIBE = r"c\.TABLE_NAME = (\?|@P\d+)"


def _seed(db: Any) -> list[tuple[str, str]]:
    """Tables of two schemas: keyed and not, one needing the profile query, one spelled in mixed case."""
    seed_all_types(db)  # datetime2(7) and (max) columns: the plan needs the profile query
    db.seed_table(
        "dbo",
        "Orders",
        pa.table({"id": pa.array([1, 2], pa.int32()), "note": pa.array(["a", None])}),
        columns={"id": "int", "note": "nvarchar(20)"},
        primary_key=["id"],
    )
    db.seed_table("dbo", "heap", pa.table({"v": pa.array([1.5, 2.5, 3.5])}), columns={"v": "float"})
    db.seed_table(
        "sales",
        "lines",
        pa.table({"a": pa.array([1], pa.int64()), "b": pa.array([2], pa.int64())}),
        columns={"a": "bigint", "b": "bigint"},
        primary_key=["b", "a"],
    )
    # "orders" in the spelling a config might use; SQL Server compares names ignoring case
    return [("dbo", "all_types"), ("dbo", "orders"), ("dbo", "heap"), ("sales", "lines")]


def _facts(resource: SqlServerResource, schema: str, table: str) -> Any:
    options = SnapshotOptions(datetime2_overrides={"c_sentinel_text": "string"} if table == "all_types" else {})
    return resource.table_facts(schema, table, profile_columns=lambda d: profile_columns(d, options))


def test_a_session_gives_the_same_facts_as_one_table_at_a_time(sqlserver: Any, sqlserver_db: Any) -> None:
    tables = _seed(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    alone = {table: _facts(resource, *table) for table in tables}
    with resource.facts_session(tables) as session:
        together = {table: _facts(resource, *table) for table in tables}
    assert together == alone
    assert session.bulk_reads == 2  # one per schema
    assert alone[("dbo", "all_types")].profile  # the profile query still ran, per table
    assert alone[("sales", "lines")].description.primary_key == ("b", "a")
    assert alone[("dbo", "heap")].description.primary_key == () and alone[("dbo", "heap")].description.row_estimate == 3


@pytest.mark.double_only
def test_inside_a_session_no_table_is_described_alone(sqlserver: Any, sqlserver_db: Any) -> None:
    tables = _seed(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    sqlserver.control.fail_statement(ONE_TABLE_DESCRIBE, times=100)  # any one-table describe fails
    try:
        with resource.facts_session(tables):
            described = [_facts(resource, *table).description for table in tables]
        with pytest.raises(Exception, match="deadlock"):
            _facts(resource, "dbo", "heap")  # the check itself: outside a session, the fault bites
    finally:
        sqlserver.control.clear_faults()
    assert [d.table.name for d in described] == ["all_types", "orders", "heap", "lines"]
    assert [c.name for c in described[1].columns] == ["id", "note"]


def test_a_description_is_used_once_and_never_older_than_max_age(sqlserver: Any, sqlserver_db: Any) -> None:
    tables = [("dbo", name) for name in ("t1", "t2", "t3")]
    for _, name in tables:
        sqlserver_db.seed_table("dbo", name, pa.table({"id": pa.array([1], pa.int32())}), columns={"id": "int"})
    now = [100.0]
    session = FactsSession(
        database=sqlserver_db.name, tables=tables, read_options=_database_options, clock=lambda: now[0]
    )
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with resource.connect() as connection:
        cursor = connection.cursor()
        first = session.read_ahead(cursor, "dbo", "t1")
        assert first is not None and session.bulk_reads == 1
        assert session.take("dbo", "t1") is None  # taken once
        now[0] += facts_session.MAX_AGE_SECONDS - 1
        assert session.take("dbo", "t2") is not None
        with sqlserver_db.connect() as other:
            other.execute("ALTER TABLE dbo.t3 ADD added int NULL")
        now[0] += 2  # t3's description is now older than MAX_AGE_SECONDS
        assert session.take("dbo", "t3") is None
        fresh = session.read_ahead(cursor, "dbo", "t3")
    assert session.bulk_reads == 2
    assert fresh is not None and [c.name for c in fresh[0].columns] == ["id", "added"]


def test_a_table_the_catalog_lacks_gets_the_one_table_error(sqlserver: Any, sqlserver_db: Any) -> None:
    seed_all_types(sqlserver_db)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with resource.facts_session([("dbo", "all_typs"), ("dbo", "all_types")]):
        with pytest.raises(SqlServerTableNotFound, match="did you mean dbo.all_types"):
            resource.table_facts("dbo", "all_typs")
        assert resource.table_facts("dbo", "all_types", profile_columns=lambda d: ()).description.columns
    # a table the session was not opened for is described alone, as before
    with resource.facts_session([("dbo", "other")]) as session:
        assert resource.table_facts("dbo", "all_types").description.primary_key == ("id",)
        assert session.bulk_reads == 0
