"""CDC into Snowflake: change windows MERGEd exactly once, in order, against a real Snowflake process.

Change partitions are built as Arrow streams with the documented change
columns (what the CDC reader writes). The oracle replays the same changes in
``(_dtaas_lsn, _dtaas_seqval)`` order, upserting inserts and updates and
deleting deletes by key; the Snowflake table must equal it after every step.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from dtaas_dagster.destinations.snowflake.load import WindowGapError
from dtaas_dagster.destinations.snowflake.session import SnowflakeStatementError
from dtaas_dagster_tests.destinations.snowflake_samples import (
    EPOCH,
    SNAPSHOT_1,
    changes,
    control_row,
    lsn,
    manager,
    orders,
    read,
    rows,
    snapshot,
    write,
)
from dtaas_dagster_tests.snowflake_fixtures import SnowflakeSchema, SnowflakeTarget

# Each load opens a connector session to a real server process: seconds each, more on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

Change = tuple[str, int, int, int, "str | None", "int | None"]  # op, lsn, seqval, id, name, qty

BASE = [(1, "one", 1), (2, "two", 2), (3, "three", 3), (4, "four", 4)]
# window 1: updates with their before-images, a delete, an insert, two changes of one key
W1: list[Change] = [
    ("update_before", 0x10, 1, 1, "one", 1),
    ("update", 0x10, 1, 1, "one v2", 10),
    ("delete", 0x11, 1, 3, "three", 3),
    ("insert", 0x12, 1, 5, "five", 5),
    ("update", 0x13, 1, 5, "five v2", 50),
    ("update", 0x13, 2, 5, "five v3", 500),
]
# window 2: a primary-key update (delete 4 + insert 6 at one LSN and seqval), a delete, a re-insert
W2: list[Change] = [
    ("delete", 0x20, 1, 4, "four", 4),
    ("insert", 0x20, 1, 6, "four", 4),
    ("delete", 0x21, 1, 2, "two", 2),
    ("insert", 0x22, 1, 3, "three again", 33),
]
# window 3: a row inserted and deleted inside the window, an update, a delete
W3: list[Change] = [
    ("insert", 0x30, 1, 7, "seven", 7),
    ("delete", 0x31, 1, 7, "seven", 7),
    ("update", 0x32, 1, 6, "six", 6),
    ("delete", 0x33, 1, 5, "five v3", 500),
]
WINDOWS = {"c1": (W1, (0x10, 0x1F)), "c2": (W2, (0x20, 0x2F)), "c3": (W3, (0x30, 0x3F))}
_RANK = {"delete": 1, "insert": 2, "update_before": 3, "update": 4}


def replay(base: list[tuple[int, str, int]], *windows: list[Change], start: int = 0) -> list[tuple[int, str, int]]:
    """The oracle: every change from ``start`` on, in CDC order, upserts and deletes by key."""
    table = {r[0]: r for r in base}
    ordered = sorted((c for w in windows for c in w), key=lambda c: (c[1], c[2], _RANK[c[0]]))
    for op, at, _seq, key, name, qty in ordered:
        if at < start or op == "update_before":
            continue
        if op == "delete":
            table.pop(key, None)
        else:
            table[key] = (key, name, qty)  # type: ignore[assignment]
    return sorted(table.values())


def apply(io: Any, name: str, *, run_id: str = "run00001", attempt: int = 0) -> dict[str, Any]:
    window, span = WINDOWS[name]
    return write(
        io, changes(window, window=span, partition=f"2026-12-01T0{name[-1]}0000Z-cdc"), run_id=run_id, attempt=attempt
    )


def start(io: Any, cdc_start: int = 0x10) -> None:
    write(io, snapshot(orders(BASE), SNAPSHOT_1, cdc_start=cdc_start))


def test_windows_applied_in_order_give_the_source_table(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    start(io)
    assert control_row(snowflake_schema)["NEXT_LSN"] == lsn(0x10)  # the snapshot set the start, in its transaction
    first = apply(io, "c1")
    assert first["load"] == "changes" and first["dagster/row_count"] == len(W1)
    assert first["dtaas/cdc_from_lsn"] == lsn(0x10) and first["dtaas/cdc_to_lsn"] == lsn(0x1F)
    assert first["dtaas/next_lsn"] == lsn(0x20) and first["dtaas/kind"] == "cdc"
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1)
    apply(io, "c2")
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1, W2)
    apply(io, "c3")
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1, W2, W3)
    state = control_row(snowflake_schema)
    assert state["APPLIED_LSN"] == lsn(0x3F) and state["NEXT_LSN"] == lsn(0x40)
    assert (
        snowflake_schema.tables() == ["ORDERS", "_DTAAS_STATE", "_DTAAS_STATE_LOADS"]
        and snowflake_schema.stage_files() == []
    )


def test_old_windows_replayed_out_of_order_change_nothing(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    start(io)
    for name in ("c1", "c2", "c3"):
        apply(io, name)
    final = replay(BASE, W1, W2, W3)
    for name in ("c2", "c1", "c3"):  # re-executions, newest-first and oldest last
        metadata = apply(io, name, run_id=f"rerun{name}")
        assert "at or below the applied LSN" in metadata["skipped"]
        assert rows(read(io, snowflake_schema)) == final
    # key 2 (deleted in c2) and key 5 (deleted in c3) were updated by older windows: not resurrected
    assert {r[0] for r in rows(read(io, snowflake_schema))} == {1, 3, 6}
    assert control_row(snowflake_schema)["NEXT_LSN"] == lsn(0x40)


def test_a_window_already_applied_is_not_held_to_the_newer_columns(snowflake_schema: SnowflakeSchema) -> None:
    """schema_drift: fail stops a load whose columns differ, but a replayed old window loads nothing."""
    io = manager(snowflake_schema, task={"schema_drift": "fail"})
    start(io)
    apply(io, "c1")
    snowflake_schema.query('ALTER TABLE "ORDERS" ADD COLUMN "EXTRA" VARCHAR')  # a later load's new column
    before = rows(read(io, snowflake_schema))
    metadata = apply(io, "c1", run_id="rerunc1")
    assert "at or below the applied LSN" in metadata["skipped"] and metadata["dagster/row_count"] == len(W1)
    assert rows(read(io, snowflake_schema)) == before
    with pytest.raises(Exception, match="EXTRA"):  # a window that applies is held to the policy
        apply(io, "c2")


def test_a_window_that_leaves_a_gap_is_refused_naming_both_lsns(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    start(io)
    apply(io, "c1")
    with pytest.raises(WindowGapError) as info:
        apply(io, "c3")
    assert lsn(0x30) in str(info.value) and lsn(0x20) in str(info.value) and lsn(0x1F) in str(info.value)
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1)
    apply(io, "c2")
    apply(io, "c3")  # in order now
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1, W2, W3)


def test_a_window_overlapping_the_snapshot_applies_only_the_changes_after_its_start(
    snowflake_schema: SnowflakeSchema,
) -> None:
    io = manager(snowflake_schema)
    # the snapshot already holds window 1's first changes (up to LSN 0x11); CDC continues at 0x12
    seen = replay(BASE, W1[:3])
    write(io, snapshot(orders(seen), SNAPSHOT_1, cdc_start=0x12))
    apply(io, "c1")
    assert rows(read(io, snowflake_schema)) == replay(seen, W1, start=0x12) == replay(BASE, W1)
    metadata = apply(io, "c1", run_id="again")
    assert metadata.get("skipped")


def test_a_failure_after_copy_and_before_the_merge_applies_nothing(
    fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema
) -> None:
    io = manager(snowflake_schema)
    start(io)
    apply(io, "c1")
    before = control_row(snowflake_schema)
    # the last statement that changes the table (the MERGE, or delete_insert's INSERT after its DELETE)
    fakesnow.set_faults({"match": r'^(MERGE|INSERT) INTO ".*"\."ORDERS"', "action": "error", "times": 1})
    with pytest.raises(SnowflakeStatementError, match="MERGE_CHANGES|INSERT_CHANGED"):
        apply(io, "c2", run_id="run00002")
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1)
    assert control_row(snowflake_schema) == before
    apply(io, "c2", run_id="run00002", attempt=1)  # the step's retry
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1, W2)


def test_a_step_retry_applies_a_window_once(fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    start(io)
    # attempt 0 fails at COMMIT: nothing is applied, the retry applies the window
    fakesnow.set_faults({"match": r"^COMMIT$", "action": "error", "times": 1})
    with pytest.raises(SnowflakeStatementError, match="COMMIT"):
        apply(io, "c1")
    assert rows(read(io, snowflake_schema)) == sorted(BASE)
    apply(io, "c1", attempt=1)
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1)
    # a retry after a commit whose success Dagster never recorded (the process died): skipped
    retried = apply(io, "c1", attempt=2)
    assert retried["skipped"] and rows(read(io, snowflake_schema)) == replay(BASE, W1)


def test_soft_deletes_flag_rows_and_a_reinsert_clears_the_flag(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema, delete_mode="soft")
    start(io)
    for name in ("c1", "c2", "c3"):
        apply(io, name)
    table = read(io, snowflake_schema)
    by_key = {r["id"]: r for r in table.to_pylist()}
    live = replay(BASE, W1, W2, W3)
    assert sorted((k, r["name"], r["qty"]) for k, r in by_key.items() if not r["_dtaas_deleted"]) == live
    deleted = {k: r["_dtaas_deleted_at"] for k, r in by_key.items() if r["_dtaas_deleted"]}
    # 2 (c2), 4 (the key update), 5 (c3) are kept as deleted, stamped with the delete's commit time;
    # 3 was deleted in c1 and inserted again in c2; 7 never reached Snowflake
    assert set(deleted) == {2, 4, 5}
    assert deleted[5] == EPOCH + dt.timedelta(seconds=0x33)
    assert by_key[3]["_dtaas_deleted"] is False
    # (in SQL: fakesnow reads a NULL timestamp back as 1970-01-01, docs/snowflake.md#fakesnow)
    cleared = snowflake_schema.query('SELECT COUNT(*) FROM "ORDERS" WHERE "ID" = 3 AND "_DTAAS_DELETED_AT" IS NULL')
    assert cleared == [(1,)]


def test_a_cdc_task_without_snapshot_creates_the_table_from_its_first_window(
    snowflake_schema: SnowflakeSchema,
) -> None:
    io = manager(snowflake_schema)
    first = apply(io, "c1")
    assert first["table_created"] is True
    assert rows(read(io, snowflake_schema)) == replay([], W1)
    apply(io, "c2")
    assert rows(read(io, snowflake_schema)) == replay([], W1, W2)
    keys = snowflake_schema.query(f'SHOW PRIMARY KEYS IN TABLE "{snowflake_schema.schema}"."ORDERS"')
    assert [k[4] for k in keys if k[2] == snowflake_schema.schema] == ["ID"]


def test_the_merge_statement_gives_the_same_table(snowflake_schema: SnowflakeSchema) -> None:
    """The real path's MERGE text, run on its own (fakesnow can run it outside a transaction only)."""
    from dtaas_dagster.destinations.snowflake import sql
    from dtaas_dagster.destinations.snowflake.names import TableName

    io = manager(snowflake_schema)
    start(io)
    staging = TableName(snowflake_schema.database, snowflake_schema.schema, "CHANGES")
    snowflake_schema.query(
        f'CREATE TABLE {staging.sql} ("ID" NUMBER(10,0), "NAME" VARCHAR, "QTY" NUMBER(10,0), '
        '"_DTAAS_OP" VARCHAR, "_DTAAS_LSN" VARCHAR, "_DTAAS_SEQVAL" VARCHAR, '
        '"_DTAAS_COMMIT_TIME" TIMESTAMP_TZ(9))'
    )
    for op, at, seq, key, name, qty in W1 + W2:
        snowflake_schema.query(
            f"INSERT INTO {staging.sql} VALUES (?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP())",
            (key, name, qty, op, lsn(at), lsn(seq)),
        )
    target = staging.sibling("ORDERS")
    merge = sql.merge_changes(target, staging, ["ID", "NAME", "QTY"], ["ID"], soft_delete=False)
    snowflake_schema.query(merge.sql, (lsn(0x10),))
    assert rows(read(io, snowflake_schema)) == replay(BASE, W1, W2)


def test_changes_without_a_primary_key_are_refused_before_anything_is_staged(
    snowflake_schema: SnowflakeSchema,
) -> None:
    import dataclasses

    from dtaas_dagster.table_load import PermanentLoadError

    io = manager(snowflake_schema)
    window, span = WINDOWS["c1"]
    keyless = dataclasses.replace(changes(window, window=span, partition="p1"), primary_key=())
    with pytest.raises(PermanentLoadError, match="needs the primary key"):
        write(io, keyless)
    assert "ORDERS" not in snowflake_schema.tables()
