"""A downstream asset annotated ``pd.DataFrame`` gets every value of every type exactly.

The table is the all-types table as a load produces it (``expected_all_types``, the
Arrow data the end-to-end tests compare a real load with), written by the S3 IO manager
and read back through ``load_input`` in a real ``materialize`` run.
"""

# No "from __future__ import annotations": Dagster reads the real annotation types.

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import asset, materialize

from dtaas_dagster.cdc.changes import CHANGE_FIELDS
from dtaas_dagster.destinations.s3 import S3IOManager
from dtaas_dagster.stream import TableStream
from dtaas_dagster_tests.all_types import expected_all_types
from dtaas_dagster_tests.destinations.s3_samples import TABLE

SEEN: dict[str, pd.DataFrame] = {}

# The documented mapping (docs/full-load.md, "Type map"): dtype per column of the all-types table.
DTYPES = {
    "id": "Int32", "c_tinyint": "UInt8", "c_smallint": "Int16", "c_int": "Int32", "c_bigint": "Int64",
    "c_bit": "boolean", "c_real": "Float32", "c_float": "Float64", "c_decimal": "object", "c_numeric": "object",
    "c_money": "object", "c_char": "string", "c_varchar": "string", "c_nchar": "string", "c_nvarchar": "string",
    "c_nvarchar_max": "string", "c_varchar_max": "string", "c_binary": "object", "c_varbinary": "object",
    "c_varbinary_max": "object", "c_date": "object", "c_time": "timedelta64[ns]", "c_datetime": "datetime64[ms]",
    "c_smallmoney": "object", "c_smalldatetime": "datetime64[ms]", "c_datetime2_3": "datetime64[us]",
    "c_datetime2_7": "datetime64[ns]", "c_sentinel_us": "datetime64[us]", "c_sentinel_text": "string",
    "c_dto": "datetime64[ns, UTC]", "c_guid": "string",
}  # fmt: skip


def _load_as_pandas(tmp_path: Path, table: pa.Table, fmt: str = "parquet", **stream: Any) -> pd.DataFrame:
    @asset(key_prefix=["task1", "dbo"], name="typed", io_manager_key="s3")
    def typed() -> TableStream:
        return TableStream(
            table=TABLE,
            schema=table.schema,
            batches=iter(table.to_batches(max_chunksize=2)),
            partition_key="full",
            **stream,
        )

    @asset
    def typed_frame(typed: pd.DataFrame) -> int:
        SEEN["frame"] = typed
        return len(typed)

    manager = S3IOManager(url=f"file://{tmp_path}/{fmt}", format=fmt)
    assert materialize([typed, typed_frame], resources={"s3": manager}).success
    return SEEN.pop("frame")


def _same_value(arrow_type: pa.DataType, expected: pa.Scalar, got: Any) -> bool:
    """One pandas value against the Arrow value it came from, compared on exact representations."""
    if not expected.is_valid:
        return got is pd.NA or got is pd.NaT or got is None
    if pa.types.is_timestamp(arrow_type):
        # numpy datetime64 in the column's unit: the integer count is the exact value
        in_unit = got.asm8.astype(f"datetime64[{arrow_type.unit}]") if isinstance(got, pd.Timestamp) else None
        return in_unit is not None and int(in_unit.astype(np.int64)) == expected.value
    if pa.types.is_time(arrow_type):
        return isinstance(got, pd.Timedelta) and got.value == expected.value  # ns since midnight
    want = expected.as_py()
    if isinstance(want, decimal.Decimal | bytes | dt.date):
        return type(got) is type(want) and got == want and str(got) == str(want)
    return got == want and type(want)(got) == want


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_every_type_of_the_all_types_table_reaches_pandas_exactly(tmp_path: Path, fmt: str) -> None:
    expected = expected_all_types()
    frame = _load_as_pandas(tmp_path, expected, fmt)

    assert list(frame.columns) == expected.column_names
    assert {name: str(frame[name].dtype) for name in frame.columns} == DTYPES
    problems = [
        f"{name}[{row}]: {frame[name].iloc[row]!r:.80} != {expected.column(name)[row]!r:.80}"
        for name in expected.column_names
        for row in range(expected.num_rows)
        if not _same_value(expected.schema.field(name).type, expected.column(name)[row], frame[name].iloc[row])
    ]
    assert not problems, "\n".join(problems)


def test_bigint_with_null_keeps_every_digit_and_time_keeps_100ns(tmp_path: Path) -> None:
    # The two losses reported: 9007199254740993 came back as 9007199254740992.0 (float64),
    # and a time(7) with a 100 ns digit raised ArrowInvalid.
    table = pa.table(
        {
            "big": pa.array([9007199254740993, None], pa.int64()),
            "at": pa.array([45_296_123_456_700, None], pa.time64("ns")),  # 12:34:56.1234567
        }
    )
    frame = _load_as_pandas(tmp_path, table)
    assert frame["big"].iloc[0] == 9007199254740993 and frame["big"].iloc[1] is pd.NA
    assert frame["at"].iloc[0] == pd.Timedelta(hours=12, minutes=34, seconds=56, nanoseconds=123_456_700)
    assert frame["at"].iloc[1] is pd.NaT


def test_an_empty_partition_has_the_same_dtypes(tmp_path: Path) -> None:
    frame = _load_as_pandas(tmp_path, expected_all_types().slice(0, 0))
    assert len(frame) == 0 and {name: str(frame[name].dtype) for name in frame.columns} == DTYPES


def test_a_change_partition_reaches_pandas_exactly(tmp_path: Path) -> None:
    # CDC change files go through the same writers and reader: the data columns keep the
    # type map, and the change columns are text and a UTC timestamp in microseconds.
    data = expected_all_types()
    rows = data.num_rows
    change_columns = [
        pa.array(["insert", "update", "delete", "insert"][:rows] + ["update"] * max(0, rows - 4), pa.string()),
        pa.array([f"{n:020x}" for n in range(rows)], pa.string()),
        pa.array([f"{n + 1:020x}" for n in range(rows)], pa.string()),
        pa.array([1_764_633_600_123_456 + n for n in range(rows)], pa.timestamp("us", tz="UTC")),
    ]
    changes = pa.Table.from_arrays([*data.columns, *change_columns], schema=pa.schema([*data.schema, *CHANGE_FIELDS]))
    window = {"capture_instance": "dbo_typed", "from_lsn": "0" * 20, "to_lsn": "f" * 20}
    frame = _load_as_pandas(tmp_path, changes, kind="cdc", cdc=window, primary_key=("id",))

    change_dtypes = {
        "_dtaas_op": "string",
        "_dtaas_lsn": "string",
        "_dtaas_seqval": "string",
        "_dtaas_commit_time": "datetime64[us, UTC]",
    }
    assert {name: str(frame[name].dtype) for name in frame.columns} == {**DTYPES, **change_dtypes}
    problems = [
        f"{name}[{row}]: {frame[name].iloc[row]!r:.80} != {changes.column(name)[row]!r:.80}"
        for name in changes.column_names
        for row in range(rows)
        if not _same_value(changes.schema.field(name).type, changes.column(name)[row], frame[name].iloc[row])
    ]
    assert not problems, "\n".join(problems)
