"""The correctness oracle of CDC: whatever happens, replaying the destination gives the source table.

A property-based test (hypothesis) against the SQL Server double with capture
lag (changes reach the change tables only when the "capture job" steps): random
inserts, updates, deletes and primary-key updates, multi-statement and
multi-table transactions, rollbacks; a snapshot taken while a writer keeps
changing the tables; sensor ticks at random moments; runs failing through the
double's faults; and re-executions of old change partitions. At the end,
``replay`` of every table (newest snapshot + every change partition after it,
product code) must equal the source table, row for row.
"""

from __future__ import annotations

import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pyodbc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dtaas_dagster_tests.cdc.harness import PASSWORD_ENV, Capture, CdcHarness, cdc_config, source_rows

pytestmark = [pytest.mark.slow, pytest.mark.double_only]

TABLES = ("a", "b")
KEYS = range(12)


class Writer:
    """Random valid changes, tracked in a model of each table's keys."""

    def __init__(self, db: Any, data: st.DataObject) -> None:
        self.db, self.data = db, data
        self.keys: dict[str, set[int]] = {t: set() for t in TABLES}
        self.counter = 0

    def _statement(self, table: str, keys: set[int]) -> str | None:
        free = sorted(set(KEYS) - keys)
        kinds = ["insert"] * bool(free) + ["update", "delete", "key_update"] * bool(keys) + ["multi_update"]
        kind = self.data.draw(st.sampled_from(kinds), label="kind")
        self.counter += 1
        if kind == "insert":
            key = self.data.draw(st.sampled_from(free), label="key")
            keys.add(key)
            return f"INSERT INTO dbo.{table} (id, v, n) VALUES ({key}, N'v{self.counter}', {self.counter})"
        if kind == "multi_update":
            return f"UPDATE dbo.{table} SET n = n + 1, v = N'm{self.counter}' WHERE id % 2 = {self.counter % 2}"
        key = self.data.draw(st.sampled_from(sorted(keys)), label="key")
        if kind == "update":
            return f"UPDATE dbo.{table} SET v = N'u{self.counter}', n = {self.counter} WHERE id = {key}"
        if kind == "delete":
            keys.discard(key)
            return f"DELETE FROM dbo.{table} WHERE id = {key}"
        if not free:
            return None
        new = self.data.draw(st.sampled_from(free), label="new key")
        keys.discard(key)
        keys.add(new)
        return f"UPDATE dbo.{table} SET id = {new} WHERE id = {key}"

    def transaction(self) -> None:
        """One transaction of 1-3 statements over one or both tables; committed or rolled back."""
        rollback = self.data.draw(st.booleans(), label="rollback") and self.data.draw(st.booleans())
        planned = {t: set(k) for t, k in self.keys.items()}
        statements = []
        for _ in range(self.data.draw(st.integers(1, 3), label="statements")):
            table = self.data.draw(st.sampled_from(TABLES), label="table")
            statement = self._statement(table, planned[table])
            if statement:
                statements.append(statement)
        with closing(self.db.connect(autocommit=False)) as conn:
            for statement in statements:
                conn.execute(statement)
            if rollback:
                conn.rollback()
            else:
                conn.commit()
                self.keys = planned

    def blind(self, count: int, seed: int) -> None:
        """Unplanned changes from another thread (while a snapshot runs): updates of existing rows only."""
        with closing(self.db.connect()) as conn:
            for i in range(count):
                conn.execute(f"UPDATE dbo.a SET n = n + 1, v = N'w{seed}-{i}' WHERE id % 3 = {i % 3}")


def _setup(db: Any) -> Capture:
    with closing(db.connect()) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        for table in TABLES:
            conn.execute(f"CREATE TABLE dbo.{table} (id int NOT NULL PRIMARY KEY, v nvarchar(40), n int)")
            conn.execute(
                f"EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'{table}', @role_name = NULL"
            )
    return Capture(db)


def _settle(harness: CdcHarness, capture: Capture, timeout: float = 120) -> None:
    """Capture everything, then tick and run until nothing is pending and no backoff is waiting."""
    import json
    import time

    deadline = time.monotonic() + timeout
    capture.step()
    while True:
        ticked_at = time.time()
        ran = harness.cycle()
        states = json.loads(harness.cursor or '{"tables": {}}')["tables"].values()
        # a table whose backoff had not passed when the tick ran still waits for the next tick
        busy = any(s["pending"] or s["retry_after"] > ticked_at for s in states)
        if not ran and not busy:
            return
        assert time.monotonic() < deadline, f"the sensor did not settle: {harness.cursor}"
        if not ran:
            time.sleep(0.5)


@pytest.mark.timeout(2400)
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_replay_equals_the_source_whatever_happens(
    data: st.DataObject, sqlserver: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase, unique_database_name

    monkeypatch.setenv(PASSWORD_ENV, sqlserver.password)
    name = unique_database_name()
    sqlserver.create_database(name, snapshot_isolation=True)
    db = SqlServerDatabase(sqlserver, name)
    lake = tmp_path_factory.mktemp("oracle") / "lake"
    try:
        with dg.instance_for_test() as instance:
            capture = _setup(db)
            writer = Writer(db, data)
            harness = CdcHarness(
                cdc_config(
                    sqlserver, name, lake, [f"dbo.{t}" for t in TABLES], parallel_tables=1, cdc={"poll_seconds": 1}
                ),
                sqlserver,
                instance,
                lake,
            )
            snapshot_taken = False
            done_runs: list[dg.RunRequest] = []
            for _ in range(data.draw(st.integers(4, 14), label="steps")):
                step = data.draw(
                    st.sampled_from(["write", "write", "capture", "cycle", "fail", "reexecute"]), label="step"
                )
                if step == "write":
                    writer.transaction()
                elif step == "capture":
                    capture.step()
                elif step == "fail" and snapshot_taken:
                    sqlserver.control.fail_statement(r"fn_cdc_get_all_changes", times=1)
                    try:
                        if any(not r.success for r in harness.cycle()):
                            event("a run failed (injected)")
                    finally:
                        sqlserver.control.clear_faults()
                elif step == "reexecute":
                    index = data.draw(st.integers(0, 1000), label="old run")
                    if done_runs:
                        harness.run(done_runs[index % len(done_runs)])  # the same partition and windows again
                        event("an old change partition was re-executed")
                else:
                    result = harness.tick()
                    for request in result.run_requests:
                        if "-full-" in (request.partition_key or "") and not snapshot_taken:
                            # the snapshot runs while a writer keeps changing the table
                            thread = threading.Thread(target=writer.blind, args=(8, len(done_runs)))
                            thread.start()
                            run = harness.run(request)
                            thread.join()
                            snapshot_taken = True
                            event("a snapshot ran while a writer changed the table")
                        else:
                            run = harness.run(request)
                        if run.success and "-cdc-" in (request.partition_key or ""):
                            done_runs.append(request)
                            event("a change window loaded")
            _settle(harness, capture)
            for table in TABLES:
                expected = sorted(source_rows(db, "dbo", table, "id"), key=lambda r: r["id"])
                replayed = sorted(harness.replayed("dbo", table).to_pylist(), key=lambda r: r["id"])
                assert replayed == expected, table
    finally:
        try:
            sqlserver.drop_database(name)
        except pyodbc.Error:
            pass
    assert Path(lake).exists()
