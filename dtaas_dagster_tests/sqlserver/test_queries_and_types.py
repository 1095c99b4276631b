"""Unit tests: named T-SQL builders, identifier quoting, the type map and the datetime2 policy."""

import datetime as dt

import pyarrow as pa
import pytest

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.errors import (
    SqlServerLoginFailed,
    SqlServerUnreachable,
    scrub,
    translate_driver_error,
)
from dtaas_dagster.sqlserver.resource import SqlServerResource
from dtaas_dagster.sqlserver.snapshot import _offset_timestamp_from_text, _time_from_text
from dtaas_dagster.sqlserver.types import (
    Datetime2PrecisionError,
    SourceColumn,
    UnsupportedColumnType,
    arrow_type,
    resolve_datetime2_choice,
)


def test_identifiers_are_bracket_quoted_and_cannot_break_out() -> None:
    assert queries.quote_identifier("orders") == "[orders]"
    assert queries.quote_identifier("we]ird; DROP TABLE x--") == "[we]]ird; DROP TABLE x--]"
    with pytest.raises(ValueError):
        queries.quote_identifier("")
    with pytest.raises(ValueError):
        queries.quote_identifier("a" * 129)


def test_snapshot_select_lists_quoted_columns() -> None:
    sql = queries.build_snapshot_select("dbo", "order lines", ["id", "na]me"])
    assert sql == "SELECT [id], [na]]me] FROM [dbo].[order lines]"


def test_profile_select_reads_ranges_and_lengths_in_one_pass() -> None:
    sql = queries.build_profile_select(
        "dbo", "t", [queries.ProfileColumn("d", "range"), queries.ProfileColumn("notes", "length")]
    )
    assert sql == (
        "SELECT MIN([d]), MAX([d]), MAX(DATEPART(nanosecond, [d]) % 1000), DATEPART(nanosecond, MIN([d])), "
        "DATEPART(nanosecond, MAX([d])), MAX(DATALENGTH([notes])) FROM [dbo].[t]"
    )


def test_catalog_queries_bind_values_instead_of_formatting_them() -> None:
    for sql in (queries.TABLE_COLUMNS, queries.PRIMARY_KEY_COLUMNS, queries.TABLE_ROW_ESTIMATE):
        assert sql.count("?") == 2
        assert "{" not in sql and "%" not in sql


def test_the_lag_probe_binds_every_value_and_quotes_the_change_tables() -> None:
    sql = queries.build_cdc_lag_probe(["dbo_orders", "we]ird"])
    assert sql.count("?") == 6  # per instance: name, name, the first LSN not yet loaded
    assert "FROM [cdc].[dbo_orders_CT] AS c" in sql and "FROM [cdc].[we]]ird_CT] AS c" in sql
    assert sql.count("UNION ALL") == 1 and "cdc.lsn_time_mapping" in sql
    assert queries.build_cdc_lag_probe([]).count("SELECT") == 1  # the max LSN and the clock only
    assert "?" not in queries.CDC_JOBS and "DB_ID()" in queries.CDC_CLEANUP_RETENTION_MSDB


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (SourceColumn("a", "tinyint"), pa.uint8()),
        (SourceColumn("a", "bigint"), pa.int64()),
        (SourceColumn("a", "decimal", precision=38, scale=10), pa.decimal128(38, 10)),
        (SourceColumn("a", "money"), pa.decimal128(19, 4)),
        (SourceColumn("a", "nvarchar", char_length=-1), pa.string()),
        (SourceColumn("a", "varbinary", char_length=16), pa.binary()),
        (SourceColumn("a", "datetime"), pa.timestamp("ms")),
        (SourceColumn("a", "datetime2", datetime_precision=3), pa.timestamp("us")),
        (SourceColumn("a", "time", datetime_precision=7), pa.time64("ns")),
        (SourceColumn("a", "uniqueidentifier"), pa.string()),
    ],
)
def test_type_map(column: SourceColumn, expected: pa.DataType) -> None:
    assert arrow_type(column) == expected


