"""The datetime2(7) range check: exact bounds, exact values in the message, every bad column named.

timestamp[ns] holds 1677-09-21 00:12:43.145224192 .. 2262-04-11 23:47:16.854775807, so
the first and last datetime2(7) values inside are ...43.1452242 and ...16.8547758.
"""

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.sqlserver.facts import DatabaseOptions, TableDescription, TableFacts
from dtaas_dagster.sqlserver.snapshot import SnapshotOptions, convert_batch, plan_snapshot, snapshot_read
from dtaas_dagster.sqlserver.types import (
    Datetime2PrecisionError,
    ExactTimestamp,
    SourceColumn,
    resolve_datetime2_choice,
)
from dtaas_dagster.stream import TableRef
from dtaas_dagster_tests.sqlserver.test_resource import DRIVERS, plan_for, resource_for

DT27 = SourceColumn("d", "datetime2", datetime_precision=7)
FIRST_NS = ExactTimestamp.from_parts(dt.datetime(1677, 9, 21, 0, 12, 43), 145224200)
LAST_NS = ExactTimestamp.from_parts(dt.datetime(2262, 4, 11, 23, 47, 16), 854775800)
BOUNDS = "1677-09-21 00:12:43.145224192 .. 2262-04-11 23:47:16.854775807"


def choose(option: str, minimum: ExactTimestamp, maximum: ExactTimestamp, sub_us: int = 100, **kw: Any) -> str:
    return resolve_datetime2_choice(
        DT27, option, minimum=minimum, maximum=maximum, max_sub_microsecond=sub_us, table="db.dbo.t", **kw
    )


def step(value: ExactTimestamp, hundreds_of_ns: int) -> ExactTimestamp:
    return ExactTimestamp(value.epoch_ns + 100 * hundreds_of_ns)


