"""The thin layer between a table step and the transforms: op config, variables, the chain, metadata.

- **Op config.** Each table step (a subsettable multi-asset grouping tables) has
  the op config ``{tables: {"dbo.orders": {transformations: [...]}}}`` whose
  default is the YAML's transforms, so the launchpad shows them and a user can
  edit them for one run (``dagster job execute --config``). The step parses all
  of it before any table loads; a bad entry fails the step and nothing is written.
- **Variables.** Per table and run: the built-ins plus ``VariablesResource``'s
  static and query values.
- **The chain.** Compiled against the planned Arrow schema before the read
  starts (errors name the table, the position and the fix); pushable
  filter_rows conditions become the read's WHERE clause; the rest runs per
  batch on the read-ahead thread.
- **Metadata.** What a run actually used: ``dtaas/transforms``,
  ``dtaas/filter_pushdown`` and ``dtaas/variables``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from dtaas_dagster.config.base import Model
from dtaas_dagster.config.errors import error_lines
from dtaas_dagster.config.transforms import TransformSpec
from dtaas_dagster.errors import PermanentLoadError
from dtaas_dagster.sqlserver.bulk import BulkRead
from dtaas_dagster.sqlserver.where import build_where, filtered_read
from dtaas_dagster.stream import SourceCount
from dtaas_dagster.transforms.chain import Chain, TableContext, TransformError
from dtaas_dagster.transforms.compile import compile_chain
from dtaas_dagster.variables import VariableError, VariablesResource, builtin_values

if TYPE_CHECKING:
    from dtaas_dagster.sqlserver.snapshot import SnapshotPlan
    from dtaas_dagster.table_load import TableSpec

VARIABLES_KEY = "dtaas_variables"


class StepTransforms(Model):
    """One table's entry in the step's op config."""

    transformations: list[TransformSpec] = []


def _as_config(specs: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [
        spec.model_dump(mode="json", exclude_defaults=True) | {"type": spec.type}  # type: ignore[attr-defined]
        for spec in specs
    ]


def op_config_field(specs: Sequence[TableSpec]) -> dict[str, dg.Field]:
    """The step's op config: per table its transformations, the YAML's as default."""
    defaults = {spec.qualified: {"transformations": _as_config(spec.transformations)} for spec in specs}
    tables = {
        name: dg.Field(
            dg.Shape(
                {
                    "transformations": dg.Field(
                        dg.Array(dg.Permissive()),
                        default_value=value["transformations"],
                        is_required=False,
                        description="Transforms of this table, in order "
                        "({type: ..., config: {...}}; docs/transforms.md).",
                    )
                }
            ),
            is_required=False,
            default_value=value,
        )
        for name, value in defaults.items()
    }
    return {
        "tables": dg.Field(
            dg.Shape(tables),
            is_required=False,
            default_value=defaults,
            description="Transforms per table (schema.table); the default is dtaas.yaml's. Edit them here for one run.",
        )
    }


def step_transforms(op_config: Mapping[str, Any] | None, specs: Sequence[TableSpec]) -> dict[str, tuple[Any, ...]]:
    """Each selected table's transforms for this run, parsed and checked (a bad entry fails the step)."""
    tables = (op_config or {}).get("tables") or {}
    parsed: dict[str, tuple[Any, ...]] = {}
    problems: list[str] = []
    for spec in specs:
        entry = tables.get(spec.qualified)
        if entry is None:
            parsed[spec.qualified] = tuple(spec.transformations)
            continue
        try:
            parsed[spec.qualified] = tuple(StepTransforms.model_validate(entry).transformations)
        except ValidationError as exc:
            problems += [f"op config tables.{spec.qualified}.{line}" for line in error_lines(exc, StepTransforms)]
    if problems:
        raise dg.Failure(
            description="the transforms in this run's config are invalid; nothing was loaded:\n" + "\n".join(problems),
            allow_retries=False,
        )
    return parsed


