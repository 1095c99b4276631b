"""CDC change rows through pyodbc + ODBC Driver 18: operations, LSNs, seqvals, row filters, net changes.

Runs against the double, or a real SQL Server with ``DTAAS_TEST_SQLSERVER`` (the
helpers wait for the capture job there).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyodbc
import pytest

from dtaas_dagster_tests.sqlserver_fixtures import (
    SqlServerDatabase,
    cdc_changes,
    enable_cdc,
    max_lsn,
    wait_for_lsn_after,
)


@pytest.fixture()
def cdc_conn(sqlserver_db: SqlServerDatabase) -> Iterator[pyodbc.Connection]:
    """A connection to a fresh CDC-enabled database with dbo.items(id PK, name, qty) tracked as dbo_items."""
    conn = sqlserver_db.connect()
    conn.execute("EXEC sys.sp_cdc_enable_db")
    conn.execute("CREATE TABLE dbo.items (id int NOT NULL PRIMARY KEY, name nvarchar(50) NULL, qty int NULL)")
    enable_cdc(conn, "dbo", "items")
    yield conn
    conn.close()


def ops(rows: list[dict]) -> list[tuple[int, int]]:
    return [(row["__$operation"], row["id"]) for row in rows]


def test_insert_update_delete_each_commit_gets_one_increasing_lsn(cdc_conn: pyodbc.Connection) -> None:
    lsn = max_lsn(cdc_conn)
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'äpfel', 3), (2, N'梨', 5)")
    lsn_insert = wait_for_lsn_after(cdc_conn, lsn)
    cdc_conn.execute("UPDATE dbo.items SET qty = 4 WHERE id = 1")
    lsn_update = wait_for_lsn_after(cdc_conn, lsn_insert)
    cdc_conn.execute("DELETE FROM dbo.items WHERE id = 2")
    wait_for_lsn_after(cdc_conn, lsn_update)

    rows = cdc_changes(cdc_conn, "dbo_items", "all")
    assert ops(rows) == [(2, 1), (2, 2), (4, 1), (1, 2)]
    assert rows[0]["__$start_lsn"] == rows[1]["__$start_lsn"] == lsn_insert
    assert rows[0]["__$seqval"] < rows[1]["__$seqval"]
    assert rows[2]["__$start_lsn"] == lsn_update
    assert [len(r["__$start_lsn"]) for r in rows] == [10] * 4
    starts = [r["__$start_lsn"] for r in rows]
    assert starts == sorted(starts) and starts[0] < starts[2] < starts[3]
    assert rows[2]["qty"] == 4 and rows[3]["name"] == "梨"


def test_all_update_old_adds_the_before_image_with_the_update_mask(cdc_conn: pyodbc.Connection) -> None:
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    cdc_conn.execute("UPDATE dbo.items SET name = N'b' WHERE id = 1")
    wait_for_lsn_after(cdc_conn, None)

    plain = cdc_changes(cdc_conn, "dbo_items", "all")
    old = cdc_changes(cdc_conn, "dbo_items", "all update old")
    assert ops(plain) == [(2, 1), (4, 1)]
    assert ops(old) == [(2, 1), (3, 1), (4, 1)]
    before, after = old[1], old[2]
    assert (before["name"], after["name"]) == ("a", "b")
    assert before["__$seqval"] == after["__$seqval"]
    # ordinals: id=1, name=2, qty=3 -> only bit 2 set
    assert after["__$update_mask"] == b"\x02" and before["__$update_mask"] == b"\x02"
    assert old[0]["__$update_mask"] == b"\x07"


def test_primary_key_update_appears_as_delete_and_insert(cdc_conn: pyodbc.Connection) -> None:
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    cdc_conn.execute("UPDATE dbo.items SET id = 10 WHERE id = 1")
    wait_for_lsn_after(cdc_conn, None)

    rows = cdc_changes(cdc_conn, "dbo_items", "all update old")
    assert ops(rows) == [(2, 1), (1, 1), (2, 10)]
    delete, insert = rows[1], rows[2]
    assert delete["__$start_lsn"] == insert["__$start_lsn"]
    assert delete["__$seqval"] < insert["__$seqval"]  # two log records: the delete, then the insert


def test_multi_statement_transaction_shares_one_lsn_in_statement_order(cdc_conn: pyodbc.Connection) -> None:
    cdc_conn.autocommit = False
    cursor = cdc_conn.cursor()
    cursor.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    cursor.execute("INSERT INTO dbo.items VALUES (2, N'b', 2)")
    cursor.execute("UPDATE dbo.items SET qty = qty + 10")
    cursor.execute("DELETE FROM dbo.items WHERE id = 1")
    cdc_conn.commit()
    cdc_conn.autocommit = True
    lsn = wait_for_lsn_after(cdc_conn, None)

    rows = cdc_changes(cdc_conn, "dbo_items", "all")
    assert ops(rows) == [(2, 1), (2, 2), (4, 1), (4, 2), (1, 1)]
    assert {r["__$start_lsn"] for r in rows} == {lsn}
    seqvals = [r["__$seqval"] for r in rows]
    assert seqvals == sorted(seqvals) and len(set(seqvals)) == 5
    mapping = cdc_conn.execute("SELECT COUNT(*) FROM cdc.lsn_time_mapping WHERE start_lsn = ?", lsn).fetchone()[0]
    assert mapping == 1


def test_rolled_back_transaction_leaves_no_change_rows(cdc_conn: pyodbc.Connection) -> None:
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'kept', 1)")
    kept_lsn = wait_for_lsn_after(cdc_conn, None)
    cdc_conn.autocommit = False
    cdc_conn.execute("INSERT INTO dbo.items VALUES (2, N'gone', 2)")
    cdc_conn.execute("UPDATE dbo.items SET qty = 99 WHERE id = 1")
    cdc_conn.rollback()
    cdc_conn.autocommit = True

    assert max_lsn(cdc_conn) == kept_lsn
    assert ops(cdc_changes(cdc_conn, "dbo_items", "all update old")) == [(2, 1)]
    assert cdc_conn.execute("SELECT COUNT(*) FROM cdc.dbo_items_CT").fetchone()[0] == 1


def test_net_changes_collapse_each_key_to_its_final_state(cdc_conn: pyodbc.Connection) -> None:
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1), (2, N'b', 2)")
    first = wait_for_lsn_after(cdc_conn, None)
    cdc_conn.execute("INSERT INTO dbo.items VALUES (3, N'c', 3)")
    cdc_conn.execute("UPDATE dbo.items SET qty = 20 WHERE id = 2")
    cdc_conn.execute("UPDATE dbo.items SET name = N'cc' WHERE id = 3")
    cdc_conn.execute("DELETE FROM dbo.items WHERE id = 1")
    cdc_conn.execute("INSERT INTO dbo.items VALUES (4, N'd', 4)")
    cdc_conn.execute("DELETE FROM dbo.items WHERE id = 4")
    wait_for_lsn_after(cdc_conn, first)
    from_lsn = cdc_conn.execute("SELECT sys.fn_cdc_increment_lsn(?)", first).fetchone()[0]

    net = cdc_changes(cdc_conn, "dbo_items", "all", from_lsn=from_lsn, kind="net")
    by_id = {r["id"]: r for r in net}
    assert set(by_id) == {1, 2, 3}  # 4 was inserted and deleted inside the window
    assert (by_id[1]["__$operation"], by_id[2]["__$operation"], by_id[3]["__$operation"]) == (1, 4, 2)
    assert by_id[2]["qty"] == 20 and by_id[3]["name"] == "cc"
    assert "__$seqval" not in by_id[1]

    masked = {r["id"]: r for r in cdc_changes(cdc_conn, "dbo_items", "all with mask", from_lsn=from_lsn, kind="net")}
    assert masked[2]["__$update_mask"] == b"\x04" and masked[3]["__$update_mask"] is None
    merged = {
        r["id"]: r["__$operation"]
        for r in cdc_changes(cdc_conn, "dbo_items", "all with merge", from_lsn=from_lsn, kind="net")
    }
    assert merged == {1: 1, 2: 5, 3: 5}


def test_lsn_functions_map_between_lsns_and_commit_times(cdc_conn: pyodbc.Connection) -> None:
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1)")
    lsn = wait_for_lsn_after(cdc_conn, None)
    row = cdc_conn.execute(
        "SELECT sys.fn_cdc_increment_lsn(?), sys.fn_cdc_decrement_lsn(?), sys.fn_cdc_map_lsn_to_time(?)", lsn, lsn, lsn
    ).fetchone()
    assert int.from_bytes(row[0], "big") == int.from_bytes(lsn, "big") + 1
    assert int.from_bytes(row[1], "big") == int.from_bytes(lsn, "big") - 1
    committed_at = row[2]
    to_lsn = cdc_conn.execute(
        "SELECT sys.fn_cdc_map_time_to_lsn('largest less than or equal', ?), "
        "sys.fn_cdc_map_time_to_lsn('smallest greater than', ?)", committed_at, committed_at,
    ).fetchone()  # fmt: skip
    assert bytes(to_lsn[0]) == lsn and to_lsn[1] is None


def test_catalog_reflects_cdc_state(cdc_conn: pyodbc.Connection, sqlserver_db: SqlServerDatabase) -> None:
    enabled = cdc_conn.execute("SELECT is_cdc_enabled FROM sys.databases WHERE name = ?", sqlserver_db.name).fetchone()
    tracked = cdc_conn.execute("SELECT is_tracked_by_cdc FROM sys.tables WHERE name = 'items'").fetchone()
    assert enabled[0] and tracked[0]
    ct = cdc_conn.execute(
        "SELECT capture_instance, supports_net_changes, start_lsn, index_name FROM cdc.change_tables"
    ).fetchall()
    assert [(r[0], bool(r[1]), len(r[2])) for r in ct] == [("dbo_items", True, 10)]
    columns = cdc_conn.execute(
        "SELECT column_name, column_ordinal, column_type FROM cdc.captured_columns ORDER BY column_ordinal"
    ).fetchall()
    assert [tuple(r) for r in columns] == [("id", 1, "int"), ("name", 2, "nvarchar"), ("qty", 3, "int")]
    ct_columns = [d[0] for d in cdc_conn.execute("SELECT * FROM cdc.dbo_items_CT").description]
    assert ct_columns == ["__$start_lsn", "__$end_lsn", "__$seqval", "__$operation", "__$update_mask",
                          "id", "name", "qty", "__$command_id"]  # fmt: skip


def test_change_rows_stream_through_arrow_odbc_with_full_precision(
    cdc_conn: pyodbc.Connection, sqlserver_db: SqlServerDatabase
) -> None:
    from arrow_odbc import read_arrow_batches_from_odbc

    cdc_conn.execute("ALTER TABLE dbo.items ADD seen datetime2(7) NULL")
    enable_cdc(cdc_conn, "dbo", "items", capture_instance="items_v2")
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'ü', 2, '2024-01-01 10:00:00.1234567')")
    high = wait_for_lsn_after(cdc_conn, None)
    low = bytes(cdc_conn.execute("SELECT sys.fn_cdc_get_min_lsn('items_v2')").fetchone()[0])
    reader = read_arrow_batches_from_odbc(
        # arrow-odbc binds text only; LSNs from our own reads go in as binary literals
        query=f"SELECT * FROM cdc.fn_cdc_get_all_changes_items_v2(0x{low.hex()}, 0x{high.hex()}, N'all')",
        connection_string=sqlserver_db.connection_string(),
        batch_size=100,
    )
    rows = [row for batch in reader for row in batch.to_pylist()]
    assert reader.schema.field("__$start_lsn").type.byte_width == 10
    assert [(r["__$operation"], r["id"], r["name"]) for r in rows] == [(2, 1, "ü")]
    assert str(rows[0]["seen"]).endswith("10:00:00.123456700")


def replay(rows: list[dict], start: dict[int, tuple] | None = None) -> dict[int, tuple]:
    """Apply change rows in the order they come (deletes by key, inserts/updates as upserts), as a consumer does."""
    table = dict(start or {})
    for row in rows:
        if row["__$operation"] == 1:
            table.pop(row["id"], None)
        elif row["__$operation"] in (2, 4, 5):
            table[row["id"]] = (row["name"], row["qty"])
    return table


def source_rows(conn: pyodbc.Connection) -> dict[int, tuple]:
    return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, name, qty FROM dbo.items").fetchall()}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE dbo.items SET id = id + 1",  # every new key but one was an old key
        "UPDATE dbo.items SET id = id - 1, qty = qty * 2",
        "UPDATE dbo.items SET id = CASE WHEN id = 2 THEN 2 ELSE id + 10 END, name = N'x'",  # one key unchanged
    ],
)
def test_key_updates_replay_to_the_source_table_in_order_and_as_net_changes(
    cdc_conn: pyodbc.Connection, statement: str
) -> None:
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1), (2, N'b', 2), (3, N'c', 3)")
    first = wait_for_lsn_after(cdc_conn, None)
    before = source_rows(cdc_conn)
    cdc_conn.execute(statement)
    wait_for_lsn_after(cdc_conn, first)
    after = source_rows(cdc_conn)

    window = cdc_conn.execute("SELECT sys.fn_cdc_increment_lsn(?)", first).fetchone()[0]
    assert replay(cdc_changes(cdc_conn, "dbo_items", "all", from_lsn=window), before) == after
    assert replay(cdc_changes(cdc_conn, "dbo_items", "all", from_lsn=window, kind="net"), before) == after
    statement_rows = cdc_changes(cdc_conn, "dbo_items", "all update old", from_lsn=window)
    operations = [r["__$operation"] for r in statement_rows]
    deletes = [i for i, op in enumerate(operations) if op == 1]
    inserts = [i for i, op in enumerate(operations) if op == 2]
    assert deletes and inserts and max(deletes) < min(inserts)  # split update: all deletes, then all inserts
    seqvals = [r["__$seqval"] for r in statement_rows if r["__$operation"] in (1, 2)]
    assert len(set(seqvals)) == len(seqvals)


def test_unchanged_large_values_are_null_in_update_before_images(cdc_conn: pyodbc.Connection) -> None:
    cdc_conn.execute("ALTER TABLE dbo.items ADD note nvarchar(max) NULL, blob varbinary(max) NULL")
    enable_cdc(cdc_conn, "dbo", "items", capture_instance="items_lob")
    cdc_conn.execute("INSERT INTO dbo.items VALUES (1, N'a', 1, N'long note', 0x0102)")
    cdc_conn.execute("UPDATE dbo.items SET qty = 2 WHERE id = 1")  # the LOBs do not change
    cdc_conn.execute("UPDATE dbo.items SET note = N'new note' WHERE id = 1")  # note changes, blob does not
    cdc_conn.execute("DELETE FROM dbo.items WHERE id = 1")
    wait_for_lsn_after(cdc_conn, None)

    rows = cdc_changes(cdc_conn, "items_lob", "all update old")
    got = [(r["__$operation"], r["qty"], r["note"], r["blob"]) for r in rows]
    assert got == [
        (2, 1, "long note", b"\x01\x02"),
        (3, 1, None, None), (4, 2, "long note", b"\x01\x02"),
        (3, 2, "long note", None), (4, 2, "new note", b"\x01\x02"),
        (1, 2, "new note", b"\x01\x02"),  # a delete keeps its large values
    ]  # fmt: skip
