"""CDC rules checked on the in-process engine, where a test can arrange what a client cannot."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster_tests.double_tests.engine_helpers import run
from dtaas_dagster_tests.sqlserver_double.engine import DuckDbEngine
from dtaas_dagster_tests.sqlserver_double.engine_api import SqlServerError


def rows(session: Any, sql: str) -> list[tuple]:
    last = None
    for result in session.execute(sql):
        if result.result_set is not None:
            last = pa.Table.from_batches(list(result.result_set.batches))
    assert last is not None
    return [tuple(r.values()) for r in last.to_pylist()]


@pytest.fixture()
def cdc_engine() -> Iterator[DuckDbEngine]:
    engine = DuckDbEngine()
    engine.create_database("sales")
    session = engine.open_session("sa", "sales")
    run(session, "EXEC sys.sp_cdc_enable_db")
    run(session, "CREATE TABLE dbo.t (id int NOT NULL PRIMARY KEY, v int NULL)")
    run(session, "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N't', @role_name = NULL")
    session.close()
    yield engine
    engine.cdc.close()


def test_cleanup_takes_the_smallest_lsn_of_a_shared_commit_time(cdc_engine: DuckDbEngine) -> None:
    session = cdc_engine.open_session("sa", "sales")
    for i in range(3):
        run(session, f"INSERT INTO dbo.t VALUES ({i}, {i})")
    lsns = [r[0] for r in rows(session, "SELECT start_lsn FROM cdc.lsn_time_mapping ORDER BY start_lsn")]
    # the first two transactions committed within the same datetime tick (1/300 s)
    cdc_engine.con.execute('UPDATE "db_sales"."cdc"."lsn_time_mapping" SET tran_end_time = '
                           '(SELECT min(tran_end_time) FROM "db_sales"."cdc"."lsn_time_mapping")')  # fmt: skip
    cdc_engine.con.execute('UPDATE "db_sales"."cdc"."lsn_time_mapping" SET tran_end_time = tran_end_time + '
                           "INTERVAL 1 SECOND WHERE start_lsn = ?", [lsns[2]])  # fmt: skip

    run(session, "EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'dbo_t', "
                 f"@low_water_mark = 0x{lsns[1].hex()}")  # fmt: skip

    assert rows(session, "SELECT sys.fn_cdc_get_min_lsn('dbo_t')") == [(lsns[0],)]
    assert [r[0] for r in rows(session, "SELECT id FROM cdc.dbo_t_CT ORDER BY id")] == [0, 1, 2]
    session.close()


def test_concurrent_commits_reach_the_change_table_in_lsn_order_through_a_lagging_capture(
    cdc_engine: DuckDbEngine,
) -> None:
    cdc_engine.cdc.set_capture_lag(0.0, "sales")  # the capture job thread moves every commit, soon
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        session = cdc_engine.open_session("sa", "sales")
        try:
            for i in range(25):
                run(session, f"INSERT INTO dbo.t VALUES ({worker * 100 + i}, {worker})")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cdc_engine.cdc.capture("sales")  # whatever the job has not moved yet

    assert errors == []
    session = cdc_engine.open_session("sa", "sales")
    changes = rows(session, 'SELECT "__$start_lsn", id, v FROM cdc.dbo_t_CT ORDER BY "__$start_lsn"')
    mapping = [r[0] for r in rows(session, "SELECT start_lsn FROM cdc.lsn_time_mapping ORDER BY start_lsn")]
    assert len(changes) == 100 and len({c[0] for c in changes}) == 100
    assert [c[0] for c in changes] == mapping  # one mapping entry per transaction, nothing lost
    for worker in range(4):  # each worker's commits in the order it made them
        assert [c[1] for c in changes if c[2] == worker] == [worker * 100 + i for i in range(25)]
    assert cdc_engine.cdc.capture_status("sales")["pending_transactions"] == 0
    session.close()


def test_a_database_dropped_while_its_capture_lags_does_not_stop_the_job(cdc_engine: DuckDbEngine) -> None:
    cdc_engine.cdc.set_capture_lag(0.0)
    cdc_engine.create_database("other")
    session = cdc_engine.open_session("sa", "other")
    run(session, "EXEC sys.sp_cdc_enable_db")
    run(session, "CREATE TABLE dbo.o (id int NOT NULL PRIMARY KEY)")
    run(session, "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'o', @role_name = NULL")
    run(session, "INSERT INTO dbo.o VALUES (1)")
    session.close()
    cdc_engine.drop_database("other")

    sales = cdc_engine.open_session("sa", "sales")
    run(sales, "INSERT INTO dbo.t VALUES (1, 1)")
    lsn = cdc_engine.cdc.capture_status("sales")["newest_commit_lsn"]
    for _ in range(200):
        if rows(sales, "SELECT sys.fn_cdc_get_max_lsn()") == [(lsn,)]:
            break
        threading.Event().wait(0.05)
    assert rows(sales, "SELECT id FROM cdc.dbo_t_CT") == [(1,)]
    sales.close()


def test_the_job_thread_runs_only_while_needed(cdc_engine: DuckDbEngine) -> None:
    def job_threads() -> int:
        return sum(t.name == "double-cdc-jobs" and t.is_alive() for t in threading.enumerate())

    before = job_threads()
    cdc_engine.cdc.set_capture_lag(float("inf"), "sales")  # manual capture needs no thread
    assert job_threads() == before
    cdc_engine.cdc.set_capture_lag(1.0, "sales")
    assert job_threads() == before + 1
    cdc_engine.cdc.close()
    assert job_threads() == before

    cdc_engine.cdc.set_capture_lag(None, "sales")
    assert job_threads() == before
    cdc_engine.create_database("brief")
    cdc_engine.cdc.set_capture_lag(1.0, "brief")
    assert job_threads() == before + 1
    cdc_engine.drop_database("brief")  # its lag goes with it, and the thread with its last reason
    for _ in range(100):
        if job_threads() == before:
            break
        threading.Event().wait(0.05)
    assert job_threads() == before


def test_capture_lag_must_be_a_duration(cdc_engine: DuckDbEngine) -> None:
    with pytest.raises(ValueError, match="seconds >= 0"):
        cdc_engine.cdc.set_capture_lag(float("nan"), "sales")
    with pytest.raises(SqlServerError) as missing:
        cdc_engine.cdc.set_capture_lag(1.0, "nope")
    assert missing.value.number == 911
