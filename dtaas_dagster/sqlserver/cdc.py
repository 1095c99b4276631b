"""Change Data Capture on the SQL Server side: capture instances, the tick probe, change windows.

Vocabulary (SQL Server's and Debezium's): a *capture instance* (``dbo_orders``)
tracks one source table into its *change table* (``cdc.dbo_orders_CT``); a
table has at most two instances at once, the second created after DDL. A
*change window* is ``[from_lsn, to_lsn]`` (both inclusive, as
``cdc.fn_cdc_get_all_changes_<instance>`` takes them) of one instance. The
*probe* of a sensor tick is one batch: the max LSN, and per instance its min LSN
(older changes were purged) and the first change at or after a given LSN.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dtaas_dagster.sqlserver.lsn import Lsn


@dataclass(frozen=True)
class CaptureInstance:
    """One row of cdc.change_tables with its source table."""

    schema: str
    table: str
    name: str
    start_lsn: Lsn
    create_date: dt.datetime

    def tracks(self, schema: str, table: str) -> bool:
        return self.schema.lower() == schema.lower() and self.table.lower() == table.lower()


@dataclass(frozen=True)
class InstanceProbe:
    """What a tick learned about one capture instance."""

    name: str
    min_lsn: Lsn
    first_change: Lsn | None  # the first change at or after the asked LSN (up to max_lsn), if any
    asked_from: Lsn | None = None  # the LSN the probe looked from (None: from the beginning)


@dataclass(frozen=True)
class CdcProbe:
    """The tick's view of the database: the max LSN and the probed instances."""

    max_lsn: Lsn
    instances: dict[str, InstanceProbe]


@dataclass(frozen=True)
class ChangeWindow:
    """The changes one run reads for one table: one capture instance, both ends inclusive."""

    capture_instance: str
    from_lsn: Lsn
    to_lsn: Lsn

    def as_config(self) -> dict[str, str]:
        return {"capture_instance": self.capture_instance, "from_lsn": self.from_lsn.hex, "to_lsn": self.to_lsn.hex}

    @classmethod
    def from_config(cls, data: dict[str, str]) -> ChangeWindow:
        return cls(
            str(data["capture_instance"]), Lsn.from_hex(str(data["from_lsn"])), Lsn.from_hex(str(data["to_lsn"]))
        )

    def __str__(self) -> str:
        return f"{self.capture_instance} [{self.from_lsn.hex} .. {self.to_lsn.hex}]"


def instances_of(instances: list[CaptureInstance], schema: str, table: str) -> list[CaptureInstance]:
    """The capture instances of one table, oldest first."""
    return sorted((i for i in instances if i.tracks(schema, table)), key=lambda i: (i.start_lsn, i.create_date))


class CdcNotEnabled(RuntimeError):
    """A table (or its database) has no capture instance; the message says which statement enables it."""


def database_not_enabled(database: str, source: str) -> CdcNotEnabled:
    """``sys.fn_cdc_get_max_lsn()`` is NULL: the database is not enabled for CDC."""
    return CdcNotEnabled(
        f"CDC is not enabled on database {database} of source '{source}': run "
        "EXEC sys.sp_cdc_enable_db in it (and enable each table), see docs/cdc.md"
    )


def probe_parameters(froms: dict[str, Lsn]) -> tuple[list[str], list[object]]:
    """The capture instances in order, and the bound parameters of a per-instance probe batch
    (name, name, from LSN per instance; see queries.build_cdc_probe / build_cdc_lag_probe)."""
    names = sorted(froms)
    params: list[object] = []
    for name in names:
        params += [name, name, froms[name].to_bytes()]
    return names, params


def enable_statement(schema: str, table: str) -> str:
    """The T-SQL a DBA runs to capture a table (shown in messages, never run by us)."""
    quoted_schema, quoted_table = schema.replace("'", "''"), table.replace("'", "''")
    return (
        f"EXEC sys.sp_cdc_enable_table @source_schema = N'{quoted_schema}', @source_name = N'{quoted_table}', "
        "@role_name = NULL"
    )
