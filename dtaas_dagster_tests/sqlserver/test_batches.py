"""Batch sizes: rows, megabytes of Arrow data, and (max) columns that must not size the buffers.

``rebatch`` is a pure function (unit tests); the reads go through arrow-odbc against the
SQL Server fixture, where arrow-odbc's transit buffer counts capacity (rows x the widest
possible row), not data.
"""

from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.sqlserver.bulk import MAX_BATCH_BYTES, MB, TRANSIT_BUFFER_BYTES, rebatch
from dtaas_dagster.sqlserver.snapshot import SnapshotOptions, snapshot_read
from dtaas_dagster_tests.sqlserver.test_resource import plan_for, resource_for


def _batches(rows_per_batch: list[int], width: int = 100) -> list[pa.RecordBatch]:
    start, out = 0, []
    for rows in rows_per_batch:
        ids = pa.array(range(start, start + rows), pa.int64())
        out.append(pa.record_batch({"id": ids, "text": pa.array(["x" * width] * rows)}))
        start += rows
    return out


def test_rebatch_cuts_and_joins_to_the_row_count() -> None:
    out = list(rebatch(iter(_batches([7, 7, 7, 2])), max_rows=5, max_bytes=None))
    assert [b.num_rows for b in out] == [5, 5, 5, 5, 3]
    assert pa.Table.from_batches(out).column("id").to_pylist() == list(range(23))


def test_rebatch_passes_a_batch_of_the_right_size_through_without_a_copy() -> None:
    [batch] = _batches([50])
    [out] = rebatch(iter([batch]), max_rows=50, max_bytes=MAX_BATCH_BYTES)
    assert out is batch


def test_rebatch_by_bytes_gives_batches_within_a_quarter_of_the_target() -> None:
    source = _batches([37] * 300, width=1000)  # ~1 KB rows in many small pieces
    target = 100_000
    out = list(rebatch(iter(source), max_rows=None, max_bytes=target))
    sizes = [b.nbytes / target for b in out]
    assert all(0.75 <= size <= 1.0 for size in sizes[:-1]) and sizes[-1] <= 1.0, sizes
    assert sum(b.num_rows for b in out) == 37 * 300


def test_a_row_larger_than_the_byte_limit_is_a_batch_of_its_own() -> None:
    small, huge, rest = _batches([3], 10)[0], _batches([1], 5000)[0], _batches([3], 10)[0]
    out = list(rebatch(iter([small, huge, rest]), max_rows=1000, max_bytes=2000))
    assert [b.num_rows for b in out] == [3, 1, 3]


def _seed_notes(sqlserver_db: Any, rows: int, longest: int) -> None:
    notes = ["n" * (i % 50) for i in range(rows)]
    notes[rows // 2] = "é" * longest
    sqlserver_db.seed_table(
        "dbo",
        "notes",
        pa.table(
            {
                "id": pa.array(range(rows), pa.int32()),
                "code": pa.array([f"C{i:07d}" for i in range(rows)]),
                "note": pa.array(notes),
            }
        ),
        columns={"id": "int", "code": "varchar(400)", "note": "nvarchar(max)"},
        primary_key=["id"],
    )


def test_batch_mb_counts_arrow_data_not_buffer_capacity(sqlserver: Any, sqlserver_db: Any) -> None:
    # varchar(400) holding 8 characters: the buffer reserves 1,600 bytes a row for ~12 of data,
    # so batches cut by buffer capacity held about a hundredth of the megabytes asked for.
    _seed_notes(sqlserver_db, 60_000, 10)
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    plan = plan_for(resource, "notes", SnapshotOptions(columns=("id", "code")))
    batches = list(resource.read_arrow(snapshot_read(plan), batch_rows=None, batch_mb=0.25))

    sizes = [b.nbytes / (0.25 * MB) for b in batches]
    assert len(sizes) >= 3 and all(0.75 <= size <= 1.0 for size in sizes[:-1]), sizes
    assert sum(b.num_rows for b in batches) == 60_000


def test_a_long_max_value_does_not_size_every_row_of_the_buffer(sqlserver: Any, sqlserver_db: Any) -> None:
    _seed_notes(sqlserver_db, 3_000, 400_000)  # one value of 800 KB (UTF-16), 1.2 MB as UTF-8 at most
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    plan = plan_for(resource, "notes", SnapshotOptions())
    assert plan.max_text_size == 1_200_000  # nvarchar: 1.5 UTF-8 bytes per UTF-16 byte, not 3
    read = snapshot_read(plan)
    assert TRANSIT_BUFFER_BYTES < 50_000 * read.row_bytes  # 50,000 such rows would not fit

    batches = list(resource.read_arrow(read, batch_rows=50_000))
    assert [b.num_rows for b in batches] == [3_000]  # the rows still arrive as one batch of real data
    assert pa.Table.from_batches(batches).column("note").to_pylist()[1_500] == "é" * 400_000


@pytest.mark.parametrize("driver", ["msodbc18", "freetds"])
def test_every_row_arrives_when_the_buffer_holds_few_rows(driver: str, sqlserver: Any, sqlserver_db: Any) -> None:
    _seed_notes(sqlserver_db, 500, 4_000_000)  # 12 MB a row slot: two rows per transit buffer
    resource = resource_for(sqlserver, sqlserver_db.name, driver)
    plan = plan_for(resource, "notes", SnapshotOptions())
    table = pa.Table.from_batches(list(resource.read_arrow(snapshot_read(plan), batch_rows=50_000)))
    assert table.num_rows == 500 and table.column("id").to_pylist() == list(range(500))
    assert len(table.column("note")[250].as_py()) == 4_000_000
