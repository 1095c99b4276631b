"""The S3 / ``file://`` destination as a Dagster IO manager.

``handle_output`` receives a :class:`~dtaas_dagster.stream.TableStream` and
writes one partition with :func:`~dtaas_dagster.destinations.files.write_partition`
(data files first, ``_manifest.json`` last, then the replaced files are removed),
into the directory rendered from ``path_template`` and the stream's variables.

Finding a partition again
-------------------------
``load_input`` runs in a downstream step without the original stream, so it
cannot re-render the path template (global variables, load dates and query
variables may have changed). Instead, after the manifest is in place,
``handle_output`` writes a small pointer object per asset and partition::

    <base>/_dtaas/<asset key path>/<partition key>.json   {"partition_dir": ..., ...}

(``_unpartitioned.json`` for an unpartitioned asset; keys are escaped like path
template values, ``:`` -> ``%3A``, which is one-to-one). ``load_input`` reads the
pointer, then the manifest it names, then exactly the files that manifest
lists. The pointer is written after the manifest: if the process dies between
the two, the partition is loaded but the pointer still names the previous
directory (or none); re-running the partition repairs it.

The template should contain ``$partitionKey``: a load replaces every file of
its partition directory, so partitions sharing one directory replace each other.
"""

from __future__ import annotations

import errno
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
from dagster import (
    AssetKey,
    ConfigurableIOManager,
    EnvVar,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)
from pydantic import Field, model_validator

from dtaas_dagster.config import S3Destination, TaskConfig
from dtaas_dagster.destinations.commit import (
    PartitionWrite,
    put_object_atomically,
    verify_readable,
    write_partition,
)
from dtaas_dagster.destinations.files import WriteOptions, iter_partition_batches, new_load_id
from dtaas_dagster.destinations.frames import to_pandas
from dtaas_dagster.destinations.location import (
    Location,
    open_location,
    render_partition_dir,
    sanitize_path_value,
)
from dtaas_dagster.errors import DestinationConfigError
from dtaas_dagster.manifest import (
    MANIFEST_NAME,
    ManifestNotFoundError,
    check_partition,
    manifest_schema,
    read_manifest,
)
from dtaas_dagster.stream import TableStream
from dtaas_dagster.variables import builtin_values

log = logging.getLogger(__name__)

POINTER_DIR = "_dtaas"
UNPARTITIONED = "_unpartitioned"
DEFAULT_TEMPLATE = "$sourceDatabaseName/$sourceSchemaName/$sourceTableShortName/$partitionKey"