def test_unsupported_type_names_the_column_and_the_way_out() -> None:
    with pytest.raises(UnsupportedColumnType, match=r"columns_exclude: \[shape\]"):
        arrow_type(SourceColumn("shape", "geography"))


DT27 = SourceColumn("d", "datetime2", datetime_precision=7)


def test_datetime2_auto_keeps_nanoseconds_when_every_value_fits() -> None:
    choice = resolve_datetime2_choice(
        DT27,
        "auto",
        minimum=dt.datetime(1900, 1, 1),
        maximum=dt.datetime(2100, 1, 1),
        max_sub_microsecond=700,
        table="db.dbo.t",
    )
    assert choice == "timestamp_ns"
    assert arrow_type(DT27, choice) == pa.timestamp("ns")


def test_datetime2_auto_falls_back_to_microseconds_only_without_100ns_digits() -> None:
    assert (
        resolve_datetime2_choice(
            DT27,
            "auto",
            minimum=dt.datetime(1, 1, 1),
            maximum=dt.datetime(9999, 12, 31),
            max_sub_microsecond=0,
            table="db.dbo.t",
        )
        == "timestamp_us"
    )
    with pytest.raises(Datetime2PrecisionError, match="Set datetime2 for this column to string"):
        resolve_datetime2_choice(
            DT27,
            "auto",
            minimum=dt.datetime(1, 1, 1),
            maximum=dt.datetime(9999, 12, 31),
            max_sub_microsecond=100,
            table="db.dbo.t",
        )


def test_datetime2_timestamp_ns_refuses_out_of_range_values_up_front() -> None:
    with pytest.raises(Datetime2PrecisionError, match="outside what timestamp\\[ns\\] holds"):
        resolve_datetime2_choice(
            DT27,
            "timestamp_ns",
            minimum=dt.datetime(1, 1, 1),
            maximum=dt.datetime(2000, 1, 1),
            max_sub_microsecond=0,
            table="db.dbo.t",
        )


