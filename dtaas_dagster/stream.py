"""What a table asset hands to a destination IO manager: a lazy stream of Arrow batches.

The asset never materialises a table in memory. It returns a :class:`TableStream`
whose ``batches`` iterator pulls from the ODBC driver as the IO manager writes,
so peak memory depends on the batch size, not on the table size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass(frozen=True)
class TableRef:
    """A source table: database, schema and table name as the catalog spells them."""

    database: str
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def __str__(self) -> str:
        return f"{self.database}.{self.schema}.{self.name}"


@dataclass(frozen=True)
class ChangeWindow:
    """The LSN range of one CDC partition: changes with ``from_lsn <= LSN <= to_lsn``.

    LSNs are 20 lower-case hex digits (``_dtaas_lsn``), so text order is LSN order.
    """

    from_lsn: str
    to_lsn: str


@dataclass
class TableStream:
    """One load window of one table, ready to be written.

    ``schema`` is the Arrow schema every batch has. ``variables`` are the
    resolved path-template variables (built-ins such as ``sourceTableName`` and
    ``partitionKey`` plus global ones). ``source_types`` maps column name to its
    SQL Server type text (for ``dagster/column_schema`` descriptions).
    ``primary_key`` is the table's key columns (may be empty).
    ``change_window`` is set for a CDC partition (its batches carry the change
    columns ``_dtaas_op``, ``_dtaas_lsn``, ``_dtaas_seqval``, ``_dtaas_commit_time``);
    ``cdc_start_lsn`` is set for a snapshot that CDC continues from (the first
    LSN whose changes the snapshot may not contain).
    """

    table: TableRef
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    partition_key: str
    estimated_rows: int | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    source_types: Mapping[str, str] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    change_window: ChangeWindow | None = None
    cdc_start_lsn: str | None = None
