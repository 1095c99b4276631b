"""Replay: the source table from its newest snapshot plus every change partition after it.

This is how a reader of the lake (or a test) turns change partitions back into
the table, and the contract the Snowflake MERGE implements too:

1. take the newest snapshot partition (by partition key; keys sort in load
   order) and its ``cdc.start_lsn`` from the manifest;
2. take every change row with ``_dtaas_lsn`` after that LSN, from every change
   partition, in ``(_dtaas_lsn, _dtaas_seqval)`` order (a ``delete`` before an
   ``update`` at the same position: a primary-key change);
3. per primary key, the last change wins: ``insert`` / ``update`` rows are
   upserted (the row becomes that image), ``delete`` rows remove the key;
   ``update_before`` rows are ignored.

Every change row carries the whole row, so applying a change the snapshot
already contains changes nothing: a change that is both in the snapshot and in
the first window (capture lag, docs/cdc.md) and a window loaded twice (a
re-executed run) are both harmless. A snapshot read without snapshot isolation
may hold a key twice; the last copy is taken, and the changes after its start
LSN fix its value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from dtaas_dagster.cdc.changes import CHANGE_COLUMNS, LSN, OP, SEQVAL
from dtaas_dagster.destinations.files import iter_partition_batches
from dtaas_dagster.manifest import manifest_schema, read_manifest

_RANK = {"update_before": 0, "delete": 1, "insert": 2, "update": 3}


@dataclass(frozen=True)
class Partition:
    """One loaded partition of a table: where it is and its manifest."""

    directory: str
    manifest: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.manifest["partition_key"])

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", "snapshot"))


def table_partitions(fs: pafs.FileSystem, base: str, asset_path: Sequence[str]) -> list[Partition]:
    """Every partition of one table asset written by the S3 IO manager under ``base`` (via its pointers)."""
    from dtaas_dagster.destinations.location import sanitize_path_value
    from dtaas_dagster.destinations.s3 import POINTER_DIR

    pointers = f"{base}/{POINTER_DIR}/" + "/".join(sanitize_path_value(p) for p in asset_path)
    partitions = []
    for info in fs.get_file_info(pafs.FileSelector(pointers, allow_not_found=True)):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
            continue
        with fs.open_input_stream(info.path, compression=None) as f:
            pointer = json.loads(f.read())
        directory = f"{base}/{pointer['partition_dir']}"
        partitions.append(Partition(directory, read_manifest(fs, directory)))
    return sorted(partitions, key=lambda p: p.key)


def _read(fs: pafs.FileSystem, partition: Partition) -> pa.Table:
    batches = list(iter_partition_batches(fs, partition.directory, manifest=partition.manifest))
    return pa.Table.from_batches(batches, schema=manifest_schema(partition.manifest))


def _last_per_key(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """The last row (in table order) of every key."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    last = indexed.group_by(list(key), use_threads=False).aggregate([("__row", "max")])
    rows = last.column("__row_max")
    return table.take(pc.take(rows, pc.sort_indices(rows)))


def _without_keys(table: pa.Table, keys: pa.Table, key: Sequence[str]) -> pa.Table:
    if table.num_rows == 0 or keys.num_rows == 0:
        return table
    marked = keys.select(list(key)).append_column("__hit", pa.array([True] * keys.num_rows))
    joined = table.join(marked, list(key), join_type="left outer", use_threads=False)
    return joined.filter(pc.is_null(joined.column("__hit"))).drop(["__hit"])


def replay(fs: pafs.FileSystem, partitions: Sequence[Partition]) -> pa.Table:
    """The table as of the newest change: see the module docstring."""
    snapshots = [p for p in partitions if p.kind == "snapshot"]
    if not snapshots:
        raise ValueError("no snapshot partition to start from: load one (the task's _full_load job)")
    snapshot = max(snapshots, key=lambda p: p.key)
    key = list(snapshot.manifest.get("primary_key") or [])
    if not key:
        raise ValueError(f"snapshot {snapshot.key} records no primary key; replay applies changes per key")
    start = str((snapshot.manifest.get("cdc") or {}).get("start_lsn", ""))
    base = _last_per_key(_read(fs, snapshot), key)
    changes = [_read(fs, p) for p in partitions if p.kind == "cdc"]
    changes = [t.filter(pc.greater(t.column(LSN), start)) for t in changes if start]
    changes = [t for t in changes if t.num_rows]
    if not changes:
        return base
    rows = pa.concat_tables(changes, promote_options="permissive")
    rows = rows.filter(pc.not_equal(rows.column(OP), "update_before"))
    rank = pa.array([_RANK[op] for op in rows.column(OP).to_pylist()], pa.int8())
    rows = (
        rows.append_column("__rank", rank)
        .sort_by([(LSN, "ascending"), (SEQVAL, "ascending"), ("__rank", "ascending")])
        .drop(["__rank"])
    )
    last = _last_per_key(rows, key)
    upserts = last.filter(pc.not_equal(last.column(OP), "delete")).drop(list(CHANGE_COLUMNS))
    kept = _without_keys(base, last, key)
    return pa.concat_tables([kept, upserts], promote_options="permissive")