class S3IOManager(ConfigurableIOManager):
    """Writes table streams as Parquet, CSV or JSON-lines partitions to S3 or a local directory."""

    url: str = Field(description="Base location: s3://bucket[/prefix], file:///absolute/path or file://relative/path.")
    path_template: str = Field(
        default=DEFAULT_TEMPLATE,
        description="Partition directory under the base, with $variables (built-ins such as $sourceTableName, "
        "$partitionKey, $loadDate, $runId, and global variables). Values are escaped Hive-style (':' -> %3A) "
        "so each stays inside one path segment.",
    )
    format: str = Field(default="parquet", description="File format: parquet, csv or jsonl.")
    compression: str | None = Field(
        default=None,
        description="none, snappy (parquet only), gzip or zstd; unset = snappy for parquet, none otherwise.",
    )
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint override for MinIO/LocalStack, e.g. http://localhost:9000."
    )
    region: str | None = Field(default=None, description="AWS region of the bucket (default us-east-1).")
    access_key_id_env: str | None = Field(
        default=None,
        description="NAME of the environment variable holding the access key id (unset: AWS default chain).",
    )
    secret_access_key_env: str | None = Field(
        default=None, description="NAME of the environment variable holding the secret access key."
    )
    session_token_env: str | None = Field(
        default=None, description="NAME of the environment variable holding a session token (temporary credentials)."
    )
    file_max_rows: int | None = Field(default=1_000_000, description="Start a new file after this many rows.")
    file_max_mb: float | None = Field(
        default=None, description="Start a new file once a file reaches about this many MB (approximate)."
    )
    row_group_rows: int = Field(default=128 * 1024, description="Rows per Parquet row group.")
    destination_name: str = Field(default="", description="Name of the destination in dtaas.yaml (for messages).")

    @model_validator(mode="before")
    @classmethod
    def _check_at_load(cls, data: Any) -> Any:
        """Fail when the definitions load, not mid-run: format, compression, limits, url scheme.

        Runs on the raw input because there an ``EnvVar`` is still recognisable (later it
        is a plain string holding the variable's NAME); such settings are checked at run time.
        """
        if not isinstance(data, dict):
            return data
        names = ("url", "format", "compression", "file_max_rows", "file_max_mb", "row_group_rows")
        raw = {name: data.get(name, cls.model_fields[name].default) for name in names}
        if any(isinstance(v, EnvVar) or isinstance(v, dict) for v in raw.values()):
            return data
        _write_options(
            raw["format"], raw["compression"], raw["file_max_rows"], raw["file_max_mb"], raw["row_group_rows"]
        )
        if isinstance(raw["url"], str) and not raw["url"].startswith(("s3://", "file://")):
            raise ValueError(f"url {raw['url']!r} must start with s3:// or file://")
        return data

    @classmethod
    def from_destination(cls, destination: S3Destination, task: TaskConfig, *, name: str = "") -> S3IOManager:
        """The IO manager of one task's ``type: s3`` destination (file sizes come from the task)."""
        return cls(
            url=destination.url,
            path_template=destination.path_template,
            format=destination.format,
            compression=destination.effective_compression,
            endpoint_url=destination.endpoint_url,
            region=destination.region,
            access_key_id_env=destination.access_key_id_env,
            secret_access_key_env=destination.secret_access_key_env,
            session_token_env=destination.session_token_env,
            file_max_rows=task.file_size.rows,
            file_max_mb=task.file_size.mb,
            destination_name=name,
        )

    # ------------------------------------------------------------------ plumbing

    def _location(self) -> Location:
        return open_location(
            self.url,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id_env=self.access_key_id_env,
            secret_access_key_env=self.secret_access_key_env,
            session_token_env=self.session_token_env,
        )

    def _options(self) -> WriteOptions:
        return _write_options(self.format, self.compression, self.file_max_rows, self.file_max_mb, self.row_group_rows)

    @staticmethod
    def _pointer_path(location: Location, asset_path: Sequence[str], partition: str | None) -> str:
        name = UNPARTITIONED if partition is None else sanitize_path_value(partition)
        segments = [sanitize_path_value(p) for p in asset_path]
        return location.path("/".join([POINTER_DIR, *segments, f"{name}.json"]))

    # ------------------------------------------------------------------ output

    def handle_output(self, context: OutputContext, obj: TableStream | None) -> None:
        if obj is None:  # the table steps write themselves (write_stream) and return nothing here
            return
        if not isinstance(obj, TableStream):
            raise TypeError(
                f"S3IOManager writes TableStream objects, but {context.asset_key.to_user_string()} returned "
                f"{type(obj).__name__}; give this asset another io_manager_key"
            )
        partition = context.asset_partition_key if context.has_asset_partitions else None
        metadata = self.write_stream(
            obj, asset_key=context.asset_key, partition_key=partition, run_id=context.run_id, attempt=_attempt(context)
        )
        context.add_output_metadata(dict(metadata))

    def write_stream(
        self,
        stream: TableStream,
        *,
        asset_key: AssetKey,
        partition_key: str | None,
        run_id: str,
        attempt: int = 0,
        run_finished: Callable[[str], bool] | None = None,
    ) -> dict[str, Any]:
        """Write one partition of one table asset; return its materialization metadata.

        The pointer is keyed like ``load_input`` asks for it: by Dagster's partition key.
        ``run_finished`` (from the Dagster instance) lets the commit tell a dead load's
        leftovers from a load still writing (commit.py).
        """
        try:
            return self._write_stream(
                stream,
                asset_key=asset_key,
                partition_key=partition_key,
                run_id=run_id,
                attempt=attempt,
                run_finished=run_finished,
            )
        except Exception as exc:
            problem = destination_problem(exc, self._label())
            if problem is None:
                raise
            raise problem from exc

    def _label(self) -> str:
        name = f"destination {self.destination_name}" if self.destination_name else "the destination"
        field = f"destinations.{self.destination_name}.url" if self.destination_name else "url"
        return f"{name} ({field} = {self.url})"

    def check_writable(self) -> str:
        """Write and delete a small probe object under the base; a clear error when that fails."""
        try:
            location = self._location()
            probe = location.path(f"{POINTER_DIR}/_probe-{uuid.uuid4().hex[:12]}")
            put_object_atomically(location.fs, probe, b"dtaas check", temp_suffix="probe")
            location.delete(probe)
        except Exception as exc:
            problem = destination_problem(exc, self._label())
            if problem is None:
                raise
            raise problem from exc
        return location.url(location.base)

    def _write_stream(
        self,
        stream: TableStream,
        *,
        asset_key: AssetKey,
        partition_key: str | None,
        run_id: str,
        attempt: int,
        run_finished: Callable[[str], bool] | None,
    ) -> dict[str, Any]:
        options, location = self._options(), self._location()
        relative_dir = render_partition_dir(self.path_template, _template_variables(stream, run_id))
        pointer_path = self._pointer_path(location, asset_key.path, partition_key)
        previous_dir = _read_pointer(location, pointer_path).get("partition_dir")
        started = time.monotonic()
        result = write_partition(
            location.fs,
            location.path(relative_dir),
            stream,
            options,
            load_id=new_load_id(run_id, attempt),
            run_id=run_id,
            run_finished=run_finished,
            abort_uploads=location.abort_dead_uploads,
        )
        duration = time.monotonic() - started
        self._write_pointer(location, pointer_path, relative_dir, result)
        if previous_dir and previous_dir != relative_dir:
            _remove_old_partition_dir(location, location.path(previous_dir), result.manifest["partition_key"])
        return _output_metadata(stream, result, location, duration)

    def _write_pointer(self, location: Location, path: str, relative_dir: str, result: PartitionWrite) -> None:
        pointer = {
            "partition_dir": relative_dir,
            "partition_key": result.manifest["partition_key"],
            "load_id": result.manifest["load_id"],
            "run_id": result.manifest["run_id"],
        }
        body = json.dumps(pointer).encode("utf-8")
        put_object_atomically(location.fs, path, body, temp_suffix=result.manifest["load_id"])

    def verify_partition(self, *, asset_key: AssetKey, partition_key: str | None) -> dict[str, Any]:
        """Check a loaded partition the way a reader finds it (the ``manifest`` asset check).

        The pointer names the directory, the manifest there must be this partition's, and
        every file it lists must exist with its listed size; a Parquet file's footer must
        also read, with the rows the manifest lists. Returns what was checked; raises
        ``ManifestNotFoundError`` or ``PartitionVerificationError`` naming the problem.
        """
        location = self._location()
        what = (
            f"partition {partition_key} of {asset_key.to_user_string()}"
            if partition_key is not None
            else asset_key.to_user_string()
        )
        pointer_path = self._pointer_path(location, asset_key.path, partition_key)
        pointer = _read_pointer(location, pointer_path)
        if not pointer:
            raise ManifestNotFoundError(f"{what} has no manifest (no pointer at {location.url(pointer_path)})")
        partition_dir = location.path(pointer["partition_dir"])
        manifest = read_manifest(location.fs, partition_dir, what=what)
        manifest_url = location.url(f"{partition_dir}/{MANIFEST_NAME}")
        if partition_key is not None:
            check_partition(manifest, partition_key, where=manifest_url)
        verify_readable(location.fs, partition_dir, manifest)
        return {
            "manifest": manifest_url,
            "files": len(manifest["files"]),
            "rows": int(manifest["total_rows"]),
            "load_id": manifest["load_id"],
            "run_id": manifest["run_id"],
        }

    # ------------------------------------------------------------------ input

    def load_input(self, context: InputContext) -> Any:
        if not context.has_asset_key:
            raise TypeError("S3IOManager loads asset inputs only; this input does not come from an asset")
        location = self._location()
        asset_key = context.asset_key
        partitions: list[str | None] = (
            list(sorted(context.asset_partition_keys)) if context.has_asset_partitions else [None]
        )
        tables = [self._read_one(location, asset_key.path, p, asset_key.to_user_string()) for p in partitions]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        if _wants_pandas(context):
            return to_pandas(table)  # exact per type: see destinations/frames.py
        return table

    def _read_one(
        self, location: Location, asset_path: Sequence[str], partition: str | None, asset_name: str
    ) -> pa.Table:
        what = f"partition {partition} of {asset_name}" if partition is not None else asset_name
        pointer_path = self._pointer_path(location, asset_path, partition)
        pointer = _read_pointer(location, pointer_path)
        if not pointer:
            raise ManifestNotFoundError(
                f"{what} has no manifest: it was never loaded or its load did not finish "
                f"(no pointer at {location.url(pointer_path)}); materialize it first"
            )
        partition_dir = location.path(pointer["partition_dir"])
        manifest = read_manifest(location.fs, partition_dir, what=what)
        if partition is not None:
            check_partition(manifest, partition, where=location.url(f"{partition_dir}/{MANIFEST_NAME}"))
        batches = list(iter_partition_batches(location.fs, partition_dir, manifest=manifest, what=what))
        return pa.Table.from_batches(batches, schema=manifest_schema(manifest))


