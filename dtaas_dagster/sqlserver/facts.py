"""What the catalog says about a server and its tables: plain values, no connections.

The resource (:mod:`.resource`) reads these with named queries; the planner
(:mod:`.snapshot`) is a function of them. Neither calls the other. (Plus
:func:`result_sets`, which the resource and the facts session both read batches with.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dtaas_dagster.sqlserver.cdc import CaptureInstance
from dtaas_dagster.sqlserver.lsn import Lsn
from dtaas_dagster.sqlserver.types import SourceColumn
from dtaas_dagster.stream import TableRef


@dataclass(frozen=True)
class TableInfo:
    """One user table of a database, as ``dtaas tables`` lists it."""

    schema: str
    name: str
    row_estimate: int | None


@dataclass(frozen=True)
class TableDescription:
    """Columns (in catalog order), primary key and row estimate of one table."""

    table: TableRef
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...] = ()
    row_estimate: int | None = None

    def column(self, name: str) -> SourceColumn | None:
        """The column called ``name``, compared case-insensitively as SQL Server does."""
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)


@dataclass(frozen=True)
class DatabaseOptions:
    """The ``sys.databases`` settings a load depends on."""

    snapshot_isolation: bool
    cdc_enabled: bool
    read_committed_snapshot: bool = False


@dataclass(frozen=True)
class ServerInfo:
    """What preflight reports about a source."""

    product_version: str
    edition: str
    database: str
    snapshot_isolation: bool
    cdc_enabled: bool
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableFacts:
    """Everything planning a read of one table needs, read over one connection.

    For a snapshot that CDC continues from, ``cdc_max_lsn`` is
    ``sys.fn_cdc_get_max_lsn()`` read BEFORE the snapshot's SELECT starts, and
    ``capture_instances`` are the table's (see docs/cdc.md, "the handoff").
    """

    description: TableDescription
    options: DatabaseOptions
    profile: tuple[object, ...] = ()
    cdc_max_lsn: Lsn | None = None
    capture_instances: tuple[CaptureInstance, ...] = ()
    cdc_min_lsn: Lsn | None = None  # of the capture instance a change window reads


def columns_from_rows(rows: Sequence[Any]) -> tuple[SourceColumn, ...]:
    """Columns from TABLE_COLUMNS rows: name, type, length, precision, scale, datetime precision, nullable."""
    return tuple(
        SourceColumn(
            name=str(r[0]),
            data_type=str(r[1]).lower(),
            char_length=None if r[2] is None else int(r[2]),
            precision=None if r[3] is None else int(r[3]),
            scale=None if r[4] is None else int(r[4]),
            datetime_precision=None if r[5] is None else int(r[5]),
            nullable=str(r[6]).upper() == "YES",
        )
        for r in rows
    )


def result_sets(cursor: Any, count: int) -> list[list[Any]]:
    """The rows of the next ``count`` result sets of a batch (row-count-only results skipped)."""
    results: list[list[Any]] = []
    while len(results) < count:
        if cursor.description is not None:
            results.append(cursor.fetchall())
            if len(results) == count:
                break
        if not cursor.nextset():
            raise RuntimeError(f"SQL Server returned {len(results)} of the {count} result sets of a batch")
    return results
