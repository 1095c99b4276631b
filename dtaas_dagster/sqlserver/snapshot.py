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
from dtaas_dagster.sqlserver.types import (
    Datetime2PrecisionError,
    ExactTimestamp,
    SourceColumn,
    arrow_type,
    resolve_datetime2_choice,
)

# Smallest text/binary buffer per value for (max) columns.
_MIN_MAX_BUFFER = 1024
_UTF16_TYPES = {"nchar", "nvarchar", "ntext", "sysname"}


def _utf8_bound(column: SourceColumn, datalength: int) -> int:
    """Most UTF-8 bytes a value of ``datalength`` bytes can become (arrow-odbc fetches UTF-8).

    nvarchar counts UTF-16 bytes: 2 become at most 3 in UTF-8 (4 stay 4 for a
    surrogate pair). varchar counts code-page bytes: one can become 3 (cp1252's 0x80 is €).
    """
    return (datalength * 3 + 1) // 2 if column.data_type in _UTF16_TYPES else datalength * 3


def _row_bytes(columns: Sequence[SourceColumn], max_text: int | None, max_binary: int | None) -> int:
    """A generous bound on one row in arrow-odbc's transit buffer (value slots + length indicators)."""
    total = 0
    for column in columns:
        if column.is_max:
            total += (max_text if column.is_text else max_binary) or _MIN_MAX_BUFFER
        elif column.is_text:
            total += 4 * (column.char_length or 1)
        elif column.is_binary:
            total += column.char_length or 8
        else:
            total += 64  # numbers, dates, and time/datetimeoffset fetched as short text
        total += 16
    return total


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
    row_bytes: int
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
    """Each column's datetime2 option. The task-wide default applies only where a choice is
    needed (datetime2(7) / datetimeoffset(7)); other temporal columns keep their exact
    timestamp type unless a per-column entry names them."""
    overrides = {name.lower(): option for name, option in datetime2_overrides.items()}
    return {
        c.name: overrides.get(c.name.lower(), datetime2_default if c.needs_datetime2_choice else "auto")
        for c in selected
    }


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
    choices, longest_text, longest_binary = _apply_profile(facts, options, per_column)
    for column in selected:
        choices.setdefault(
            column.name, per_column[column.name] if per_column[column.name] != "auto" else "timestamp_us"
        )
    targets = [pa.field(c.name, arrow_type(c, choices[c.name]), nullable=c.nullable) for c in selected]
    fetch = [pa.field(f.name, _fetch_type(c, f.type), nullable=True) for c, f in zip(selected, targets)]
    has_text_max = any(c.is_max and c.is_text for c in selected)
    has_binary_max = any(c.is_max and c.is_binary for c in selected)
    max_text = max(longest_text, _MIN_MAX_BUFFER) if has_text_max else None
    max_binary = max(longest_binary, _MIN_MAX_BUFFER) if has_binary_max else None
    return SnapshotPlan(
        description=description,
        columns=selected,
        fetch_schema=pa.schema(fetch),
        target_schema=pa.schema(targets),
        select_sql=queries.build_snapshot_select(
            description.table.schema, description.table.name, [c.name for c in selected]
        ),
        max_text_size=max_text,
        max_binary_size=max_binary,
        row_bytes=_row_bytes(selected, max_text, max_binary),
        snapshot_isolation=facts.options.snapshot_isolation,
        datetime2_choices=choices,
    )


def _apply_profile(
    facts: TableFacts, options: SnapshotOptions, per_column: Mapping[str, str]
) -> tuple[dict[str, str], int, int]:
    """The datetime2 choices of the profiled columns and the longest text (UTF-8) and binary values.

    Every datetime2 column that fits no type is collected first, so one error names them all.
    """
    description = facts.description
    # the profile row's values, in profile_columns order (pyodbc gives them untyped)
    values = iter(cast(tuple[Any, ...], facts.profile))
    choices: dict[str, str] = {}
    problems: list[str] = []
    longest_text = longest_binary = 0
    for profiled in profile_columns(description, options):
        column = description.column(profiled.name)
        assert column is not None
        if profiled.kind == "range":
            minimum, maximum, sub_us, minimum_ns, maximum_ns = [next(values) for _ in range(5)]
            try:
                choices[column.name] = resolve_datetime2_choice(
                    column,
                    per_column[column.name],
                    minimum=None if minimum is None else ExactTimestamp.from_parts(minimum, minimum_ns),
                    maximum=None if maximum is None else ExactTimestamp.from_parts(maximum, maximum_ns),
                    max_sub_microsecond=sub_us,
                    table=str(description.table),
                    text_destination=options.text_destination,
                )
            except Datetime2PrecisionError as exc:
                problems.append(str(exc))
        elif column.is_text:
            longest_text = max(longest_text, _utf8_bound(column, int(next(values) or 0)))
        else:
            longest_binary = max(longest_binary, int(next(values) or 0))
    if problems:
        raise Datetime2PrecisionError(_datetime2_problems(problems, str(description.table)))
    return choices, longest_text, longest_binary


def _datetime2_problems(problems: Sequence[str], table: str) -> str:
    if len(problems) == 1:
        return f"{problems[0]} Nothing was written."
    lines = "\n".join(f"- {problem}" for problem in problems)
    return f"{len(problems)} columns of {table} fit no timestamp type exactly; nothing was written:\n{lines}"


def snapshot_read(plan: SnapshotPlan) -> BulkRead:
    """The arrow-odbc read of a plan: [SET SNAPSHOT;] SELECT ...; SELECT ROWCOUNT_BIG()."""
    return BulkRead(
        sql=queries.snapshot_batch(plan.select_sql, snapshot_isolation=plan.snapshot_isolation),
        fetch_schema=plan.fetch_schema,
        what=str(plan.description.table),
        max_text_size=plan.max_text_size,
        max_binary_size=plan.max_binary_size,
        row_bytes=plan.row_bytes,
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
