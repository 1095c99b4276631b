"""Bulk reads through arrow-odbc, checked for completeness.

arrow-odbc 10.6 over Driver 18 ends a result *without an error* when the
connection drops mid-result (measured: 6,500 of 10,000 rows came back). So
every bulk batch ends with ``SELECT ROWCOUNT_BIG()`` (see
:func:`dtaas_dagster.sqlserver.queries.counted_batch`), and :func:`read_counted`
compares what SQL Server says it sent with what arrived. Snapshot and CDC reads
both go through here.

Memory
------
arrow-odbc fetches into a *transit buffer* sized rows x the widest possible
row, whatever the data: a ``(max)`` column whose longest value is 1 MB makes
every row slot that wide. Asked for 50,000 rows it would allocate gigabytes, so
the buffer is bounded by bytes (:data:`TRANSIT_BUFFER_BYTES`, at least one row)
and holds as many rows as fit. The batches handed on are then rebuilt from
what actually arrived (:func:`rebatch`): ``batch.rows`` rows, but never more
than :data:`MAX_BATCH_BYTES` of Arrow data (wide rows), or with ``batch.mb``
that many megabytes of Arrow data, whatever the buffer held. So memory follows
the data, and one huge value costs about its own size, not rows x its size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from dtaas_dagster.stream import SourceCount

MB = 1024 * 1024
# arrow-odbc's transit buffer for one read (raised to hold at least one of the widest rows).
TRANSIT_BUFFER_BYTES = 32 * MB
# In batch.rows mode, a batch still stops at this much Arrow data (wide rows, long (max) values):
# with the read-ahead queue, the converting and the writing batch, about five are alive at once.
MAX_BATCH_BYTES = 8 * MB


# arrow-odbc allocates the buffers of a whole batch before the first row arrives:
# about 30 ms of CPU for 50,000 rows of five columns, 6 ms for 10,000 (measured,
# bench/RESULTS.md "many tables"), more than reading a table of 1,000 rows costs.
MIN_BATCH_ROWS = 10_000


def batch_rows_for(configured: int | None, row_estimate: int | None) -> int | None:
    """Rows per fetched batch: the configured size (None: sized by bytes), but no more than the
    table's row estimate needs (with 10% headroom, at least MIN_BATCH_ROWS). A stale
    estimate only means more, smaller batches: the read and its files stay the same."""
    if row_estimate is None:
        return configured
    fitting = max(MIN_BATCH_ROWS, row_estimate + row_estimate // 10)
    return fitting if configured is None else min(configured, fitting)


class IncompleteRead(RuntimeError):
    """The result ended before SQL Server said it had sent every row (a dropped connection)."""


@dataclass(frozen=True)
class BulkRead:
    """One arrow-odbc read: the batch text, the fetch schema and the buffer bounds."""

    sql: str
    fetch_schema: pa.Schema
    what: str
    max_text_size: int | None = None
    max_binary_size: int | None = None
    parameters: tuple[str | None, ...] = ()
    # bound on one row in the transit buffer; 0 = unknown: then the budget alone decides, and a
    # row wider than TRANSIT_BUFFER_BYTES (long (max) values) fails in arrow-odbc
    row_bytes: int = 0


def read_counted(
    read: BulkRead,
    *,
    connection_string: str,
    password: str,
    login_timeout_seconds: int,
    query_timeout_seconds: int | None,
    batch_rows: int | None,
    batch_mb: float | None,
    count: SourceCount | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the fetched batches of ``read.sql``, then check the row count SQL Server reported
    (recorded in ``count`` when given: the ``row_count`` asset check reports it)."""
    from arrow_odbc import read_arrow_batches_from_odbc

    target_bytes = int(batch_mb * MB) if batch_mb else None
    transit = min(TRANSIT_BUFFER_BYTES, target_bytes or TRANSIT_BUFFER_BYTES)
    reader = read_arrow_batches_from_odbc(
        query=read.sql,
        connection_string=connection_string,
        password=password,
        parameters=list(read.parameters) or None,
        batch_size=(batch_rows if not batch_mb else None) or 1_000_000,
        max_bytes_per_batch=max(transit, read.row_bytes),
        max_text_size=read.max_text_size,
        max_binary_size=read.max_binary_size,
        login_timeout_sec=login_timeout_seconds,
        query_timeout_sec=query_timeout_seconds,
        schema=read.fetch_schema,
        # one transit buffer: our own read-ahead thread (prefetch.py) already overlaps
        # fetching with writing, and a second buffer would double the memory
        fetch_concurrently=False,
    )
    tally = count if count is not None else SourceCount()

    def fetched() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            tally.received += batch.num_rows
            yield batch

    if batch_mb:
        yield from rebatch(fetched(), max_rows=None, max_bytes=target_bytes)
    else:
        yield from rebatch(fetched(), max_rows=batch_rows, max_bytes=MAX_BATCH_BYTES)
    tally.sent = check_complete(reader, tally.received, what=read.what)