_S3_PERMANENT = {
    "NO_SUCH_BUCKET": "the bucket does not exist: create it, or fix the bucket in url",
    "NoSuchBucket": "the bucket does not exist: create it, or fix the bucket in url",
    "ACCESS_DENIED": "access is denied: give the credentials s3:PutObject, s3:GetObject, s3:DeleteObject, "
    "s3:ListBucket and s3:AbortMultipartUpload on the bucket",
    "AccessDenied": "access is denied: give the credentials s3:PutObject, s3:GetObject, s3:DeleteObject, "
    "s3:ListBucket and s3:AbortMultipartUpload on the bucket",
    "INVALID_ACCESS_KEY_ID": "the access key id is not valid: fix the variable named in access_key_id_env",
    "InvalidAccessKeyId": "the access key id is not valid: fix the variable named in access_key_id_env",
    "SIGNATURE_DOES_NOT_MATCH": "the secret key does not match: fix the variable named in secret_access_key_env",
    "SignatureDoesNotMatch": "the secret key does not match: fix the variable named in secret_access_key_env",
}


def destination_problem(exc: BaseException, label: str) -> DestinationConfigError | None:
    """A destination error that a retry cannot fix, as a clear message; None for transient ones."""
    text = str(exc)
    if isinstance(exc, ValueError) and "environment variable" in text:
        return DestinationConfigError(f"{label}: {text}")
    for marker, fix in _S3_PERMANENT.items():
        if marker in text:
            return DestinationConfigError(f"{label}: {fix}. Store said: {text}")
    if isinstance(exc, NotADirectoryError) or getattr(exc, "errno", None) == errno.ENOTDIR:
        return DestinationConfigError(
            f"{label}: a part of the path is a file, not a directory: move that file or point url elsewhere. {text}"
        )
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DestinationConfigError(
            f"{label}: the directory is not writable by this process: fix its permissions or point url at a "
            f"writable directory. {text}"
        )
    return None


