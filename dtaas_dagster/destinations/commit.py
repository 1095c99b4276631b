"""Writing one partition exactly once: leases, the manifest commit, verification, cleanup.

One load of one partition (one attempt: ``load_id``) goes like this:

1. **Lease.** ``<dir>/_dtaas_loads/<load_id>.json`` says which run is writing
   and when it last made progress (refreshed as files complete and at least
   every minute while batches arrive). Other loads of the same partition use it
   to tell an in-progress load from a dead one.
2. **Data files** ``part-<load_id>-<nnnnn>.<ext>``, streamed batch by batch.
3. **Commit.** The manifest it replaces is read, then ``_manifest.json`` is
   written in one atomic step (one PUT on S3; temp file + rename(2) locally).
4. **Verify.** The manifest is read back and every file it lists must exist
   with its size. If another load of the same partition committed in between,
   its manifest is the one kept (last writer wins) and is verified instead; a
   partition whose manifest names a missing file is never reported as loaded.
5. **Cleanup.** Files the replaced manifest listed are deleted (never files of
   the manifest now in place: only the one that committed after them could
   replace those). Unlisted ``part-`` files and incomplete S3 multipart
   uploads are deleted only when their load is dead: its lease is gone, its
   run has finished (asked through ``run_finished``), its process is gone (a
   writer on this machine), or it made no progress for ``LEASE_TTL``. So two loads of one partition at once are
   harmless: the later manifest wins, and neither deletes the other's files while it writes.

If anything fails before the commit, this attempt's files and lease are
deleted best-effort and the error is re-raised: the previous manifest still
names the previous files, untouched. Readers trust only the manifest, so what
a killed process leaves behind is never read, and the next load removes it.
Files that do not look like ours are never touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from dtaas_dagster.destinations.files import (
    PART_PREFIX,
    WriteOptions,
    check_batch,
    load_id_of,
    long_value_columns,
    new_splitter,
)
from dtaas_dagster.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ManifestNotFoundError,
    build_manifest,
    encode_manifest,
    read_manifest,
)
from dtaas_dagster.stream import TableStream

log = logging.getLogger(__name__)

LEASE_DIR = "_dtaas_loads"
LEASE_TTL = dt.timedelta(minutes=15)
_HEARTBEAT_SECONDS = 60.0


class PartitionVerificationError(RuntimeError):
    """The committed manifest names files that are not there: the partition is not readable."""


@dataclass(frozen=True)
class PartitionWrite:
    """What one successful partition load wrote."""

    partition_dir: str
    manifest_path: str
    manifest: dict[str, Any]
    removed: list[str] = field(default_factory=list)
    superseded_by: str | None = None  # the load_id whose manifest was kept, when not ours

    @property
    def rows(self) -> int:
        return int(self.manifest["total_rows"])

    @property
    def bytes(self) -> int:
        return int(self.manifest["total_bytes"])

    @property
    def files(self) -> int:
        return len(self.manifest["files"])


def put_object_atomically(fs: pafs.FileSystem, path: str, body: bytes, *, temp_suffix: str) -> None:
    """Readers see the old object or the new one, never half of it.

    S3: one PUT (the object appears when the upload completes). Local disk: a
    temporary file next to it, then rename(2), an atomic replace on POSIX.
    """
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        temp = f"{path}.tmp-{temp_suffix}"
        with fs.open_output_stream(temp, compression=None) as out:
            out.write(body)
        fs.move(temp, path)
    else:
        with fs.open_output_stream(path, compression=None) as out:
            out.write(body)


def _delete_quietly(fs: pafs.FileSystem, path: str) -> bool:
    try:
        fs.delete_file(path)
        return True
    except FileNotFoundError:
        return False
    except Exception:  # noqa: BLE001 - cleanup is best effort; readers ignore unlisted files
        log.warning("could not delete %s; readers ignore it and a later load removes it", path)
        return False


# --------------------------------------------------------------------------- leases


class _Lease:
    """This load's lease file: who writes, and when it last made progress."""

    def __init__(self, fs: pafs.FileSystem, partition_dir: str, load_id: str, run_id: str) -> None:
        self._fs, self._load_id, self._run_id = fs, load_id, run_id
        self.path = f"{partition_dir}/{LEASE_DIR}/{load_id}.json"
        self._started = dt.datetime.now(dt.UTC).isoformat()
        self._last = 0.0

    def renew(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._last < _HEARTBEAT_SECONDS:
            return
        body = {
            "load_id": self._load_id,
            "run_id": self._run_id,
            "started_at": self._started,
            "heartbeat_at": dt.datetime.now(dt.UTC).isoformat(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        put_object_atomically(self._fs, self.path, json.dumps(body).encode(), temp_suffix=self._load_id)
        self._last = time.monotonic()

    def release(self) -> None:
        _delete_quietly(self._fs, self.path)
        if isinstance(self._fs, pafs.LocalFileSystem):
            # rmdir(2) removes only an empty directory: a concurrent load's lease keeps it
            with contextlib.suppress(OSError):
                os.rmdir(self.path.rsplit("/", 1)[0])


def _leases(fs: pafs.FileSystem, partition_dir: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    selector = pafs.FileSelector(f"{partition_dir}/{LEASE_DIR}", allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
            continue
        try:
            with fs.open_input_stream(info.path, compression=None) as f:
                found[info.base_name[: -len(".json")]] = json.loads(f.read())
        except (OSError, ValueError):
            found[info.base_name[: -len(".json")]] = {}  # unreadable: treated as made no progress
    return found


def _process_gone(lease: dict[str, Any]) -> bool:
    """A writer on this machine whose process no longer exists (killed) is dead at once."""
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return False
    try:
        os.kill(int(lease["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _is_alive(lease: dict[str, Any] | None, run_finished: Callable[[str], bool] | None) -> bool:
    if not lease:
        return False
    if run_finished is not None and lease.get("run_id") and run_finished(str(lease["run_id"])):
        return False
    if _process_gone(lease):
        return False
    try:
        beat = dt.datetime.fromisoformat(str(lease["heartbeat_at"]))
    except (KeyError, ValueError):
        return False
    return dt.datetime.now(dt.UTC) - beat < LEASE_TTL


# --------------------------------------------------------------------------- the write


def _heartbeat(batches: Iterator[pa.RecordBatch], lease: _Lease) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        lease.renew()
        yield batch


def _stream_manifest(
    stream: TableStream, options: WriteOptions, files: list[dict[str, Any]], *, load_id: str, run_id: str
) -> dict[str, Any]:
    table = stream.table
    return build_manifest(
        table={"database": table.database, "schema": table.schema, "name": table.name},
        partition_key=stream.partition_key,
        load_id=load_id,
        run_id=run_id,
        file_format=options.format,
        compression=options.codec,
        files=files,
        schema=stream.schema,
        source_types=stream.source_types,
        source_row_estimate=stream.estimated_rows,
        kind=stream.kind,
        primary_key=stream.primary_key,
        cdc=stream.cdc,
        schema_change=stream.schema_change,
    )


def _previous_manifest(fs: pafs.FileSystem, partition_dir: str) -> dict[str, Any] | None:
    try:
        return read_manifest(fs, partition_dir)
    except (ManifestNotFoundError, ManifestError):
        return None


def verify_partition(fs: pafs.FileSystem, partition_dir: str, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists exists with its listed size; else PartitionVerificationError."""
    paths = [f"{partition_dir}/{entry['path']}" for entry in manifest["files"]]
    infos = fs.get_file_info(paths) if paths else []
    for entry, info in zip(manifest["files"], infos, strict=True):
        if info.type != pafs.FileType.File or (info.size is not None and int(info.size) != int(entry["bytes"])):
            raise PartitionVerificationError(
                f"the manifest of {partition_dir} (load {manifest['load_id']}, run {manifest['run_id']}) lists "
                f"{entry['path']}, which is {'missing' if info.type != pafs.FileType.File else 'a different size'}: "
                "the partition is not readable. Something outside dtaas changed it; re-run the partition."
            )


def verify_readable(fs: pafs.FileSystem, partition_dir: str, manifest: dict[str, Any]) -> None:
    """:func:`verify_partition`, and every Parquet file's footer reads with the rows the manifest lists
    (the ``manifest`` asset check; a load verifies only names and sizes)."""
    verify_partition(fs, partition_dir, manifest)
    if manifest["format"] != "parquet":
        return
    import pyarrow.parquet as pq

    for entry in manifest["files"]:
        path = f"{partition_dir}/{entry['path']}"
        try:
            with fs.open_input_file(path) as f:
                found = pq.ParquetFile(f).metadata.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise PartitionVerificationError(
                f"the manifest of {partition_dir} lists {entry['path']}, which is not a readable Parquet file "
                f"({exc}); re-run the partition"
            ) from None
        if found != int(entry["rows"]):
            raise PartitionVerificationError(
                f"the manifest of {partition_dir} lists {entry['path']} with {int(entry['rows']):,} rows, but "
                f"the file holds {found:,}; re-run the partition"
            )


def write_partition(
    fs: pafs.FileSystem,
    partition_dir: str,
    stream: TableStream,
    options: WriteOptions,
    *,
    load_id: str,
    run_id: str,
    run_finished: Callable[[str], bool] | None = None,
    abort_uploads: Callable[[str, Callable[[str], bool]], list[str]] | None = None,
) -> PartitionWrite:
    """Write one partition exactly once (see the module docstring); return what was written.

    ``run_finished(run_id)`` tells whether a Dagster run has ended (a dead load's
    lease is then dead at once); ``abort_uploads(dir, is_dead_load_id)`` aborts
    incomplete multipart uploads of dead loads (S3 only).
    """
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(partition_dir, recursive=True)
    lease = _Lease(fs, partition_dir, load_id, run_id)
    splitter = new_splitter(
        fs,
        partition_dir,
        stream.schema,
        options,
        load_id,
        no_statistics=long_value_columns(stream.source_types),
        no_dictionary=stream.unique_columns,
        on_file_done=lambda: lease.renew(force=True),
    )
    try:
        lease.renew(force=True)
        for batch in _heartbeat(stream.batches, lease):
            if batch.num_rows:
                check_batch(batch, stream)
                splitter.write(batch)
        splitter.finish()
        manifest = _stream_manifest(stream, options, splitter.done, load_id=load_id, run_id=run_id)
        previous = _previous_manifest(fs, partition_dir)
        manifest_path = f"{partition_dir}/{MANIFEST_NAME}"
        put_object_atomically(fs, manifest_path, encode_manifest(manifest), temp_suffix=load_id)
    except BaseException:
        splitter.discard()
        lease.release()
        raise
    kept = read_manifest(fs, partition_dir)
    superseded_by = None if kept["load_id"] == load_id else str(kept["load_id"])
    if superseded_by:
        log.warning(
            "partition %s was committed again by load %s (run %s) while this load (%s) finished; "
            "the later manifest is kept",
            partition_dir,
            kept["load_id"],
            kept["run_id"],
            load_id,
        )
    verify_partition(fs, partition_dir, kept)
    removed = _cleanup(
        fs, partition_dir, kept, previous, own=load_id, run_finished=run_finished, abort_uploads=abort_uploads
    )
    lease.release()
    return PartitionWrite(partition_dir, manifest_path, kept, removed, superseded_by)


def _cleanup(
    fs: pafs.FileSystem,
    partition_dir: str,
    kept: dict[str, Any],
    previous: dict[str, Any] | None,
    *,
    own: str,
    run_finished: Callable[[str], bool] | None,
    abort_uploads: Callable[[str, Callable[[str], bool]], list[str]] | None,
) -> list[str]:
    """Delete what no live manifest lists and no live load is writing (see the module docstring)."""
    listed = {entry["path"] for entry in kept["files"]}
    leases = _leases(fs, partition_dir)

    def is_dead(load: str) -> bool:
        return load != own and load != kept["load_id"] and not _is_alive(leases.get(load), run_finished)

    removed = []
    replaced = {entry["path"] for entry in (previous or {}).get("files", [])} - listed
    for info in fs.get_file_info(pafs.FileSelector(partition_dir, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        name = info.base_name
        load = load_id_of(name)
        stale_part = (
            name.startswith(PART_PREFIX)
            and name not in listed
            and load is not None
            and (is_dead(load) or name in replaced or load == own)
        )
        stale_temp = name.startswith(f"{MANIFEST_NAME}.tmp-") and is_dead(name[len(f"{MANIFEST_NAME}.tmp-") :])
        if (stale_part or stale_temp) and _delete_quietly(fs, info.path):
            removed.append(name)
    for load in leases:
        if load != own and is_dead(load):
            _delete_quietly(fs, f"{partition_dir}/{LEASE_DIR}/{load}.json")
    if abort_uploads is not None:
        removed += abort_uploads(partition_dir, is_dead)
    return removed
