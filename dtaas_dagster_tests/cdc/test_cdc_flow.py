"""CDC end to end in-process: snapshot, change windows, key updates, replay equals the source."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster_tests.cdc.harness import PASSWORD_ENV, Capture, CdcHarness, cdc_config, source_rows


@pytest.fixture()
def instance() -> Any:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(autouse=True)
def _password(sqlserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sqlserver.password)


def _setup(db: Any) -> Capture:
    with closing(db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        conn.execute("CREATE TABLE dbo.orders (id int NOT NULL PRIMARY KEY, v nvarchar(20), amount decimal(18,2), "
                     "changed datetime2(7))")
        conn.execute("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', "
                     "@role_name = NULL")
    return Capture(db)


def _exec(db: Any, *statements: str) -> None:
    with closing(db.connect()) as conn:
        for statement in statements:
            conn.execute(statement)


def test_snapshot_then_windows_replay_to_the_source(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    capture = _setup(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, N'a', 1.50, '2024-01-01 00:00:00.1234567'), "
                        "(2, N'b', 2.00, NULL), (3, N'c', NULL, '2024-01-03 00:00:00')")
    capture.step()
    harness = CdcHarness(cdc_config(sqlserver, sqlserver_db.name, tmp_path / "lake", ["dbo.orders"]),
                         sqlserver, instance, tmp_path / "lake")
    [snapshot] = harness.cycle()  # no snapshot yet: the first tick asks for one
    assert snapshot.success
    # changes after the snapshot, some not yet captured when the snapshot ran (capture lag)
    _exec(sqlserver_db, "UPDATE dbo.orders SET v = N'a2' WHERE id = 1", "DELETE FROM dbo.orders WHERE id = 2",
          "INSERT INTO dbo.orders VALUES (4, N'd', 4.00, '2030-05-05 05:05:05.0000005')")
    assert harness.cycle() == []  # nothing captured yet: no window
    capture.step()
    [window] = harness.cycle()
    assert window.success
    _exec(sqlserver_db, "UPDATE dbo.orders SET id = id + 10 WHERE id IN (1, 3)",  # key update, split by SQL Server
          "UPDATE dbo.orders SET amount = 9.99 WHERE id = 4")
    capture.step()
    [window2] = harness.cycle()
    assert window2.success
    assert harness.cycle() == []  # idle: nothing more
    replayed = harness.replayed("dbo", "orders").sort_by("id").to_pylist()
    expected = source_rows(sqlserver_db, "dbo", "orders", "id")
    assert [r["id"] for r in replayed] == [r["id"] for r in expected] == [4, 11, 13]
    for got, want in zip(replayed, expected):
        assert got["v"] == want["v"] and got["amount"] == want["amount"]