def _read_pointer(location: Location, path: str) -> dict[str, Any]:
    try:
        with location.fs.open_input_stream(path, compression=None) as f:
            return dict(json.loads(f.read()))
    except FileNotFoundError:
        return {}


def _remove_old_partition_dir(location: Location, old_dir: str, partition_key: str) -> None:
    """After a re-run wrote a partition to a new directory, remove its previous load's files.

    Only when that directory's manifest is this partition's (a template without a stable
    directory, e.g. a global variable that changed); only our files (manifest first, so no
    reader ever sees a manifest without its files).
    """
    try:
        old = read_manifest(location.fs, old_dir)
    except (ManifestNotFoundError, ValueError):
        return
    if old.get("partition_key") != partition_key:
        return
    for path in [f"{old_dir}/{MANIFEST_NAME}", *(f"{old_dir}/{entry['path']}" for entry in old["files"])]:
        try:
            location.delete(path)
        except Exception:  # noqa: BLE001 - best effort; the pointer already names the new directory
            log.warning("could not remove %s of the replaced load; remove it by hand", path)


def _write_options(
    fmt: str, compression: str | None, file_max_rows: int | None, file_max_mb: float | None, row_group_rows: int
) -> WriteOptions:
    if file_max_mb is not None and file_max_mb <= 0:
        raise ValueError(f"file_max_mb must be positive or unset, got {file_max_mb}")
    max_bytes = None if file_max_mb is None else max(1, int(file_max_mb * 1024 * 1024))
    return WriteOptions(
        format=fmt,
        compression=compression,
        file_max_rows=file_max_rows,
        file_max_bytes=max_bytes,
        row_group_rows=row_group_rows,
    )


