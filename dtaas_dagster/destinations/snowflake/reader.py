"""Reading a loaded table back as Arrow, in the exact types the source stream had.

The control row keeps the Arrow schema of the newest load (source column
names and types) and the Snowflake name of each column. The connector returns
Snowflake's own Arrow types (NUMBER as decimal or int64, TIME and timestamps
in its units); each column is cast back to the recorded type, so a downstream
asset gets the same schema from Snowflake as from S3.
"""

from __future__ import annotations

import pyarrow as pa

from dtaas_dagster.destinations.snowflake import sql, state
from dtaas_dagster.destinations.snowflake.names import TableName
from dtaas_dagster.destinations.snowflake.session import Session
from dtaas_dagster.manifest import ManifestNotFoundError

SOFT_DELETE_FIELDS = (
    pa.field("_dtaas_deleted", pa.bool_()),
    pa.field("_dtaas_deleted_at", pa.timestamp("ns", tz="UTC")),
)


def read_table(
    session: Session, target: TableName, *, state_table: TableName, what: str, soft_delete: bool = False
) -> pa.Table:
    """Every row of ``target``, columns as the newest load recorded them (plus soft-delete flags)."""
    recorded = state.read(session, state_table, target)
    if recorded is None or recorded.schema() is None:
        raise ManifestNotFoundError(
            f"{what}: {target.display} has no load recorded in {state_table.display}; materialize it first"
        )
    schema = recorded.schema()
    assert schema is not None
    names = [snowflake for _, snowflake in recorded.columns]
    fields = list(schema)
    if soft_delete:
        names += [name for name, _ in sql.SOFT_DELETE_COLUMNS]
        fields += list(SOFT_DELETE_FIELDS)
    wanted = pa.schema(fields)
    cursor = session.run(sql.select_columns(target, names))
    # Each result chunk is cast on its own: the connector may pick another Arrow type per chunk.
    parts = [_cast(chunk, wanted) for chunk in (cursor.fetch_arrow_batches() or ()) if chunk.num_rows]
    return pa.concat_tables(parts) if parts else wanted.empty_table()


def _cast(chunk: pa.Table, wanted: pa.Schema) -> pa.Table:
    columns = [chunk.column(i).cast(field.type) for i, field in enumerate(wanted)]
    return pa.Table.from_arrays(columns, schema=wanted)
