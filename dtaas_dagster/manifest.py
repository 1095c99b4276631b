"""The partition manifest (``_manifest.json``): the contract between writers and readers.

Whoever writes a partition (the S3 writer today; the CDC writer and the
Snowflake loader's staging next) writes its data files first and this
manifest LAST, in one atomic step. Whoever reads a partition (the IO
manager's ``load_input``, the CDC replay, the Snowflake loader, a user's own
reader) reads the manifest first and then exactly the files it lists; files in
the directory that the manifest does not list are never data.

Schema, version 1 (JSON object; fields marked * are required)::

    manifest_version*   1
    table*              {"database", "schema", "name"}: the source table, as the catalog spells it
    partition_key*      the Dagster partition key this load materialized
    load_id*            unique per attempt; the prefix of every data file name
    run_id*             the Dagster run that wrote it
    created_at*         ISO-8601 UTC time the manifest was written
    format*             "parquet" | "csv" | "jsonl"
    compression*        "none" | "snappy" | "gzip" | "zstd"
    files*              [{"path": name relative to the manifest's directory, "rows", "bytes"}], in order
    total_rows*         sum of files[].rows
    total_bytes*        sum of files[].bytes
    columns*            [{"name", "type" (Arrow), "nullable", "source_type" (SQL Server)}]
    arrow_schema*       base64 of the Arrow IPC schema: the exact type of every column
    source_row_estimate the catalog's row estimate when the load started (may be null)
    kind                "snapshot" (a whole table) or "cdc" (one change window); absent = snapshot
    primary_key         the key columns replay and merges use (may be empty)
    cdc                 snapshot: {"start_lsn"} (CDC continues after it), {"capture_instance"};
                        change window: {"capture_instance", "from_lsn", "to_lsn"} (inclusive, 20 hex digits)
    schema_change       {"added", "removed", "retyped"}: column names changed since the previous load

Readers must refuse a ``manifest_version`` they do not know, and check that
``partition_key`` is the partition they asked for (:func:`check_partition`).
Fields are only ever added within a version; a change that an old reader would
misread bumps the version.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

MANIFEST_NAME = "_manifest.json"
MANIFEST_VERSION = 1
KNOWN_VERSIONS = (1,)
_REQUIRED = (
    "manifest_version",
    "table",
    "partition_key",
    "load_id",
    "run_id",
    "created_at",
    "format",
    "compression",
    "files",
    "total_rows",
    "total_bytes",
    "columns",
    "arrow_schema",
)


class ManifestNotFoundError(FileNotFoundError):
    """A partition directory has no manifest: it was never loaded, or its load did not finish."""


class ManifestError(ValueError):
    """A manifest that this reader cannot trust: unknown version, missing fields, another partition's."""


def build_manifest(
    *,
    table: Mapping[str, str],
    partition_key: str,
    load_id: str,
    run_id: str,
    file_format: str,
    compression: str,
    files: Sequence[Mapping[str, Any]],
    schema: pa.Schema,
    source_types: Mapping[str, str],
    source_row_estimate: int | None,
    kind: str = "snapshot",
    primary_key: Sequence[str] = (),
    cdc: Mapping[str, str] | None = None,
    schema_change: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """A version-1 manifest for one load of one partition."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "table": {"database": table["database"], "schema": table["schema"], "name": table["name"]},
        "partition_key": partition_key,
        "load_id": load_id,
        "run_id": run_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "format": file_format,
        "compression": compression,
        "files": [dict(f) for f in files],
        "total_rows": sum(int(f["rows"]) for f in files),
        "total_bytes": sum(int(f["bytes"]) for f in files),
        "source_row_estimate": source_row_estimate,
        "columns": [
            {"name": f.name, "type": str(f.type), "nullable": f.nullable, "source_type": source_types.get(f.name)}
            for f in schema
        ],
        "arrow_schema": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
        "kind": kind,
        "primary_key": list(primary_key),
        "cdc": dict(cdc or {}),
        "schema_change": {k: list(v) for k, v in (schema_change or {}).items()},
    }


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")


def parse_manifest(body: bytes, *, path: str) -> dict[str, Any]:
    """Decode and validate a manifest's bytes; ``path`` names it in errors."""
    try:
        manifest = json.loads(body)
    except ValueError as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); re-run the partition that wrote it") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} is not a JSON object; re-run the partition that wrote it")
    version = manifest.get("manifest_version")
    if version not in KNOWN_VERSIONS:
        raise ManifestError(
            f"{path} has manifest_version {version!r}; this reader knows {', '.join(map(str, KNOWN_VERSIONS))}. "
            "Upgrade dtaas_dagster to read it."
        )
    missing = [name for name in _REQUIRED if name not in manifest]
    if missing:
        raise ManifestError(f"{path} lacks {', '.join(missing)}; re-run the partition that wrote it")
    return manifest


def read_manifest(fs: pafs.FileSystem, partition_dir: str, *, what: str | None = None) -> dict[str, Any]:
    """The manifest of ``partition_dir``; ``what`` names the partition in errors ("partition X of Y")."""
    path = f"{partition_dir}/{MANIFEST_NAME}"
    try:
        with fs.open_input_stream(path, compression=None) as f:
            body = f.read()
    except FileNotFoundError as e:
        raise ManifestNotFoundError(
            f"{what or 'partition directory ' + partition_dir} has no manifest ({path}): "
            "it was never loaded or its load did not finish; materialize that partition first"
        ) from e
    return parse_manifest(body, path=path)


def check_partition(manifest: Mapping[str, Any], partition_key: str, *, where: str) -> None:
    """Refuse a manifest that belongs to another partition (a reader must never return other data)."""
    if manifest.get("partition_key") != partition_key:
        raise ManifestError(
            f"the manifest at {where} belongs to partition {manifest.get('partition_key')!r}, not {partition_key!r}: "
            "two partitions share one directory. Put $partitionKey in the destination's path_template "
            "and re-run the partition."
        )


def manifest_schema(manifest: Mapping[str, Any]) -> pa.Schema:
    """The exact Arrow schema of the partition's rows."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(manifest["arrow_schema"])))
