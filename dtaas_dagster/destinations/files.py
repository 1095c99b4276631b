"""Partition files on S3 or a local directory: format writers, the splitter, readers.

No Dagster here: :mod:`dtaas_dagster.destinations.s3` wraps this in an IO manager.

How a partition is committed exactly once (leases, the manifest written last,
verification, cleanup) is in :mod:`dtaas_dagster.destinations.commit`; this
module writes and reads the files. Part files are named
``part-<load_id>-<nnnnn>.<ext>[.gz|.zst]``; ``load_id`` is unique per attempt.

CSV and JSON lines are encoded and decoded by :mod:`dtaas_dagster.destinations.text_formats`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dtaas_dagster.destinations.text_formats import (
    csv_encode_batch,
    decode_text_column,
    jsonl_encode_batch,
    read_csv_bytes,
    read_jsonl_bytes,
)
from dtaas_dagster.manifest import (
    manifest_schema,
    read_manifest,
)
from dtaas_dagster.stream import TableStream

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv", "jsonl")
COMPRESSIONS = ("none", "snappy", "gzip", "zstd")
_SUFFIX = {"gzip": ".gz", "zstd": ".zst"}
PART_PREFIX = "part-"
_PART_NAME = re.compile(r"^part-(.+)-\d{5}\.")
# A Parquet row group is written once this much Arrow data is pending, even before
# row_group_rows rows: wide rows must not hold a whole row group of them in memory.
_ROW_GROUP_MAX_BYTES = 16 * 1024 * 1024


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class WriteOptions:
    """How to write files. ``compression=None`` means the format default."""

    format: str = "parquet"
    compression: str | None = None
    file_max_rows: int | None = 1_000_000
    file_max_bytes: int | None = None
    row_group_rows: int = 128 * 1024

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise ValueError(f"compression {self.compression!r} is not one of {', '.join(COMPRESSIONS)}")
        if self.format != "parquet" and self.compression == "snappy":
            raise ValueError(f"compression 'snappy' is for parquet only; for {self.format} use gzip, zstd or none")
        for name in ("file_max_rows", "file_max_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or unset, got {value}")
        if self.row_group_rows <= 0:
            raise ValueError(f"row_group_rows must be positive, got {self.row_group_rows}")

    @property
    def codec(self) -> str:
        if self.compression is None:
            return "snappy" if self.format == "parquet" else "none"
        return self.compression

    def file_name(self, load_id: str, number: int) -> str:
        ext = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}[self.format]
        suffix = "" if self.format == "parquet" else _SUFFIX.get(self.codec, "")
        return f"{PART_PREFIX}{load_id}-{number:05d}{ext}{suffix}"


def new_load_id(run_id: str, attempt: int = 0) -> str:
    """Unique per attempt: run id prefix, attempt number and a short random part."""
    prefix = re.sub(r"[^A-Za-z0-9]", "", run_id)[:8] or "run"
    return f"{prefix}-a{attempt}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- format writers


def _codec_or_none(codec: str) -> str | None:
    return None if codec == "none" else codec


class _PartFile:
    """One data file being written; subclasses know the format."""

    def __init__(self, fs: pafs.FileSystem, path: str, schema: pa.Schema, options: WriteOptions) -> None:
        self.path = path
        self.rows = 0
        self.arrow_bytes = 0  # Arrow bytes handed to this file
        self._options = options
        self._raw = fs.open_output_stream(path, compression=None)
        self._closed = False

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self.arrow_bytes += batch.nbytes
        self._write(batch)

    def estimated_bytes(self, ratio: float | None) -> float:
        """Bytes the file will have for what it was given so far (``ratio``: file bytes per Arrow byte)."""
        return self._raw.tell()

    def ratio(self) -> float | None:
        """File bytes per Arrow byte of the data already in the file (None until some reached it)."""
        written = self._raw.tell()
        return written / self.arrow_bytes if written and self.arrow_bytes else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()
            if not self._raw.closed:
                self._raw.close()

    def abandon(self) -> None:
        """Close without caring about errors: the file is about to be deleted."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - already failing; the caller re-raises the first error
            log.debug("closing abandoned file %s failed", self.path, exc_info=True)

    def _write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class _ParquetPart(_PartFile):
    """Buffers batches into row groups of ``row_group_rows`` rows (the last one smaller), or fewer
    when the pending Arrow data reaches :meth:`_row_group_bytes`.

    Columns in ``no_statistics`` (long values: ``(max)``, ``text``, ``image``) get no min/max
    statistics: Parquet drops statistics over 4 KB from the file anyway, and computing them
    holds two more copies of the longest value (measured: 117 MB more for one 52 MB value).
    Columns in ``no_dictionary`` (a distinct value for nearly every row, such as ``_dtaas_seqval``) get no dictionary:
    it would hold every value once more (measured on a change file: 26% slower and 9% larger).
    """

    def __init__(
        self, fs: pafs.FileSystem, path: str, schema: pa.Schema, options: WriteOptions,
        no_statistics: Collection[str] = (), no_dictionary: Collection[str] = (),
    ) -> None:  # fmt: skip
        super().__init__(fs, path, schema, options)
        self._schema = schema
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._flushed_bytes = 0  # Arrow bytes already encoded into the file
        self._writer = pq.ParquetWriter(
            self._raw,
            schema,
            compression=_codec_or_none(options.codec) or "none",
            version="2.6",  # keeps timestamp[ns] as ns
            coerce_timestamps=None,  # keep each column's unit exactly
            use_deprecated_int96_timestamps=False,
            write_statistics=[f.name for f in schema if f.name not in no_statistics] if no_statistics else True,
            # Dictionary pages pay off for text (codes, statuses, names) and cost a lot of
            # CPU for numbers, dates and ids (measured: 1.17 s vs 0.77 s per 1M x 10 rows).
            # Not for long values either: they rarely repeat, and the dictionary would copy them.
            use_dictionary=[
                f.name
                for f in schema
                if pa.types.is_string(f.type) and f.name not in no_statistics and f.name not in no_dictionary
            ],
        )

    def _write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        size = self._options.row_group_rows
        if self._pending_rows >= size:
            table = pa.Table.from_batches(self._pending, self._schema)
            full = (table.num_rows // size) * size
            self._flush(table.slice(0, full))
            rest = table.slice(full)
            self._pending = rest.to_batches()
            self._pending_rows = rest.num_rows
            self._pending_bytes = rest.nbytes
        if self._pending_bytes >= self._row_group_bytes():
            self._flush(pa.Table.from_batches(self._pending, self._schema))
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def _row_group_bytes(self) -> float:
        """Pending Arrow bytes that end a row group early: wide rows, and a quarter of a byte-limited
        file (so the file's compression ratio is known long before it is full)."""
        limit: float = _ROW_GROUP_MAX_BYTES
        if self._options.file_max_bytes is not None:
            limit = min(limit, self._options.file_max_bytes / 4 / (self.ratio() or 1.0))
        return limit

    def _flush(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table, row_group_size=self._options.row_group_rows)
            self._flushed_bytes += table.nbytes

    def ratio(self) -> float | None:
        written = self._raw.tell()
        return written / self._flushed_bytes if written and self._flushed_bytes else None

    def estimated_bytes(self, ratio: float | None) -> float:
        # pending data is not encoded yet: count it at the ratio seen so far (1.0 before any)
        return self._raw.tell() + self._pending_bytes * (self.ratio() or ratio or 1.0)

    def _close(self) -> None:
        self._flush(pa.Table.from_batches(self._pending, self._schema))
        self._pending = []
        self._writer.close()


class _TextPart(_PartFile):
    """CSV and JSON lines, optionally through a gzip/zstd stream."""

    def __init__(self, fs: pafs.FileSystem, path: str, schema: pa.Schema, options: WriteOptions) -> None:
        super().__init__(fs, path, schema, options)
        codec = _codec_or_none(options.codec)
        self._out = pa.CompressedOutputStream(self._raw, codec) if codec else self._raw
        self._csv: pcsv.CSVWriter | None = None
        if options.format == "csv":
            empty = pa.RecordBatch.from_pylist([], schema=schema)
            self._csv = pcsv.CSVWriter(self._out, csv_encode_batch(empty).schema)

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._csv is not None:
            self._csv.write_batch(csv_encode_batch(batch))
        else:
            self._out.write(jsonl_encode_batch(batch))
        if self._out is not self._raw and self._options.file_max_bytes is not None:
            # The compressor holds back up to a few hundred KB; flushing it (a sync point,
            # not the end of the stream) makes the file's size known for the byte limit.
            self._out.flush()

    def _close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if not self._out.closed:
            self._out.close()


def _open_part(
    fs: pafs.FileSystem,
    path: str,
    schema: pa.Schema,
    options: WriteOptions,
    no_statistics: Collection[str] = (),
    no_dictionary: Collection[str] = (),
) -> _PartFile:
    if options.format == "parquet":
        return _ParquetPart(fs, path, schema, options, no_statistics, no_dictionary)
    return _TextPart(fs, path, schema, options)


def long_value_columns(source_types: Mapping[str, str]) -> frozenset[str]:
    """Columns whose SQL Server type holds long values: ``(max)``, ``text``, ``ntext``, ``image``."""
    return frozenset(
        name for name, sql_type in source_types.items()
        if sql_type.endswith("(max)") or sql_type in ("text", "ntext", "image")
    )  # fmt: skip


# --------------------------------------------------------------------------- one partition load


class _Splitter:
    """Feeds batches into part files, starting a new file at the row or byte limit.

    With a byte limit, a batch is cut so that a file ends close to the limit: the rows
    that still fit are estimated from the file bytes per Arrow byte seen so far in this
    file (or, for a new file, in this partition's earlier files). Until a ratio is known,
    slices of an eighth of the limit (in Arrow bytes) are written to learn it, so even the
    first file cannot overshoot by much, whatever the format and compression.
    """

    def __init__(
        self, fs: pafs.FileSystem, partition_dir: str, schema: pa.Schema, options: WriteOptions, load_id: str,
        no_statistics: Collection[str] = (),
        on_file_done: Callable[[], None] | None = None,
        no_dictionary: Collection[str] = (),
    ) -> None:  # fmt: skip
        self._fs, self._dir, self._schema = fs, partition_dir, schema
        self._options, self._load_id, self._no_statistics = options, load_id, no_statistics
        self._no_dictionary = no_dictionary
        self._on_file_done = on_file_done
        self.current: _PartFile | None = None
        self.opened: list[str] = []  # every path this attempt created, for cleanup
        self.done: list[dict[str, Any]] = []
        self._file_bytes = self._arrow_bytes = 0  # of the finished files: the partition's ratio

    def write(self, batch: pa.RecordBatch) -> None:
        max_rows = self._options.file_max_rows
        offset = 0
        while offset < batch.num_rows:
            if self.current is None:
                name = self._options.file_name(self._load_id, len(self.done) + 1)
                self.opened.append(f"{self._dir}/{name}")
                self.current = _open_part(
                    self._fs, self.opened[-1], self._schema, self._options, self._no_statistics, self._no_dictionary
                )
            take = batch.num_rows - offset
            if max_rows is not None:
                take = min(take, max_rows - self.current.rows)
            piece = batch.slice(offset, take)
            if self._options.file_max_bytes is not None and piece.nbytes:
                take = min(take, self._rows_that_fit(self.current, piece.nbytes / piece.num_rows))
                piece = batch.slice(offset, take)
            self.current.write(piece)
            offset += take
            if self._is_full(self.current, piece.nbytes / max(piece.num_rows, 1)):
                self.finish()

    def _ratio(self, part: _PartFile) -> float | None:
        return part.ratio() or (self._file_bytes / self._arrow_bytes if self._arrow_bytes else None)

    def _rows_that_fit(self, part: _PartFile, arrow_bytes_per_row: float) -> int:
        limit = self._options.file_max_bytes
        assert limit is not None
        ratio = self._ratio(part)
        if ratio is None:  # learn the ratio on a small slice first
            room = limit / 8 / arrow_bytes_per_row
        else:
            room = (limit - part.estimated_bytes(ratio)) / (arrow_bytes_per_row * ratio)
        return max(1, int(room))

    def _is_full(self, part: _PartFile, arrow_bytes_per_row: float) -> bool:
        """At the row limit, or another row would take the file past the byte limit."""
        max_rows, max_bytes = self._options.file_max_rows, self._options.file_max_bytes
        if max_rows is not None and part.rows >= max_rows:
            return True
        if max_bytes is None:
            return False
        ratio = self._ratio(part)
        return part.estimated_bytes(ratio) + arrow_bytes_per_row * (ratio or 1.0) > max_bytes

    def finish(self) -> None:
        if self.current is None:
            return
        part, self.current = self.current, None
        part.close()
        size = self._fs.get_file_info(part.path).size or 0
        self.done.append({"path": part.path.rsplit("/", 1)[-1], "rows": part.rows, "bytes": size})
        self._file_bytes, self._arrow_bytes = self._file_bytes + size, self._arrow_bytes + part.arrow_bytes
        if self._on_file_done is not None:
            self._on_file_done()

    def discard(self) -> None:
        """Best-effort delete of everything this attempt wrote (the caller is failing)."""
        if self.current is not None:
            self.current.abandon()
            self.current = None
        for path in self.opened:
            try:
                self._fs.delete_file(path)
            except Exception:  # noqa: BLE001 - best effort; readers ignore unlisted files anyway
                log.warning("could not delete %s after a failed load; the next load removes it", path)


def new_splitter(
    fs: pafs.FileSystem,
    partition_dir: str,
    schema: pa.Schema,
    options: WriteOptions,
    load_id: str,
    *,
    no_statistics: Collection[str] = (),
    on_file_done: Callable[[], None] | None = None,
    no_dictionary: Collection[str] = (),
) -> _Splitter:
    """Part-file writer of one load: ``write(batch)``, ``finish()``, ``discard()``, ``done``.

    ``no_statistics``: the long-value columns (:func:`long_value_columns`) whose Parquet
    statistics and dictionary are off; ``no_dictionary``: columns with a distinct value for
    nearly every row, whose Parquet dictionary is off."""
    return _Splitter(fs, partition_dir, schema, options, load_id, no_statistics, on_file_done, no_dictionary)


def check_batch(batch: pa.RecordBatch, stream: TableStream) -> None:
    if not batch.schema.equals(stream.schema, check_metadata=False):
        raise ValueError(
            f"a batch of {stream.table} does not match the stream schema; expected {stream.schema}, got {batch.schema}"
        )


def load_id_of(file_name: str) -> str | None:
    """The load that wrote a part file (``part-<load_id>-<nnnnn>.<ext>``), None for other names."""
    match = _PART_NAME.match(file_name)
    return match.group(1) if match else None


# --------------------------------------------------------------------------- readers


def iter_partition_batches(
    fs: pafs.FileSystem,
    partition_dir: str,
    *,
    manifest: Mapping[str, Any] | None = None,
    what: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Batches of exactly the files the manifest lists, in order, with the manifest's schema.

    Parquet is streamed row group by row group; a CSV or JSON file is read whole
    (files are bounded by ``file_max_rows`` / ``file_max_bytes``).
    """
    manifest = manifest if manifest is not None else read_manifest(fs, partition_dir, what=what)
    schema = manifest_schema(manifest)
    codec = _codec_or_none(manifest["compression"]) if manifest["format"] != "parquet" else None
    for entry in manifest["files"]:
        path = f"{partition_dir}/{entry['path']}"
        try:
            yield from _read_file(fs, path, manifest["format"], codec, schema)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{path} is listed in the manifest of {what or partition_dir} but is missing; "
                "something deleted it outside dtaas: re-run that partition"
            ) from e


def read_partition(fs: pafs.FileSystem, partition_dir: str, *, what: str | None = None) -> pa.Table:
    """The whole partition as one table (empty, with the right schema, for a 0-row load)."""
    manifest = read_manifest(fs, partition_dir, what=what)
    batches = list(iter_partition_batches(fs, partition_dir, manifest=manifest, what=what))
    return pa.Table.from_batches(batches, schema=manifest_schema(manifest))


def _read_file(
    fs: pafs.FileSystem, path: str, fmt: str, codec: str | None, schema: pa.Schema
) -> Iterable[pa.RecordBatch]:
    if fmt == "parquet":
        with fs.open_input_file(path) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=64 * 1024):
                yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        return
    with fs.open_input_stream(path, compression=codec) as f:
        body = f.read()
    text_table = read_csv_bytes(body, schema) if fmt == "csv" else read_jsonl_bytes(body, schema)
    columns = [decode_text_column(text_table.column(i).combine_chunks(), fld.type) for i, fld in enumerate(schema)]
    yield from pa.Table.from_arrays(columns, schema=schema).to_batches()
