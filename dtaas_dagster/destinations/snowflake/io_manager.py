"""The Snowflake destination as a Dagster IO manager.

``write_stream`` (what the table steps call) renders the target name from the
destination's templates and the stream's variables, opens one connection
(:mod:`.connection`, through ``dagster_snowflake.SnowflakeResource``) and runs
:func:`.load.load_stream`. Its metadata names the table exactly
(``snowflake/database``, ``snowflake/schema``, ``snowflake/table``), which is
how ``load_input`` finds it again in a downstream step: the templates cannot be
re-rendered there (variables and load dates change), so it reads the
materialization of the partition it is asked for.

``verify_partition`` (the ``manifest`` asset check) finds the partition's
committed row in the load log (:mod:`.loads`, written in the load's own
transaction) and reads the target table: the Snowflake counterpart of "the
manifest exists and its files are readable".

``load_input`` returns the table's current rows (a Snowflake table holds the
state after the newest load, not one copy per partition) as a
``pyarrow.Table``, or a ``pandas.DataFrame`` when the parameter is annotated so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from dtaas_dagster.config import SnowflakeDestination, TaskConfig
from dtaas_dagster.destinations.files import new_load_id
from dtaas_dagster.destinations.s3 import stream_metadata
from dtaas_dagster.destinations.snowflake import loads, sql
from dtaas_dagster.destinations.snowflake.connection import ConnectionSettings, open_connection
from dtaas_dagster.destinations.snowflake.load import LoadReport, LoadSettings, load_stream, loads_table_of
from dtaas_dagster.destinations.snowflake.names import TableName, render_target
from dtaas_dagster.destinations.snowflake.reader import read_table
from dtaas_dagster.destinations.snowflake.session import Session, SnowflakeStatementError
from dtaas_dagster.destinations.snowflake.types import snowflake_type
from dtaas_dagster.manifest import ManifestNotFoundError
from dtaas_dagster.stream import TableStream
from dtaas_dagster.variables import builtin_values

# (asset key, partition) -> target, for the loads of this process: the manifest check runs right
# after write_stream, before the materialization that records the target is stored.
_WRITTEN: dict[tuple[str, str | None], TableName] = {}


class SnowflakeIOManager(dg.ConfigurableIOManager):
    """Loads table streams into Snowflake tables (staged COPY, then one replace or MERGE transaction)."""

    account: str = Field(description="Snowflake account identifier.")
    user: str = Field(description="Login name.")
    password_env: str | None = Field(default=None, description="NAME of the env var holding the password.")
    private_key_file: str | None = Field(default=None, description="Path of a PEM private key file.")
    private_key_env: str | None = Field(default=None, description="NAME of the env var holding a PEM private key.")
    private_key_passphrase_env: str | None = Field(
        default=None, description="NAME of the env var holding the key's passphrase."
    )
    role: str | None = Field(default=None, description="Role; unset = the user's default.")
    warehouse: str | None = Field(default=None, description="Warehouse; unset = the user's default.")
    database_template: str = Field(description="Target database template ($variables).")
    schema_template: str = Field(description="Target schema template ($variables).")
    table_template: str = Field(default="$sourceTableShortName", description="Target table template ($variables).")
    identifier_case: str = Field(default="upper", description="upper or preserve.")
    stage: str = Field(default="_DTAAS_STAGE", description="Internal stage name in each target schema.")
    state_table: str = Field(default="_DTAAS_STATE", description="Control table name in each target schema.")
    delete_mode: str = Field(default="hard", description="CDC deletes: hard or soft.")
    cdc_apply: str = Field(default="merge", description="CDC changes applied by merge or delete_insert.")
    schema_drift: str = Field(default="evolve", description="evolve, fail or ignore.")
    host: str | None = Field(default=None, description="Host override (private link, test server).")
    port: int | None = Field(default=None, description="Port override.")
    protocol: str | None = Field(default=None, description="https or http.")
    connection_args: dict[str, Any] = Field(default_factory=dict, description="Extra connector arguments.")
    file_max_rows: int | None = Field(default=1_000_000, description="Rows per staged Parquet file.")
    file_max_mb: float | None = Field(default=None, description="Approximate MB per staged Parquet file.")

    @classmethod
    def from_destination(cls, destination: SnowflakeDestination, task: TaskConfig) -> SnowflakeIOManager:
        """The IO manager of one task's ``type: snowflake`` destination."""
        return cls(
            account=destination.account,
            user=destination.user,
            password_env=destination.password_env,
            private_key_file=destination.private_key_file,
            private_key_env=destination.private_key_env,
            private_key_passphrase_env=destination.private_key_passphrase_env,
            role=destination.role,
            warehouse=destination.warehouse,
            database_template=destination.database,
            schema_template=destination.schema,
            table_template=destination.table,
            identifier_case=destination.identifier_case,
            stage=destination.stage,
            state_table=destination.state_table,
            delete_mode=destination.delete_mode,
            cdc_apply=destination.cdc_apply,
            schema_drift=task.schema_drift,
            host=destination.host,
            port=destination.port,
            protocol=destination.protocol,
            connection_args=dict(destination.connection_args),
            file_max_rows=task.file_size.rows,
            file_max_mb=task.file_size.mb,
        )

    # ------------------------------------------------------------------ plumbing

    def _connection_settings(self) -> ConnectionSettings:
        return ConnectionSettings(
            account=self.account,
            user=self.user,
            password_env=self.password_env,
            private_key_file=self.private_key_file,
            private_key_env=self.private_key_env,
            private_key_passphrase_env=self.private_key_passphrase_env,
            role=self.role,
            warehouse=self.warehouse,
            host=self.host,
            port=self.port,
            protocol=self.protocol,
            connection_args=dict(self.connection_args),
        )

    def _load_settings(self) -> LoadSettings:
        max_bytes = None if self.file_max_mb is None else max(1, int(self.file_max_mb * 1024 * 1024))
        return LoadSettings(
            case=self.identifier_case,
            stage=self.stage,
            state_table=self.state_table,
            delete_mode=self.delete_mode,
            cdc_apply=self.cdc_apply,
            schema_drift=self.schema_drift,
            file_max_rows=self.file_max_rows,
            file_max_bytes=max_bytes,
        )

    def target_for(self, stream: TableStream, run_id: str) -> TableName:
        builtins = builtin_values(
            database=stream.table.database,
            schema=stream.table.schema,
            table=stream.table.name,
            partition_key=stream.partition_key,
            run_id=run_id,
            task="",
        )
        variables = {**builtins, **{k: str(v) for k, v in stream.variables.items()}}
        return render_target(
            database=self.database_template,
            schema=self.schema_template,
            table=self.table_template,
            variables=variables,
            case=self.identifier_case,
        )

    # ------------------------------------------------------------------ output

    def handle_output(self, context: dg.OutputContext, obj: TableStream | None) -> None:
        if obj is None:  # the table steps write themselves (write_stream) and return nothing here
            return
        if not isinstance(obj, TableStream):
            raise TypeError(
                f"SnowflakeIOManager writes TableStream objects, but {context.asset_key.to_user_string()} "
                f"returned {type(obj).__name__}; give this asset another io_manager_key"
            )
        partition = context.asset_partition_key if context.has_asset_partitions else None
        context.add_output_metadata(
            dict(self.write_stream(obj, asset_key=context.asset_key, partition_key=partition, run_id=context.run_id))
        )

    def write_stream(
        self,
        stream: TableStream,
        *,
        asset_key: dg.AssetKey,
        partition_key: str | None,
        run_id: str,
        attempt: int = 0,
        run_finished: Callable[[str], bool] | None = None,
    ) -> dict[str, Any]:
        """Load one partition of one table; return its materialization metadata.

        ``run_finished`` (the S3 writer's guard for concurrent loads of one partition) is not
        needed here: the control row's compare-and-set makes the second of two loads fail.
        """
        log = dg.get_dagster_logger()
        target = self.target_for(stream, run_id)
        with open_connection(self._connection_settings()) as connection:
            started = time.monotonic()  # after the connector's import and login
            report = load_stream(
                Session(connection, target=target.display),
                stream,
                target=target,
                settings=self._load_settings(),
                load_id=new_load_id(run_id, attempt),
                run_id=run_id,
                log=log,
            )
        _WRITTEN[(asset_key.to_user_string(), partition_key)] = target
        return output_metadata(stream, report, time.monotonic() - started)

    def check_writable(self) -> str:
        """``dtaas check`` / ``dtaas health``: log in and read the session's role.

        The grants a load needs (CREATE TABLE/STAGE in each target schema) depend on the
        schema templates, so they are checked by the first load, which names the missing one.
        A network failure raises ``ConnectionError``; a refused login or a missing object the
        permanent error with its fix.
        """
        where = f"snowflake://{self.account}/{self.database_template}/{self.schema_template}"
        try:
            with open_connection(self._connection_settings()) as connection:
                role = Session(connection, target=where).scalar(sql.CURRENT_SESSION)
        except SnowflakeStatementError as exc:
            raise ConnectionError(str(exc)) from exc
        return f"{where} (role {role or '-'})"

    def verify_partition(self, *, asset_key: dg.AssetKey, partition_key: str | None) -> dict[str, Any]:
        """The ``manifest`` check: the partition's load is committed in the load log and the table reads.

        Raises ``ManifestNotFoundError`` when no load of the partition is recorded; a table that
        cannot be read raises the session's error (a RuntimeError).
        """
        what = (
            f"partition {partition_key} of {asset_key.to_user_string()}"
            if partition_key
            else asset_key.to_user_string()
        )
        target = _WRITTEN.get((asset_key.to_user_string(), partition_key)) or self._recorded_target(
            _current_instance(what), asset_key, partition_key
        )
        log_table = loads_table_of(target, self._load_settings())
        with open_connection(self._connection_settings()) as connection:
            session = Session(connection, target=target.display)
            found = loads.newest(session, log_table, target, partition_key) if partition_key else None
            if found is None:
                raise ManifestNotFoundError(
                    f"{what} has no committed load of {target.display} in {log_table.display}; load the partition again"
                )
            table_rows = int(session.scalar(sql.count_rows(target)) or 0)
        return {
            "manifest": f"snowflake://{log_table.display}",
            "files": found.files,
            "rows": found.rows,
            "load_id": found.load_id,
            "run_id": found.run_id,
            "table_rows": table_rows,
            "applied": found.applied,
        }

    # ------------------------------------------------------------------ input

    def load_input(self, context: dg.InputContext) -> Any:
        if not context.has_asset_key:
            raise TypeError("SnowflakeIOManager loads asset inputs only; this input does not come from an asset")
        asset_key = context.asset_key
        partitions: list[str | None] = (
            list(sorted(context.asset_partition_keys)) if context.has_asset_partitions else [None]
        )
        targets = {self._recorded_target(context.instance, asset_key, p) for p in partitions}
        with open_connection(self._connection_settings()) as connection:
            tables = [
                read_table(
                    Session(connection, target=t.display),
                    t,
                    state_table=t.sibling(self.state_table),
                    what=asset_key.to_user_string(),
                    soft_delete=self.delete_mode == "soft",
                )
                for t in sorted(targets, key=lambda t: t.display)
            ]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        return table.to_pandas() if _wants_pandas(context) else table

    def _recorded_target(
        self, instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None
    ) -> TableName:
        what = f"partition {partition} of {asset_key.to_user_string()}" if partition else asset_key.to_user_string()
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None),
            limit=1,
        ).records
        event = records[0].asset_materialization if records else None
        metadata = event.metadata if event is not None else {}
        if "snowflake/table" not in metadata:
            raise ManifestNotFoundError(f"{what} has no Snowflake load recorded; materialize it first")
        return TableName(*(str(metadata[f"snowflake/{part}"].value) for part in ("database", "schema", "table")))


