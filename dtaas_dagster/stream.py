"""What a table asset hands to a destination IO manager: a lazy stream of Arrow batches.

The asset never materialises a table in memory. It returns a :class:`TableStream`
whose ``batches`` iterator pulls from the ODBC driver as the IO manager writes,
so peak memory depends on the batch size, not on the table size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class SourceCount:
    """The rows of one read as SQL Server reported them, filled in while the stream is drained.

    ``sent`` is ``ROWCOUNT_BIG()`` from the read's own batch (None until the result
    ended cleanly); ``dropped`` counts rows left out on purpose (the update
    before-images a change window does not write). A complete load writes
    ``sent - dropped`` rows: the ``row_count`` asset check compares them.
    """

    received: int = 0
    sent: int | None = None
    dropped: int = 0

    @property
    def expected(self) -> int | None:
        return None if self.sent is None else self.sent - self.dropped


@dataclass
class TableStream:
    """One load window of one table, ready to be written.

    ``schema`` is the Arrow schema every batch has. ``variables`` are the
    resolved path-template variables (built-ins such as ``sourceTableName`` and
    ``partitionKey`` plus global ones). ``source_types`` maps column name to its
    SQL Server type text (for ``dagster/column_schema`` descriptions).
    ``primary_key`` is the table's key columns (may be empty). ``kind`` is
    ``snapshot`` or ``cdc``; ``cdc`` holds what the manifest records about CDC
    (a snapshot's ``start_lsn``; a change window's ``capture_instance``,
    ``from_lsn``, ``to_lsn``); ``schema_change`` describes columns that changed
    since the previous load (empty when none). ``metadata`` is what the load
    used (transforms, pushdown, variables), for the materialization;
    ``source_count`` is what SQL Server reported for the read, complete once
    ``batches`` is exhausted. ``unique_columns`` hold a distinct value for (nearly)
    every row by construction (a change window's ``_dtaas_seqval``; only an
    update's two images share one): file writers skip dictionary encoding for them.
    """

    table: TableRef
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    partition_key: str
    estimated_rows: int | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    source_types: Mapping[str, str] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    kind: str = "snapshot"
    cdc: Mapping[str, str] = field(default_factory=dict)
    schema_change: Mapping[str, list[str]] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source_count: SourceCount = field(default_factory=SourceCount)
    unique_columns: tuple[str, ...] = ()