def _template_variables(stream: TableStream, run_id: str) -> dict[str, str]:
    """The stream's resolved variables over the built-ins of its table and partition."""
    builtins = builtin_values(
        database=stream.table.database,
        schema=stream.table.schema,
        table=stream.table.name,
        partition_key=stream.partition_key,
        run_id=run_id,
        task="",
    )
    return {**builtins, **{k: str(v) for k, v in stream.variables.items()}}


def _attempt(context: OutputContext) -> int:
    try:
        return int(context.step_context.previous_attempt_count)
    except Exception:  # noqa: BLE001 - no step context (direct invocation): first attempt
        return 0


def _wants_pandas(context: InputContext) -> bool:
    typing_type = getattr(context.dagster_type, "typing_type", None)
    module = getattr(typing_type, "__module__", "") or ""
    return module.startswith("pandas") and getattr(typing_type, "__name__", "") == "DataFrame"


def _output_metadata(
    stream: TableStream, result: PartitionWrite, location: Location, duration: float
) -> dict[str, Any]:
    columns = [
        TableColumn(
            name=f.name,
            type=str(f.type),
            description=f"SQL Server type: {stream.source_types[f.name]}" if f.name in stream.source_types else None,
        )
        for f in stream.schema
    ]
    manifest_url = location.url(result.manifest_path)
    metadata: dict[str, Any] = {
        "dagster/row_count": MetadataValue.int(result.rows),
        "dagster/column_schema": MetadataValue.table_schema(TableSchema(columns=columns)),
        "bytes": MetadataValue.int(result.bytes),
        "files": MetadataValue.int(result.files),
        "manifest": MetadataValue.url(manifest_url)
        if location.scheme == "s3"
        else MetadataValue.path(result.manifest_path),
        "duration_s": MetadataValue.float(round(duration, 3)),
        "rows_per_s": MetadataValue.float(round(result.rows / duration, 1) if duration > 0 else 0.0),
        "format": MetadataValue.text(result.manifest["format"]),
        "compression": MetadataValue.text(result.manifest["compression"]),
        "partition_key": MetadataValue.text(stream.partition_key),
        "load_id": MetadataValue.text(result.manifest["load_id"]),
    }
    if stream.estimated_rows is not None:
        metadata["source_row_estimate"] = MetadataValue.int(stream.estimated_rows)
    metadata.update(stream_metadata(stream))
    return metadata


def stream_metadata(stream: TableStream) -> dict[str, Any]:
    """Metadata every destination records: kind, CDC positions, source types, schema changes."""
    metadata: dict[str, Any] = {
        "dtaas/kind": MetadataValue.text(stream.kind),
        "dtaas/source_types": MetadataValue.json(dict(stream.source_types)),
    }
    for name, value in stream.cdc.items():
        metadata[f"dtaas/cdc_{name}"] = MetadataValue.text(str(value))
    count = stream.source_count
    if count.sent is not None:  # ROWCOUNT_BIG() of the read: the row_count check compares it
        metadata["dtaas/source_rows"] = MetadataValue.int(count.sent)
        if count.dropped:
            metadata["dtaas/source_rows_left_out"] = MetadataValue.int(count.dropped)
    if stream.schema_change:
        metadata["dtaas/schema_change"] = MetadataValue.json({k: list(v) for k, v in stream.schema_change.items()})
    return metadata