def _current_instance(what: str) -> dg.DagsterInstance:
    """The instance of the step that runs the check (the writer protocol passes none)."""
    try:
        return dg.AssetExecutionContext.get().instance
    except dg.DagsterInvariantViolationError:
        pass
    try:
        return dg.DagsterInstance.get()
    except dg.DagsterInvariantViolationError as exc:
        raise ManifestNotFoundError(f"{what}: no Dagster instance to find its Snowflake table in") from exc


def _wants_pandas(context: dg.InputContext) -> bool:
    typing_type = getattr(context.dagster_type, "typing_type", None)
    module = getattr(typing_type, "__module__", "") or ""
    return module.startswith("pandas") and getattr(typing_type, "__name__", "") == "DataFrame"


def output_metadata(stream: TableStream, report: LoadReport, duration: float) -> dict[str, Any]:
    """Materialization metadata of one load: where the rows went, how many, how long each phase took."""
    target = report.target
    columns = [
        dg.TableColumn(
            name=f.name,
            type=snowflake_type(f.type, stream.source_types.get(f.name), column=f.name).sql,
            description=f"SQL Server type: {stream.source_types[f.name]}" if f.name in stream.source_types else None,
        )
        for f in stream.schema
    ]
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(report.rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
        "dagster/table_name": dg.MetadataValue.text(target.display),
        "snowflake/database": dg.MetadataValue.text(target.database),
        "snowflake/schema": dg.MetadataValue.text(target.schema),
        "snowflake/table": dg.MetadataValue.text(target.name),
        "load": dg.MetadataValue.text(report.kind),
        "files": dg.MetadataValue.int(report.files),
        "bytes": dg.MetadataValue.int(report.bytes),
        "duration_s": dg.MetadataValue.float(round(duration, 3)),
        "rows_per_s": dg.MetadataValue.float(round(report.rows / duration, 1) if duration > 0 else 0.0),
        "partition_key": dg.MetadataValue.text(stream.partition_key),
        "load_id": dg.MetadataValue.text(report.load_id),
    }
    for name, seconds in report.seconds.items():
        metadata[name] = dg.MetadataValue.float(round(seconds, 3))
    if report.created:
        metadata["table_created"] = dg.MetadataValue.bool(True)
    if report.drift:
        metadata["schema_drift"] = dg.MetadataValue.json(list(report.drift))
    if report.leftovers:
        metadata["leftovers_removed"] = dg.MetadataValue.json(report.leftovers)
    if report.skipped:
        metadata["skipped"] = dg.MetadataValue.text(report.skipped)
    if stream.kind == "cdc":
        for name, count in report.merged.items():
            metadata[f"rows_{name}"] = dg.MetadataValue.int(count)
    if report.state is not None and report.state.next_lsn:
        metadata["dtaas/next_lsn"] = dg.MetadataValue.text(report.state.next_lsn)
    if stream.estimated_rows is not None:
        metadata["source_row_estimate"] = dg.MetadataValue.int(stream.estimated_rows)
    metadata.update(stream_metadata(stream))  # dtaas/kind, dtaas/cdc_* (the CDC sensor reads them), counts, types
    return metadata