def rebatch(
    batches: Iterator[pa.RecordBatch], *, max_rows: int | None, max_bytes: int | None
) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of ``max_rows`` rows or ``max_bytes`` of Arrow data.

    Whichever limit comes first ends a batch; only the last one is smaller. A batch
    that already has the right size passes unchanged (no copy); pieces are joined
    with one copy. A row larger than ``max_bytes`` makes a batch of its own.
    """
    pending: list[pa.RecordBatch] = []  # joined pieces, then the pieces since the last join
    joined = rows = size = 0
    for batch in batches:
        # the buffers' size: as exact as .nbytes for a fetched batch, and 25x cheaper (9 vs 250 us),
        # which counts with thousands of small batches; for a slice it errs on the large side
        nbytes = batch.get_total_buffer_size()
        while batch.num_rows:
            per_row = nbytes / batch.num_rows
            take = batch.num_rows if max_rows is None else min(batch.num_rows, max_rows - rows)
            if max_bytes is not None and per_row:
                fits = int((max_bytes - size) / per_row)
                if fits == 0 and pending:  # not one more row: end this batch first
                    yield _joined(pending)
                    pending, joined, rows, size = [], 0, 0, 0
                    continue
                take = max(1, min(take, fits))
            if take < batch.num_rows:
                piece, batch = batch.slice(0, take), batch.slice(take)
                piece_bytes, nbytes = piece.nbytes, batch.nbytes  # slices: the referenced bytes
            else:
                piece, piece_bytes, batch = batch, nbytes, batch.slice(0, 0)
            pending.append(piece)
            rows, size = rows + piece.num_rows, size + piece_bytes
            rows_full = max_rows is not None and rows >= max_rows
            if rows_full or (max_bytes is not None and size + per_row > max_bytes):
                yield _joined(pending)
                pending, joined, rows, size = [], 0, 0, 0
            elif len(pending) - joined >= _COMPACT_PIECES:
                pending[joined:] = [_joined(pending[joined:])]
                joined += 1
    if pending:
        yield _joined(pending)


# Many small fetched batches (a (max) column makes the transit buffer hold few rows) are
# joined as they come: thousands of small buffers cost far more memory than their data.
_COMPACT_PIECES = 64


def _joined(pieces: list[pa.RecordBatch]) -> pa.RecordBatch:
    return pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)


def check_complete(reader: object, received: int, *, what: str) -> int:
    """Compare the rows received with ROWCOUNT_BIG() from the same batch; raise when they differ.

    When the connection drops mid-result, the count's result set never arrives,
    so ``more_results()`` is False (or raises): that is an incomplete read too.
    Returns the count SQL Server reported.
    """
    try:
        has_count = reader.more_results(batch_size=1)  # type: ignore[attr-defined]
        counts = [row for batch in reader for row in batch.column(0).to_pylist()] if has_count else []  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any failure here means the batch did not finish
        raise IncompleteRead(
            f"reading {what} stopped after {received:,} rows: the connection ended before SQL Server "
            f"finished the result ({exc}); the load will be retried"
        ) from None
    if not counts:
        raise IncompleteRead(
            f"reading {what} stopped after {received:,} rows: the connection ended before SQL Server "
            "finished the result; the load will be retried"
        )
    if int(counts[0]) != received:
        raise IncompleteRead(
            f"reading {what}: received {received:,} rows but SQL Server sent {int(counts[0]):,}; "
            "the load will be retried"
        )
    return int(counts[0])
