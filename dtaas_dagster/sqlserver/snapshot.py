"""The full-load reader: plan the exact Arrow schema, then stream batches through arrow-odbc.

Two schemas are involved. The *fetch* schema is what arrow-odbc is asked for:
for most types it is the final type, but ``time`` and ``datetimeoffset`` are
fetched as text, because ODBC's C structs for them drop digits (TIME_STRUCT has
no fraction) or are driver-specific. :func:`convert_batch` then turns that
text into the *target* type with vectorised Arrow compute, so no value passes
through a Python loop.

The plan is made before the first row moves: when a column's exact type
depends on the data (``datetime2(7)`` under ``auto``) or arrow-odbc needs a
bound on the longest value (``(max)`` columns), one profile query reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.types import SourceColumn, arrow_type, resolve_datetime2_choice

if TYPE_CHECKING:
    from dtaas_dagster.sqlserver.resource import SqlServerResource, TableDescription

# Smallest text/binary buffer per value for (max) columns, and the room for UTF-8
# expansion: DATALENGTH counts UTF-16 bytes for nvarchar, code-page bytes for varchar.
_MIN_MAX_BUFFER = 1024
_TEXT_EXPANSION = 3


@dataclass(frozen=True)
class SnapshotPlan:
    """Everything the bulk read needs, decided before it starts."""

    description: "TableDescription"
    columns: tuple[SourceColumn, ...]
    fetch_schema: pa.Schema
    target_schema: pa.Schema
    select_sql: str
    max_text_size: int | None
    max_binary_size: int | None
    snapshot_isolation: bool
    datetime2_choices: Mapping[str, str]

    @property
    def source_types(self) -> dict[str, str]:
        return {column.name: column.type_text for column in self.columns}


def _select_columns(description: "TableDescription", wanted: list[str] | None) -> tuple[SourceColumn, ...]:
    if wanted is None:
        return description.columns
    chosen = []
    for name in wanted:
        column = description.column(name)
        if column is None:
            available = ", ".join(c.name for c in description.columns)
            raise ValueError(
                f"column {name} is not in {description.table.qualified}; columns there: {available}. "
                "Fix columns_include / columns_exclude for this table."
            )
        chosen.append(column)
    return tuple(chosen)


def _fetch_type(column: SourceColumn, target: pa.DataType) -> pa.DataType:
    if column.data_type in ("time", "datetimeoffset"):
        return pa.string()
    return target


def plan_snapshot(
    resource: "SqlServerResource",
    description: "TableDescription",
    *,
    columns: list[str] | None,
    datetime2_default: str,
    datetime2_overrides: dict[str, str],
    text_destination: bool = False,
) -> SnapshotPlan:
    selected = _select_columns(description, columns)
    options = {c.name: datetime2_overrides.get(c.name, datetime2_default) for c in selected}
    profile_columns = [
        queries.ProfileColumn(c.name, "range")
        for c in selected
        if c.needs_datetime2_choice and options[c.name] in ("auto", "timestamp_ns")
    ] + [queries.ProfileColumn(c.name, "length") for c in selected if c.is_max]
    values = iter(resource.profile(description, profile_columns))
    choices: dict[str, str] = {}
    longest_text = longest_binary = 0
    for profiled in profile_columns:
        column = description.column(profiled.name)
        assert column is not None
        if profiled.kind == "range":
            minimum, maximum, sub_us = next(values), next(values), next(values)
            choices[column.name] = resolve_datetime2_choice(
                column,
                options[column.name],
                minimum=minimum,
                maximum=maximum,
                max_sub_microsecond=sub_us,
                table=str(description.table),
                text_destination=text_destination,
            )
        else:
            length = int(next(values) or 0)
            if column.is_text:
                longest_text = max(longest_text, length * _TEXT_EXPANSION)
            else:
                longest_binary = max(longest_binary, length)
    for column in selected:
        choices.setdefault(column.name, options[column.name] if options[column.name] != "auto" else "timestamp_us")
    targets = [pa.field(c.name, arrow_type(c, choices[c.name]), nullable=c.nullable) for c in selected]
    fetch = [pa.field(f.name, _fetch_type(c, f.type), nullable=True) for c, f in zip(selected, targets)]
    has_text_max = any(c.is_max and c.is_text for c in selected)
    has_binary_max = any(c.is_max and c.is_binary for c in selected)
    return SnapshotPlan(
        description=description,
        columns=selected,
        fetch_schema=pa.schema(fetch),
        target_schema=pa.schema(targets),
        select_sql=queries.build_snapshot_select(
            description.table.schema, description.table.name, [c.name for c in selected]
        ),
        max_text_size=max(longest_text, _MIN_MAX_BUFFER) if has_text_max else None,
        max_binary_size=max(longest_binary, _MIN_MAX_BUFFER) if has_binary_max else None,
        snapshot_isolation=resource.snapshot_isolation_allowed(),
        datetime2_choices=choices,
    )


# ------------------------------------------------------------------ conversions
def _int_slice(text: pa.Array, start: int, stop: int) -> pa.Array:
    return pc.cast(pc.utf8_slice_codeunits(text, start, stop), pa.int64())


def _fraction_ns(text: pa.Array, start: int) -> pa.Array:
    """Nanoseconds from the digits after the decimal point at ``start`` ("1234567" -> 123456700)."""
    digits = pc.utf8_slice_codeunits(text, start + 1, start + 10)
    padded = pc.utf8_rpad(pc.if_else(pc.equal(digits, ""), "0", digits), 9, "0")
    return pc.cast(padded, pa.int64())


def _canonical_datetime_text(text: pa.Array) -> pa.Array:
    """Pad the year to four digits: FreeTDS writes year 1 as '1-01-01 ...', Driver 18 as '0001-01-01 ...'."""
    for digits, padding in ((1, "000"), (2, "00"), (3, "0")):
        text = pc.replace_substring_regex(text, pattern=rf"^(\d{{{digits}}})-", replacement=rf"{padding}\1-")
    return text


def _time_from_text(text: pa.Array) -> pa.Array:
    """'HH:MM:SS[.fffffff]' -> time64[ns]."""
    seconds = pc.add(
        pc.add(pc.multiply(_int_slice(text, 0, 2), 3600), pc.multiply(_int_slice(text, 3, 5), 60)),
        _int_slice(text, 6, 8),
    )
    nanos = pc.add(pc.multiply(seconds, 1_000_000_000), _fraction_ns(text, 8))
    return pc.cast(nanos, pa.time64("ns"))


def _offset_timestamp_from_text(text: pa.Array, target: pa.TimestampType) -> pa.Array:
    """'YYYY-MM-DD HH:MM:SS[.fffffff] +HH:MM' -> the UTC instant as timestamp[unit, tz=UTC]."""
    offset = pc.utf8_slice_codeunits(text, -6, None)
    local = pc.utf8_rtrim_whitespace(pc.utf8_slice_codeunits(text, 0, -6))
    base = pc.cast(pc.utf8_slice_codeunits(local, 0, 19), pa.timestamp("s"))
    unit_per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[target.unit]
    fraction = pc.divide(_fraction_ns(local, 19), 1_000_000_000 // unit_per_second)
    sign = pc.if_else(pc.equal(pc.utf8_slice_codeunits(offset, 0, 1), "-"), -1, 1)
    offset_seconds = pc.multiply(
        sign, pc.add(pc.multiply(_int_slice(offset, 1, 3), 3600), pc.multiply(_int_slice(offset, 4, 6), 60))
    )
    base_units = pc.multiply(pc.cast(base, pa.int64()), unit_per_second)
    utc_units = pc.subtract(pc.add(base_units, fraction), pc.multiply(offset_seconds, unit_per_second))
    return pc.cast(utc_units, target)


def convert_batch(batch: pa.RecordBatch, plan: SnapshotPlan) -> pa.RecordBatch:
    """Bring a fetched batch to the plan's target schema (vectorised)."""
    arrays = []
    for index, (column, target) in enumerate(zip(plan.columns, plan.target_schema)):
        array = batch.column(index)
        if column.data_type == "time":
            array = _time_from_text(array)
        elif column.data_type in ("datetime2", "datetimeoffset") and pa.types.is_string(array.type):
            array = _canonical_datetime_text(array)
            if pa.types.is_timestamp(target.type):
                array = _offset_timestamp_from_text(array, target.type)
        if not array.type.equals(target.type):
            array = array.cast(target.type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=plan.target_schema)


