"""Under SNAPSHOT isolation, sys.fn_cdc_get_max_lsn() agrees with the data the transaction sees."""

from __future__ import annotations

from dtaas_dagster_tests.sqlserver_fixtures import SqlServerDatabase, cdc_changes, enable_cdc, wait_for_lsn_after


def test_snapshot_transaction_sees_max_lsn_consistent_with_its_data(sqlserver_db: SqlServerDatabase) -> None:
    writer = sqlserver_db.connect()
    writer.execute("EXEC sys.sp_cdc_enable_db")
    writer.execute("CREATE TABLE dbo.balances (id int NOT NULL PRIMARY KEY, amount int NOT NULL)")
    enable_cdc(writer, "dbo", "balances")
    writer.execute("INSERT INTO dbo.balances VALUES (1, 100)")
    first = wait_for_lsn_after(writer, None)

    reader = sqlserver_db.connect(autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
    seen_before = reader.execute("SELECT COUNT(*), sys.fn_cdc_get_max_lsn() FROM dbo.balances").fetchone()

    writer.execute("INSERT INTO dbo.balances VALUES (2, 200)")
    second = wait_for_lsn_after(writer, first)
    seen_after = reader.execute("SELECT COUNT(*) FROM dbo.balances").fetchone()[0]
    max_in_snapshot = bytes(reader.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0])
    changes_in_snapshot = cdc_changes(reader, "dbo_balances", to_lsn=max_in_snapshot)
    reader.commit()

    assert (seen_before[0], bytes(seen_before[1])) == (1, first)
    assert (seen_after, max_in_snapshot) == (1, first)
    assert [r["id"] for r in changes_in_snapshot] == [1]
    assert bytes(reader.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0]) == second
    reader.close()
    writer.close()
