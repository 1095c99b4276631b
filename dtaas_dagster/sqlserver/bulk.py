"""Bulk reads through arrow-odbc, checked for completeness.

arrow-odbc 10.6 over Driver 18 ends a result *without an error* when the
connection drops mid-result (measured: 6,500 of 10,000 rows came back). So
every bulk batch ends with ``SELECT ROWCOUNT_BIG()`` (see
:func:`dtaas_dagster.sqlserver.queries.counted_batch`), and :func:`read_counted`
compares what SQL Server says it sent with what arrived. Snapshot and CDC reads
both go through here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from dtaas_dagster.stream import SourceCount


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

    reader = read_arrow_batches_from_odbc(
        query=read.sql,
        connection_string=connection_string,
        password=password,
        parameters=list(read.parameters) or None,
        batch_size=batch_rows or 1_000_000,
        max_bytes_per_batch=int(batch_mb * 1024 * 1024) if batch_mb else 512 * 1024 * 1024,
        max_text_size=read.max_text_size,
        max_binary_size=read.max_binary_size,
        login_timeout_sec=login_timeout_seconds,
        query_timeout_sec=query_timeout_seconds,
        schema=read.fetch_schema,
    )
    count = count if count is not None else SourceCount()
    for batch in reader:
        count.received += batch.num_rows
        yield batch
    count.sent = check_complete(reader, count.received, what=read.what)


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
