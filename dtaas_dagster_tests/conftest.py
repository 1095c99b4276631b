"""Shared pytest fixtures: the SQL Server every test talks to.

- ``sqlserver`` (session): the SQL Server double in a child process, or the real
  server in ``DTAAS_TEST_SQLSERVER`` (an ODBC connection string). Exposes
  ``host``, ``port``, ``user``, ``password``, ``is_double``,
  ``connection_string(database=None, driver="msodbc18"|"freetds")``,
  ``connect(...)``, ``seed_table(...)`` and, for the double, ``control``.
- ``sqlserver_db`` (function): a fresh database with snapshot isolation allowed,
  dropped after the test. Yields a :class:`SqlServerDatabase` (``.name``,
  ``.connect()``, ``.seed_table(schema, table, arrow_table, ...)``).
- ``double_only`` (fixture) and ``@pytest.mark.double_only``: skip when the
  tests target a real SQL Server (fault injection, the purge hook).
- ``snowflake``, ``snowflake_schema``, ``fakesnow``: Snowflake (fakesnow's server
  as a process, or a real account), see ``snowflake_fixtures.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dtaas_dagster_tests.s3_fixtures import moto_s3, s3_bucket, s3_credentials  # noqa: F401 - fixtures
from dtaas_dagster_tests.snowflake_fixtures import fakesnow, snowflake, snowflake_schema  # noqa: F401 - fixtures
from dtaas_dagster_tests.sqlserver_fixtures import (
    REAL_SERVER_ENV,
    SqlServerDatabase,
    SqlServerTarget,
    start_target,
    unique_database_name,
)


def _targets_real_server() -> bool:
    return bool(os.environ.get(REAL_SERVER_ENV, "").strip())


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("double_only") and _targets_real_server():
        pytest.skip(f"needs the SQL Server double; {REAL_SERVER_ENV} points at a real server")


@pytest.fixture(scope="session")
def sqlserver() -> Iterator[SqlServerTarget]:
    target = start_target()
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture()
def sqlserver_db(sqlserver: SqlServerTarget) -> Iterator[SqlServerDatabase]:
    name = unique_database_name()
    sqlserver.create_database(name, snapshot_isolation=True)
    try:
        yield SqlServerDatabase(sqlserver, name)
    finally:
        sqlserver.drop_database(name)


@pytest.fixture()
def double_only(sqlserver: SqlServerTarget) -> SqlServerTarget:
    if not sqlserver.is_double:
        pytest.skip(f"needs the SQL Server double; {REAL_SERVER_ENV} points at a real server")
    return sqlserver