def test_exact_values_print_with_seven_digits_and_every_year() -> None:
    assert str(FIRST_NS) == "1677-09-21 00:12:43.1452242" and str(LAST_NS) == "2262-04-11 23:47:16.8547758"
    assert str(ExactTimestamp.from_parts(dt.datetime(1, 1, 1))) == "0001-01-01 00:00:00.0000000"
    offset = dt.datetime(2262, 4, 12, 1, 47, 16, 854775, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert ExactTimestamp.from_parts(offset, 854775800) == LAST_NS  # datetimeoffset: the UTC instant


@pytest.mark.parametrize("option", ["auto", "timestamp_ns"])
def test_values_at_the_exact_bounds_fit_nanoseconds(option: str) -> None:
    # Before: the bounds were cut to whole seconds and the maxima to microseconds,
    # so 2262-04-11 23:47:16.8547758 (which fits) was refused.
    assert choose(option, FIRST_NS, LAST_NS) == "timestamp_ns"


def test_one_step_past_the_maximum_is_refused_with_the_exact_value_and_bounds() -> None:
    with pytest.raises(Datetime2PrecisionError) as raised:
        choose("auto", dt.datetime(1900, 1, 1), step(LAST_NS, 1))
    assert str(raised.value) == (
        "db.dbo.t.d (datetime2(7)): the maximum 2262-04-11 23:47:16.8547759 lies outside what timestamp[ns] holds "
        f"({BOUNDS}) and some values have a 100 ns digit, which timestamp[us] would drop, so no timestamp type "
        "holds it. Set datetime2 for this column to string (lossless text) or timestamp_us (drops the 100 ns digit)."
    )


def test_timestamp_ns_names_each_extreme_outside() -> None:
    with pytest.raises(Datetime2PrecisionError) as raised:
        choose("timestamp_ns", step(FIRST_NS, -1), ExactTimestamp.from_parts(dt.datetime(9999, 12, 31), 100))
    assert str(raised.value).startswith(
        "db.dbo.t.d (datetime2(7)): the minimum 1677-09-21 00:12:43.1452241 and the maximum "
        f"9999-12-31 00:00:00.0000001 lie outside what timestamp[ns] holds ({BOUNDS}). Set datetime2"
    )


def _facts(columns: tuple[SourceColumn, ...], profile: tuple[object, ...]) -> TableFacts:
    description = TableDescription(TableRef("db", "dbo", "t"), columns)
    return TableFacts(description, DatabaseOptions(snapshot_isolation=False, cdc_enabled=False), profile)


def test_the_plan_names_every_column_that_fits_no_type() -> None:
    columns = (
        SourceColumn("id", "int"),
        SourceColumn("a", "datetime2", datetime_precision=7),
        SourceColumn("b", "datetime2", datetime_precision=7),
        SourceColumn("c", "datetime2", datetime_precision=7),
    )
    low, high = dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    profile = (
        low,
        high,
        900,
        0,
        999999900,  # a: out of range with 100 ns digits
        dt.datetime(2000, 1, 1),
        dt.datetime(2001, 1, 1),
        100,
        0,
        100,  # b: fits
        low,
        high,
        300,
        0,
        999999900,
    )  # c: like a
    with pytest.raises(Datetime2PrecisionError) as raised:
        plan_snapshot(_facts(columns, profile), SnapshotOptions())
    message = str(raised.value)
    assert message.startswith("2 columns of db.dbo.t fit no timestamp type exactly; nothing was written:\n- db.dbo.t.a")
    assert (
        "\n- db.dbo.t.c (datetime2(7)): the minimum 0001-01-01 00:00:00.0000000 and the maximum "
        "9999-12-31 23:59:59.9999999 lie outside" in message
    )
    assert ".b " not in message


def test_the_task_wide_option_leaves_columns_that_need_no_choice_alone() -> None:
    columns = (
        SourceColumn("d3", "datetime2", datetime_precision=3),
        SourceColumn("d7", "datetime2", datetime_precision=7),
        SourceColumn("o3", "datetimeoffset", datetime_precision=3),
        SourceColumn("s", "smalldatetime"),
    )
    plan = plan_snapshot(_facts(columns, ()), SnapshotOptions(datetime2_default="string"))
    assert [str(f.type) for f in plan.target_schema] == [
        "timestamp[us]",
        "string",
        "timestamp[us, tz=UTC]",
        "timestamp[ms]",
    ]
    # a per-column entry is explicit: it applies whatever the precision
    in_range = (dt.datetime(2000, 1, 1), dt.datetime(2001, 1, 1), 100, 0, 100)  # d7's profile under auto
    plan = plan_snapshot(_facts(columns, in_range), SnapshotOptions(datetime2_overrides={"D3": "string"}))
    assert str(plan.target_schema.field("d3").type) == "string"


@pytest.mark.parametrize("driver", DRIVERS)
def test_values_at_the_bounds_load_as_exact_nanoseconds(driver: str, sqlserver: Any, sqlserver_db: Any) -> None:
    with sqlserver_db.connect(driver="msodbc18") as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE dbo.edges (id int NOT NULL PRIMARY KEY, d datetime2(7) NULL)")
        cursor.execute(
            "INSERT INTO dbo.edges VALUES (1, '1677-09-21 00:12:43.1452242'), "
            "(2, '2262-04-11 23:47:16.8547758'), (3, NULL)"
        )
    resource = resource_for(sqlserver, sqlserver_db.name, driver)
    plan = plan_for(resource, "edges", SnapshotOptions())
    assert plan.datetime2_choices["d"] == "timestamp_ns"
    batches = [convert_batch(b, plan) for b in resource.read_arrow(snapshot_read(plan))]
    table = pa.Table.from_batches(batches, schema=plan.target_schema).sort_by("id")
    assert table.column("d").cast(pa.int64()).to_pylist() == [FIRST_NS.epoch_ns, LAST_NS.epoch_ns, None]


def test_the_profile_reads_exact_extremes_of_every_bad_column(sqlserver: Any, sqlserver_db: Any) -> None:
    with sqlserver_db.connect() as connection:
        cursor = connection.cursor()
        cursor.execute(
            "CREATE TABLE dbo.wide (id int NOT NULL PRIMARY KEY, a datetime2(7) NULL, b datetimeoffset(7) NULL)"
        )
        cursor.execute(
            "INSERT INTO dbo.wide VALUES (1, '0001-01-01 00:00:00.0000001', '2262-04-12 01:47:16.8547759 +02:00'),"
            " (2, '2000-01-01', '2000-01-01 00:00:00.0000001 +00:00')"
        )
    resource = resource_for(sqlserver, sqlserver_db.name, "msodbc18")
    with pytest.raises(Datetime2PrecisionError) as raised:
        plan_for(resource, "wide", SnapshotOptions())
    message = str(raised.value)
    assert (
        f"- {sqlserver_db.name}.dbo.wide.a (datetime2(7)): the minimum 0001-01-01 00:00:00.0000001 lies outside"
        in message
    )
    assert (
        f"- {sqlserver_db.name}.dbo.wide.b (datetimeoffset(7)): the maximum 2262-04-11 23:47:16.8547759 UTC "
        "lies outside"
    ) in message
