"""The standalone double with ``--demo``: the sales database, CDC on every table, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_double.demo import demo_tables
from dtaas_dagster_tests.sqlserver_double.process import READY_PREFIX, DoubleProcess
from dtaas_dagster_tests.sqlserver_fixtures import SqlServerTarget, cdc_changes, wait_for_lsn_after

DEMO_TABLES = ["customers", "order_lines", "orders", "products"]


def test_demo_rows_are_the_same_at_every_start() -> None:
    first, second = demo_tables(), demo_tables()
    assert [t.data.equals(u.data) for t, u in zip(first, second)] == [True] * 4
    sizes = {t.name: t.data.num_rows for t in first}
    assert sizes["customers"] == 500 and sum(sizes.values()) > 3000
    assert [t.primary_key for t in first if t.name == "order_lines"] == [["order_id", "line_no"]]


@pytest.fixture(scope="module")
def demo() -> Iterator[SqlServerTarget]:
    double = DoubleProcess(port=0, demo=True)
    try:
        yield SqlServerTarget(double.host, double.port, double.user, double.password, double=double)
    finally:
        assert double.stop() == 0


@pytest.mark.double_only
def test_demo_database_has_four_cdc_tables_with_the_seeded_rows(demo: SqlServerTarget) -> None:
    with demo.connect("sales") as conn:
        tables = conn.execute("SELECT name FROM sys.tables WHERE is_tracked_by_cdc = 1 ORDER BY name").fetchall()
        assert [r[0] for r in tables] == DEMO_TABLES
        state = conn.execute("SELECT is_cdc_enabled, snapshot_isolation_state FROM sys.databases WHERE name = 'sales'")
        assert tuple(state.fetchone()) == (True, 1)
        counts = {t.name: t.data.num_rows for t in demo_tables()}
        for table in DEMO_TABLES:
            assert conn.execute(f"SELECT COUNT(*) FROM dbo.{table}").fetchone()[0] == counts[table]
        first = conn.execute(
            "SELECT name, customer_guid, created_at FROM dbo.customers WHERE customer_id = 1"
        ).fetchone()
        expected = demo_tables()[0].data.slice(0, 1).to_pylist()[0]
        assert first[0] == expected["name"] and first[1].upper() == expected["customer_guid"]


@pytest.mark.double_only
def test_demo_tables_capture_changes(demo: SqlServerTarget) -> None:
    with demo.connect("sales") as conn:
        before = conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0]
        conn.execute("UPDATE dbo.products SET price = price + 1 WHERE product_id = 7")
        wait_for_lsn_after(conn, bytes(before))
        rows = cdc_changes(conn, "dbo_products", "all update old")
    assert [(r["__$operation"], r["product_id"]) for r in rows] == [(3, 7), (4, 7)]
    assert rows[1]["price"] - rows[0]["price"] == 1


@pytest.mark.double_only
def test_standalone_entry_point_prints_a_connection_string_and_exits_zero_on_sigterm() -> None:
    env = dict(os.environ, DTAAS_DOUBLE_PASSWORD="Demo-Passw0rd!")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dtaas_dagster_tests.sqlserver_double", "--port", "0", "--demo"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline().removeprefix(READY_PREFIX))
        proc.stdout.readline()
        connection_string = proc.stdout.readline().strip().replace("<password>", "Demo-Passw0rd!")
        assert f"SERVER=127.0.0.1,{ready['port']}" in connection_string and "DATABASE=sales" in connection_string
        with pyodbc.connect(connection_string, autocommit=True) as conn:
            assert conn.execute("SELECT COUNT(*) FROM dbo.orders").fetchone()[0] == 1500
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