def test_text_conversions_for_time_and_datetimeoffset() -> None:
    times = _time_from_text(pa.array(["23:59:59.9999999", "00:00:00", None]))
    assert times.cast(pa.int64()).to_pylist() == [86_399_999_999_900, 0, None]
    instants = _offset_timestamp_from_text(
        pa.array(["2024-01-02 03:04:05.1234567 +05:30", "0001-01-01 00:00:00 +00:00"]), pa.timestamp("us", tz="UTC")
    )
    assert instants.to_pylist() == [
        dt.datetime(2024, 1, 1, 21, 34, 5, 123456, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    ]


def test_driver_errors_are_translated_and_scrubbed() -> None:
    login = translate_driver_error(
        Exception("28000", "[Microsoft][ODBC Driver 18][SQL Server]Login failed for user 'etl'. PWD=hunter2;"),
        source="sales",
        address="db:1433",
        user="etl",
        password_env="SALES_PW",
        password="hunter2",
    )
    assert isinstance(login, SqlServerLoginFailed)
    assert "SALES_PW" in str(login) and "hunter2" not in str(login)
    unreachable = translate_driver_error(
        Exception("HYT00", "[Microsoft][ODBC Driver 18]Login timeout expired"),
        source="sales",
        address="db:1433",
        user="etl",
        password_env="SALES_PW",
    )
    assert isinstance(unreachable, SqlServerUnreachable)
    assert "cannot reach SQL Server source 'sales' at db:1433" in str(unreachable)
    assert scrub("Driver={x};PWD={a;b}}c};UID=u", "") == "Driver={x};PWD=***;UID=u"


def test_a_deadlock_of_process_229_is_a_deadlock_not_a_missing_permission() -> None:
    """SQL Server's deadlock message names the victim's process id: "Process ID 229" is not error
    229 (permission denied, not retried). Seen on the double under parallel tests."""
    from dtaas_dagster.sqlserver.errors import SqlServerPermissionDenied

    common = {"source": "sales", "address": "db:1433", "user": "etl", "password_env": "SALES_PW"}
    deadlock = "Transaction (Process ID 229) was deadlocked on lock resources with another process (1205)"
    for text in (f"[40001] [SQL Server]{deadlock}", f"State: 40001, Native error: 1205, Message: {deadlock}"):
        error = translate_driver_error(Exception("40001", text), **common)
        assert not isinstance(error, SqlServerPermissionDenied) and error.retryable, text
    denied = "The SELECT permission was denied on the object 'orders'"
    for text in (f"[42000] [SQL Server]{denied}. (229)", "State: 42000, Native error: 229, Message: -"):
        error = translate_driver_error(Exception("42000", text), **common)
        assert isinstance(error, SqlServerPermissionDenied) and not error.retryable, text
    spid = "Transaction (Process ID 18456) was deadlocked on lock resources (1205)"
    assert not isinstance(translate_driver_error(Exception("40001", spid), **common), SqlServerLoginFailed)


def test_connection_string_escapes_values_and_can_hide_the_password() -> None:
    resource = SqlServerResource(
        source_name="s",
        host="db",
        port=1433,
        database="sa;les",
        user="etl",
        password="p}w;x",
        driver="msodbc18",
        encrypt="optional",
    )
    full = resource.connection_string()
    assert "DATABASE={sa;les}" in full and "PWD={p}}w;x}" in full and "Encrypt=optional" in full
    assert "p}w" not in resource.connection_string(with_password=False)
    freetds = SqlServerResource(
        source_name="s",
        host="db",
        port=1444,
        database="d",
        user="u",
        password="p",
        driver="freetds",
        encrypt="no",
    ).connection_string()
    assert "TDS_Version=7.4" in freetds and "PORT=1444" in freetds and "Encryption=off" in freetds


def test_snapshot_batch_ends_with_the_server_side_row_count() -> None:
    select = queries.build_snapshot_select("dbo", "t", ["a"])
    assert queries.snapshot_batch(select, snapshot_isolation=True) == (
        "SET TRANSACTION ISOLATION LEVEL SNAPSHOT;\nSELECT [a] FROM [dbo].[t];\nSELECT ROWCOUNT_BIG() AS rows_sent;"
    )
    assert queries.snapshot_batch(select, snapshot_isolation=False).startswith("SELECT [a]")


def test_datetime2_auto_becomes_exact_text_for_text_destinations() -> None:
    assert (
        resolve_datetime2_choice(
            DT27,
            "auto",
            minimum=dt.datetime(1, 1, 1),
            maximum=dt.datetime(9999, 12, 31),
            max_sub_microsecond=100,
            table="db.dbo.t",
            text_destination=True,
        )
        == "string"
    )


def test_hex_column_writes_each_lsn_as_20_hex_digits_from_any_slice_or_chunking() -> None:
    import random

    from dtaas_dagster.sqlserver.lsn import Lsn, hex_column

    rng = random.Random(7)
    values = [bytes(rng.randrange(256) for _ in range(10)) for _ in range(1_000)]
    values += [b"\x00" * 10, b"\xff" * 10, bytes(range(10))]
    expected = [Lsn.from_bytes(v).hex for v in values]
    assert expected[-1] == "00010203040506070809" and expected[-2] == "f" * 20
    binary = pa.array(values, pa.binary())
    variants = (binary, binary.cast(pa.binary(10)), binary.cast(pa.large_binary()), binary.slice(3, 500))
    for array in (*variants, pa.chunked_array([binary[:7], binary[7:]])):
        offset = 3 if len(array) == 500 else 0
        got = hex_column(array)
        assert got.type == pa.string() and got.null_count == 0
        assert got.to_pylist() == expected[offset : offset + len(array)]
        got.validate(full=True)
    assert hex_column(pa.array([], pa.binary())).to_pylist() == []
    with pytest.raises(ValueError, match="NULLs"):
        hex_column(pa.array([values[0], None], pa.binary()))
    with pytest.raises(ValueError, match="not 10 bytes"):
        hex_column(pa.array([values[0], b"\x01" * 9], pa.binary()))