def read_batches(
    plan: SnapshotPlan,
    *,
    connection_string: str,
    user: str,
    password: str,
    login_timeout_seconds: int,
    query_timeout_seconds: int | None,
    batch_rows: int | None,
    batch_mb: float | None,
) -> Iterator[pa.RecordBatch]:
    """Run the snapshot SELECT through arrow-odbc and yield target-schema batches."""
    from arrow_odbc import read_arrow_batches_from_odbc

    reader = read_arrow_batches_from_odbc(
        query=queries.snapshot_batch(plan.select_sql, snapshot_isolation=plan.snapshot_isolation),
        connection_string=connection_string,
        password=password,
        batch_size=batch_rows or 1_000_000,
        max_bytes_per_batch=int(batch_mb * 1024 * 1024) if batch_mb else 512 * 1024 * 1024,
        max_text_size=plan.max_text_size,
        max_binary_size=plan.max_binary_size,
        login_timeout_sec=login_timeout_seconds,
        query_timeout_sec=query_timeout_seconds,
        schema=plan.fetch_schema,
    )
    received = 0
    for batch in reader:
        received += batch.num_rows
        yield convert_batch(batch, plan)
    check_complete(reader, received, table=str(plan.description.table))


class IncompleteRead(RuntimeError):
    """The result ended before SQL Server said it had sent every row (a dropped connection)."""


def check_complete(reader: object, received: int, *, table: str) -> None:
    """Compare the rows received with ROWCOUNT_BIG() from the same batch; raise when they differ.

    When the connection drops mid-result, the count's result set never arrives,
    so ``more_results()`` is False (or raises): that is an incomplete read too.
    """
    try:
        has_count = reader.more_results(batch_size=1)  # type: ignore[attr-defined]
        counts = [row for batch in reader for row in batch.column(0).to_pylist()] if has_count else []
    except Exception as exc:  # noqa: BLE001 - any failure here means the batch did not finish
        raise IncompleteRead(
            f"reading {table} stopped after {received:,} rows: the connection ended before SQL Server "
            f"finished the result ({exc}); the load will be retried"
        ) from None
    if not counts:
        raise IncompleteRead(
            f"reading {table} stopped after {received:,} rows: the connection ended before SQL Server "
            "finished the result; the load will be retried"
        )
    if int(counts[0]) != received:
        raise IncompleteRead(
            f"reading {table}: received {received:,} rows but SQL Server sent {int(counts[0]):,}; "
            "the load will be retried"
        )
