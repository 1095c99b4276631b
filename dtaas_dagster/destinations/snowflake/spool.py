"""Batches -> local Parquet files, one at a time, for PUT: the only data that touches the local disk.

Memory stays bounded: a file is written row group by row group and handed to
the caller as soon as it is closed (the caller PUTs it and deletes it), so at
most one file of ``max_rows`` rows / ``max_bytes`` bytes is on disk and one
row group is in memory. Columns are renamed to their Snowflake names and cast
to their Parquet types (:func:`types.parquet_type`) on the way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from dtaas_dagster.destinations.snowflake.types import parquet_type


@dataclass(frozen=True)
class Column:
    """One column of a load: where it comes from in the stream and what it is called in Snowflake."""

    source: str
    target: str
    arrow_type: pa.DataType


@dataclass(frozen=True)
class SpooledFile:
    path: str
    name: str
    rows: int
    bytes: int


def file_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.target, parquet_type(c.arrow_type)) for c in columns])


def prepare(batch: pa.RecordBatch, columns: Sequence[Column], schema: pa.Schema) -> pa.RecordBatch:
    """The batch's loaded columns, renamed and cast for the Parquet file."""
    arrays = []
    for column, target_field in zip(columns, schema, strict=True):
        array = batch.column(batch.schema.get_field_index(column.source))
        arrays.append(array if array.type == target_field.type else array.cast(target_field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class ParquetSpool:
    """Splits a batch stream into Parquet files in ``directory``."""

    def __init__(
        self,
        directory: str,
        columns: Sequence[Column],
        *,
        max_rows: int | None,
        max_bytes: int | None,
        row_group_rows: int = 128 * 1024,
    ) -> None:
        self.directory = directory
        self.columns = tuple(columns)
        self.schema = file_schema(columns)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.row_group_rows = row_group_rows
        self.rows = 0

    def _writer(self, path: str) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            path,
            self.schema,
            compression="snappy",
            version="2.6",  # keeps timestamp[ns] as nanoseconds
            coerce_timestamps=None,
            use_deprecated_int96_timestamps=False,
            use_dictionary=[f.name for f in self.schema if pa.types.is_string(f.type)],
        )

    def files(self, batches: Iterator[pa.RecordBatch]) -> Iterator[SpooledFile]:
        """Yield each file once it is closed; the caller owns (and deletes) it."""
        number, writer, path, rows_in_file = 0, None, "", 0
        pending: list[pa.RecordBatch] = []
        pending_rows = 0

        def flush(final: bool) -> None:
            nonlocal pending, pending_rows
            if pending_rows and writer is not None:
                table = pa.Table.from_batches(pending, self.schema)
                size = self.row_group_rows
                cut = table.num_rows if final else (table.num_rows // size) * size
                if cut:
                    writer.write_table(table.slice(0, cut), row_group_size=size)
                rest = table.slice(cut)
                pending, pending_rows = rest.to_batches(), rest.num_rows

        try:
            for batch in batches:
                offset = 0
                while offset < batch.num_rows:
                    if writer is None:
                        number += 1
                        name = f"part-{number:05d}.parquet"
                        path = os.path.join(self.directory, name)
                        writer, rows_in_file = self._writer(path), 0
                    take = batch.num_rows - offset
                    if self.max_rows is not None:
                        take = min(take, self.max_rows - rows_in_file)
                    piece = prepare(batch.slice(offset, take), self.columns, self.schema)
                    pending.append(piece)
                    pending_rows += piece.num_rows
                    rows_in_file += piece.num_rows
                    offset += take
                    if pending_rows >= self.row_group_rows:
                        flush(final=False)
                    full_rows = self.max_rows is not None and rows_in_file >= self.max_rows
                    full_bytes = (
                        self.max_bytes is not None and _size(path) + sum(b.nbytes for b in pending) >= self.max_bytes
                    )
                    if full_rows or full_bytes:
                        flush(final=True)
                        writer.close()
                        writer = None
                        self.rows += rows_in_file
                        yield SpooledFile(path, os.path.basename(path), rows_in_file, _size(path))
            if writer is not None:
                flush(final=True)
                writer.close()
                writer = None
                self.rows += rows_in_file
                yield SpooledFile(path, os.path.basename(path), rows_in_file, _size(path))
        finally:
            if writer is not None:  # the caller stopped early or a batch failed
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - the file is deleted with the directory
                    pass


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
