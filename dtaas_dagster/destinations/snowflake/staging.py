"""Stage one stream: Parquet files PUT to the load's own stage path, then COPY INTO a staging table.

The staging table is TRANSIENT (no Fail-safe storage for throw-away rows)
and named after the target and the load (``_DTAAS_STG_<table>_<hash>_<load>``);
the stage path is ``<table>_<hash>/<load>/``. Both are unique to one attempt
of one load, so a retry never sees another attempt's files, and the next load
of the same table can tell left-overs from its own.

COPY's result is checked row by row: every file LOADED and the rows loaded
equal to the rows written, the same completeness rule as the SQL Server reads.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from dtaas_dagster.destinations.snowflake import sql
from dtaas_dagster.destinations.snowflake.names import TableName
from dtaas_dagster.destinations.snowflake.session import Session
from dtaas_dagster.destinations.snowflake.spool import Column, ParquetSpool
from dtaas_dagster.destinations.snowflake.types import SnowflakeType


class IncompleteCopyError(RuntimeError):
    """COPY INTO did not load every row that was staged."""


@dataclass
class Staged:
    """What staging one stream did."""

    table: TableName
    path: str
    rows: int = 0
    files: int = 0
    bytes: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"put_s": 0.0, "copy_s": 0.0})


def _check_batches(batches: Iterator[pa.RecordBatch], schema: pa.Schema, what: str) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if not batch.num_rows:
            continue
        if not batch.schema.equals(schema, check_metadata=False):
            raise ValueError(
                f"a batch of {what} does not match the stream schema; expected {schema}, got {batch.schema}"
            )
        yield batch


def stage_stream(
    session: Session,
    batches: Iterator[pa.RecordBatch],
    *,
    stream_schema: pa.Schema,
    columns: Sequence[Column],
    column_types: Sequence[tuple[str, SnowflakeType]],
    staging: TableName,
    stage: TableName,
    path: str,
    max_rows: int | None,
    max_bytes: int | None,
    work_dir: str | None,
    log: logging.Logger,
) -> Staged:
    """Create the staging table, PUT the stream as Parquet files, COPY them in; return the counts."""
    session.run(sql.create_table(staging, column_types, transient=True))
    staged = Staged(staging, path)
    directory = tempfile.mkdtemp(prefix="dtaas-sf-", dir=work_dir)
    try:
        spool = ParquetSpool(directory, columns, max_rows=max_rows, max_bytes=max_bytes)
        for spooled in spool.files(_check_batches(batches, stream_schema, staging.display)):
            started = time.monotonic()
            session.run(sql.put_file(spooled.path, stage, path))
            staged.seconds["put_s"] += time.monotonic() - started
            os.remove(spooled.path)
            staged.rows += spooled.rows
            staged.files += 1
            staged.bytes += spooled.bytes
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if staged.files:
        started = time.monotonic()
        _check_copy(session.run(sql.copy_into(staging, stage, path)), staged)
        staged.seconds["copy_s"] = time.monotonic() - started
    log.info(
        f"{staging.display}: staged {staged.rows:,} rows in {staged.files} file(s), {staged.bytes:,} bytes "
        f"(PUT {staged.seconds['put_s']:.1f}s, COPY {staged.seconds['copy_s']:.1f}s)"
    )
    return staged


def _check_copy(cursor: object, staged: Staged) -> None:
    names = [d[0].lower() for d in cursor.description]  # type: ignore[attr-defined]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]  # type: ignore[attr-defined]
    problems = [
        f"{r.get('file')}: {r.get('status')} {r.get('first_error') or ''}".strip()
        for r in rows
        if str(r.get("status", "")).upper() != "LOADED"
    ]
    loaded = sum(int(r.get("rows_loaded") or 0) for r in rows)
    if problems or len(rows) != staged.files or loaded != staged.rows:
        raise IncompleteCopyError(
            f"COPY INTO {staged.table.display} loaded {loaded:,} of {staged.rows:,} rows from {len(rows)} of "
            f"{staged.files} files"
            + (f" ({'; '.join(problems)})" if problems else "")
            + "; nothing was replaced or merged. The retry stages the load again."
        )
