"""LSN allocation (pure) and concurrent committers (through Driver 18)."""

from __future__ import annotations

import threading

from dtaas_dagster_tests.sqlserver_double.engine.cdc_lsn import (
    FIRST_LSN,
    allocate_commit,
    lsn_bytes,
    lsn_int,
    lsn_text,
)
from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase, cdc_changes, enable_cdc, wait_for_lsn_after


def test_commit_lsns_increase_and_bracket_their_seqvals() -> None:
    first = allocate_commit(FIRST_LSN, 3)
    second = allocate_commit(first.commit, 70_000)  # more rows than one 2-byte slot range
    empty = allocate_commit(second.commit, 0)
    assert first.tran_begin < first.seqvals[0] < first.seqvals[-1] < first.commit
    assert second.commit > second.seqvals[-1] > first.commit
    assert len(set(second.seqvals)) == 70_000
    assert empty.commit > second.commit and empty.seqvals == []
    assert lsn_int(lsn_bytes(first.commit)) == first.commit and len(lsn_bytes(first.commit)) == 10
    assert lsn_text(0x2A) == "0x0000000000000000002A"
    assert lsn_int("0x") == int.from_bytes(b"0x".ljust(10, b"\0"), "big")  # varchar -> binary(10) semantics


def test_concurrent_committers_get_distinct_ordered_lsns(sqlserver_db: SqlServerDatabase) -> None:
    setup = sqlserver_db.connect()
    setup.execute("EXEC sys.sp_cdc_enable_db")
    setup.execute("CREATE TABLE dbo.hits (id int NOT NULL PRIMARY KEY, worker int NOT NULL)")
    enable_cdc(setup, "dbo", "hits")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with sqlserver_db.connect() as conn:
                for i in range(15):
                    conn.execute("INSERT INTO dbo.hits VALUES (?, ?)", worker * 100 + i, worker)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    wait_for_lsn_after(setup, None)

    rows = cdc_changes(setup, "dbo_hits")
    assert len(rows) == 60
    lsns = [r["__$start_lsn"] for r in rows]
    assert len(set(lsns)) == 60 and lsns == sorted(lsns)
    for worker in range(4):  # each worker's inserts appear in the order it committed them
        assert [r["id"] for r in rows if r["worker"] == worker] == [worker * 100 + i for i in range(15)]
    assert setup.execute("SELECT COUNT(*) FROM cdc.lsn_time_mapping").fetchone()[0] == 60