def table_variables(
    context: dg.AssetExecutionContext,
    spec: TableSpec,
    *,
    database: str,
    partition_key: str,
) -> dict[str, str]:
    """Built-ins, static and query variables of one table in this run (query values cached per run)."""
    from dtaas_dagster.factory import sqlserver_resource_key

    resource: VariablesResource = getattr(context.resources, VARIABLES_KEY)
    builtins = builtin_values(
        database=database,
        schema=spec.schema,
        table=spec.table,
        partition_key=partition_key,
        run_id=context.run.run_id,
        task=spec.task,
    )
    try:
        return resource.resolve(
            builtins=builtins,
            run_id=context.run.run_id,
            source=lambda name: getattr(context.resources, sqlserver_resource_key(name)),
        )
    except VariableError as exc:
        raise PermanentLoadError(str(exc)) from None


@dataclass
class PreparedTransforms:
    chain: Chain
    read: BulkRead
    metadata: dict[str, Any]


def prepare_transforms(
    spec: TableSpec,
    schema: pa.Schema,
    source_types: Mapping[str, str],
    read: BulkRead,
    *,
    snapshot: SnapshotPlan | None,
    transforms: Sequence[Any],
    primary_key: Sequence[str],
    variables: Mapping[str, str],
    log: Any,
) -> PreparedTransforms:
    """Check and compile the chain against the read's Arrow ``schema`` before any row moves.

    For a snapshot read (``snapshot`` given), filter_rows conditions that push
    down become the read's WHERE clause. For a change read (``snapshot=None``)
    the schema includes the ``_dtaas_`` change columns and nothing is pushed
    down: a pushed condition would hide the updates that stop a row matching
    (:func:`transformed_changes` runs the chain).
    """
    context = TableContext(
        table=spec.qualified,
        primary_key=tuple(primary_key),
        key_required=spec.needs_primary_key,
        variables=variables,
        source_types=source_types,
        allow_pushdown=snapshot is not None,
    )
    try:
        chain = compile_chain(transforms, schema, context)
    except TransformError as exc:
        raise PermanentLoadError(str(exc)) from None
    metadata: dict[str, Any] = {
        "dtaas/transforms": dg.MetadataValue.json(_as_config(transforms)),
        "dtaas/variables": dg.MetadataValue.json(dict(sorted(variables.items()))),
    }
    if chain.pushdown is not None and snapshot is not None:
        where, parameters = build_where(chain.pushdown.predicate)
        read = filtered_read(
            read,
            select_sql=snapshot.select_sql,
            snapshot_isolation=snapshot.snapshot_isolation,
            predicate=chain.pushdown.predicate,
        )
        metadata["dtaas/filter_pushdown"] = dg.MetadataValue.json(
            {"where": where, "parameters": list(parameters), "conditions": list(chain.pushdown.conditions)}
        )
        log.info(f"{spec.qualified}: filter pushed down to SQL Server: WHERE {where} {list(parameters)}")
    if transforms:
        log.info(
            f"{spec.qualified}: {len(transforms)} transform(s); output columns: {', '.join(chain.output_schema.names)}"
        )
    return PreparedTransforms(chain=chain, read=read, metadata=metadata)


def transformed(
    chain: Chain, batches: Iterator[pa.RecordBatch], count: SourceCount | None = None
) -> Iterator[pa.RecordBatch]:
    """Run the chain per batch; a value a transform cannot handle fails the table for good.

    Rows a filter leaves out are added to ``count.dropped`` (the row_count check).
    """
    if chain.is_identity:
        yield from batches
        return
    try:
        for batch in batches:
            out = chain.apply(batch)
            if count is not None:
                count.dropped += batch.num_rows - out.num_rows
            if out.num_rows:  # a batch the filters empty is left out
                yield out
    except TransformError as exc:
        raise PermanentLoadError(str(exc)) from None


def transformed_changes(
    chain: Chain, batches: Iterator[pa.RecordBatch], count: SourceCount | None = None
) -> Iterator[pa.RecordBatch]:
    """Run the chain on CDC change batches (:meth:`Chain.apply_changes`: filter_rows acts per operation)."""
    if chain.is_identity:
        yield from batches
        return
    try:
        for batch in batches:
            out = chain.apply_changes(batch)
            if count is not None:
                count.dropped += batch.num_rows - out.num_rows
            if out.num_rows:
                yield out
    except TransformError as exc:
        raise PermanentLoadError(str(exc)) from None


def source_types_after(chain: Chain, source_types: Mapping[str, str]) -> dict[str, str]:
    """SQL Server types of the output columns that are still source columns (renamed ones included)."""
    return {name: source_types[source] for name, source in chain.renamed_sources.items() if source in source_types}
