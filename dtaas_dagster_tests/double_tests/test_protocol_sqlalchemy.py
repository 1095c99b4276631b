"""SQLAlchemy mssql+pyodbc reflection through the protocol layer and the real DuckDB engine."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest

from dtaas_dagster_tests.double_tests.conftest_protocol import PASSWORD, conn_str
from dtaas_dagster_tests.sqlserver_double.server import DoubleServer


@pytest.fixture
def engine_server() -> Iterator[DoubleServer]:
    from dtaas_dagster_tests.sqlserver_double.engine import DuckDbEngine

    with DoubleServer(DuckDbEngine(password=PASSWORD)) as srv:
        yield srv


def test_sqlalchemy_reflection(engine_server: DoubleServer) -> None:
    import sqlalchemy as sa

    url = "mssql+pyodbc:///?odbc_connect=" + quote_plus(conn_str(engine_server, database="master"))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, "
                "customer nvarchar(50) NULL, amount decimal(18,2) NULL)"
            )
        inspector = sa.inspect(engine)
        assert "orders" in inspector.get_table_names(schema="dbo")
        columns = {c["name"]: c for c in inspector.get_columns("orders", schema="dbo")}
        assert list(columns) == ["id", "customer", "amount"]
        assert isinstance(columns["customer"]["type"], sa.NVARCHAR) and columns["customer"]["type"].length == 50
        assert columns["amount"]["type"].precision == 18 and columns["amount"]["type"].scale == 2
        assert columns["id"]["nullable"] is False
        assert inspector.get_pk_constraint("orders", schema="dbo")["constrained_columns"] == ["id"]
    finally:
        engine.dispose()
