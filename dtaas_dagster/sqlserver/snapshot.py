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
Planning is a pure function of :class:`~dtaas_dagster.sqlserver.facts.TableFacts`:
:func:`profile_columns` says what to profile, the resource reads the facts
(one connection), :func:`plan_snapshot` decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.bulk import BulkRead
from dtaas_dagster.sqlserver.facts import TableDescription, TableFacts
from dtaas_dagster.sqlserver.types import SourceColumn, arrow_type, resolve_datetime2_choice

# Smallest text/binary buffer per value for (max) columns, and the room for UTF-8
# expansion: DATALENGTH counts UTF-16 bytes for nvarchar, code-page bytes for varchar.
_MIN_MAX_BUFFER = 1024
_TEXT_EXPANSION = 3


@dataclass(frozen=True)
class SnapshotPlan:
    """Everything the bulk read needs, decided before it starts."""

    description: TableDescription
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


def _select_columns(description: TableDescription, wanted: Sequence[str] | None) -> tuple[SourceColumn, ...]:
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


def _column_options(
    selected: Sequence[SourceColumn], datetime2_default: str, datetime2_overrides: Mapping[str, str]
) -> dict[str, str]:
    overrides = {name.lower(): option for name, option in datetime2_overrides.items()}
    return {c.name: overrides.get(c.name.lower(), datetime2_default) for c in selected}


@dataclass(frozen=True)
class SnapshotOptions:
    """What the task config says about one table's read."""

    columns: tuple[str, ...] | None = None
    datetime2_default: str = "auto"
    datetime2_overrides: Mapping[str, str] = field(default_factory=dict)
    text_destination: bool = False


def profile_columns(description: TableDescription, options: SnapshotOptions) -> list[queries.ProfileColumn]:
    """The columns whose range (datetime2(7)) or longest value ((max)) the plan needs."""
    selected = _select_columns(description, options.columns)
    per_column = _column_options(selected, options.datetime2_default, options.datetime2_overrides)
    return [
        queries.ProfileColumn(c.name, "range")
        for c in selected
        if c.needs_datetime2_choice and per_column[c.name] in ("auto", "timestamp_ns")
    ] + [queries.ProfileColumn(c.name, "length") for c in selected if c.is_max]


def _check_overrides(description: TableDescription, overrides: Mapping[str, str]) -> None:
    unknown = [name for name in overrides if description.column(name) is None]
    if unknown:
        raise ValueError(
            f"datetime2 options for {description.table.qualified} name {', '.join(sorted(unknown))}, which "
            f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of the table (names compare "
            f"case-insensitively); columns there: {', '.join(c.name for c in description.columns)}. "
            "Fix the table's datetime2 entry in dtaas.yaml."
        )


def plan_snapshot(facts: TableFacts, options: SnapshotOptions) -> SnapshotPlan:
    """Columns, exact Arrow types and buffer bounds, from the facts (the profile values included)."""
    description = facts.description
    _check_overrides(description, options.datetime2_overrides)
    selected = _select_columns(description, options.columns)
    per_column = _column_options(selected, options.datetime2_default, options.datetime2_overrides)
    values = iter(facts.profile)
    choices: dict[str, str] = {}
    longest_text = longest_binary = 0
    for profiled in profile_columns(description, options):
        column = description.column(profiled.name)
        assert column is not None
        if profiled.kind == "range":
            minimum, maximum, sub_us = (cast(Any, next(values)) for _ in range(3))
            choices[column.name] = resolve_datetime2_choice(
                column,
                per_column[column.name],
                minimum=minimum,
                maximum=maximum,
                max_sub_microsecond=sub_us,
                table=str(description.table),
                text_destination=options.text_destination,
            )
        else:
            length = int(cast(Any, next(values)) or 0)
            if column.is_text:
                longest_text = max(longest_text, length * _TEXT_EXPANSION)
            else:
                longest_binary = max(longest_binary, length)
    for column in selected:
        choices.setdefault(column.name, per_column[column.name] if per_column[column.name] != "auto" else "timestamp_us")
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
        snapshot_isolation=facts.options.snapshot_isolation,
        datetime2_choices=choices,
    )


def snapshot_read(plan: SnapshotPlan) -> BulkRead:
    """The arrow-odbc read of a plan: [SET SNAPSHOT;] SELECT ...; SELECT ROWCOUNT_BIG()."""
    return BulkRead(
        sql=queries.snapshot_batch(plan.select_sql, snapshot_isolation=plan.snapshot_isolation),
        fetch_schema=plan.fetch_schema,
        what=str(plan.description.table),
        max_text_size=plan.max_text_size,
        max_binary_size=plan.max_binary_size,
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
