"""Columns, SQL Server types and the primary key on the asset page before the first load.

``dtaas check --observe`` plans every table as a load would (the catalog over
one connection, :func:`dtaas_dagster.table_load.plan_table`) and records an
``AssetObservation`` per table asset in the Dagster instance
(``DagsterInstance.report_runless_asset_event``): ``dagster/column_schema``
with the Arrow type each column will have, its SQL Server type and
nullability, ``primary_key`` and the row estimate. No data is read. The
compose file's ``dagster-init`` service runs it, so a new deployment shows
every table's columns before anything loaded; run it again after a schema
change. Materializations later carry the same schema as written.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from dtaas_dagster.table_load import TablePlan, TableSpec


def catalog_observation(spec: TableSpec, planned: TablePlan) -> dg.AssetObservation:
    """What the catalog says about one table, as an observation of its asset."""
    source = {column.name: column for column in planned.plan.columns}
    key_columns = set(planned.primary_key)
    columns = []
    for field in planned.plan.target_schema:
        column = source.get(field.name)
        columns.append(
            dg.TableColumn(
                name=field.name,
                type=str(field.type),
                description=f"SQL Server type: {column.type_text}" if column else None,
                constraints=dg.TableColumnConstraints(
                    nullable=column.nullable if column else True,
                    unique=field.name in key_columns and len(key_columns) == 1,
                ),
            )
        )
    description = planned.facts.description
    return dg.AssetObservation(
        asset_key=spec.asset_key,
        description=f"catalog of {description.table.database}.{spec.qualified} (dtaas check --observe)",
        metadata={
            "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
            "primary_key": dg.MetadataValue.json(list(planned.primary_key)),
            "source_row_estimate": dg.MetadataValue.int(int(description.row_estimate or 0)),
            "source_table": dg.MetadataValue.text(f"{description.table.database}.{spec.qualified}"),
        },
    )


def record_observations(observations: Sequence[dg.AssetObservation]) -> str:
    """Record the observations in the instance of ``$DAGSTER_HOME``; returns where."""
    with dg.DagsterInstance.get() as instance:
        for observation in observations:
            instance.report_runless_asset_event(observation)
        return str(instance.root_directory)
