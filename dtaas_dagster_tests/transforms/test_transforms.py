"""Each transform on every column type, NULLs, Unicode and empty batches; bad configs give clear errors."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa
import pytest
from pydantic import TypeAdapter

from dtaas_dagster.config.transforms import TransformSpec
from dtaas_dagster.transforms.chain import CHANGE_COLUMNS, TableContext, TransformError
from dtaas_dagster.transforms.compile import compile_chain

SPECS = TypeAdapter(list[TransformSpec])

# One column per Arrow type the SQL Server reader produces, with a NULL and Unicode text.
TYPES: dict[str, tuple[pa.DataType, list[Any]]] = {
    "c_tinyint": (pa.uint8(), [0, 255, None]),
    "c_smallint": (pa.int16(), [-32768, 7, None]),
    "c_int": (pa.int32(), [-1, 42, None]),
    "c_bigint": (pa.int64(), [2**62, -3, None]),
    "c_real": (pa.float32(), [1.5, -0.25, None]),
    "c_float": (pa.float64(), [2.5, 1e300, None]),
    "c_decimal": (pa.decimal128(18, 2), [decimal.Decimal("12.34"), decimal.Decimal("-0.05"), None]),
    "c_bit": (pa.bool_(), [True, False, None]),
    "c_text": (pa.string(), ["Grüße, 世界 🙂", "  padded  ", None]),
    "c_binary": (pa.binary(), [b"\x00\xff", b"", None]),
    "c_date": (pa.date32(), [dt.date(1, 1, 1), dt.date(9999, 12, 31), None]),
    "c_ts_us": (pa.timestamp("us"), [dt.datetime(1, 1, 1), dt.datetime(2024, 2, 29, 23, 59, 59, 999999), None]),
    "c_ts_ns": (pa.timestamp("ns"), [dt.datetime(2000, 1, 1, 12), dt.datetime(2262, 4, 11), None]),
    "c_tstz": (pa.timestamp("us", tz="UTC"), [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None, None]),
    "c_time": (pa.time64("ns"), [0, 86_399_999_999_900, None]),
    "c_guid": (pa.string(), ["6F9619FF-8B86-D011-B42D-00C04FC964FF", None, "00000000-0000-0000-0000-000000000000"]),
}
SCHEMA = pa.schema(
    [pa.field("id", pa.int32(), nullable=False)] + [pa.field(name, type_) for name, (type_, _) in TYPES.items()]
)
BATCH = pa.record_batch([pa.array([1, 2, 3], pa.int32())] + [pa.array(v, t) for t, v in TYPES.values()], schema=SCHEMA)
EMPTY = BATCH.slice(0, 0)
CONTEXT = TableContext(
    table="dbo.every_type",
    primary_key=("id",),
    variables={"ETLCustomerId": "12345", "sourceTableName": "dbo.every_type"},
)


def run(
    transforms: list[dict[str, Any]], batch: pa.RecordBatch = BATCH, context: TableContext = CONTEXT
) -> pa.RecordBatch:
    chain = compile_chain(SPECS.validate_python(transforms), batch.schema, context)
    out = chain.apply(batch)
    assert out.schema.equals(chain.output_schema), "a batch must have the schema validation promised"
    return out


def col(batch: pa.RecordBatch, name: str) -> list[Any]:
    return batch.column(batch.schema.get_field_index(name)).to_pylist()


# ------------------------------------------------------------------ add_column
def test_add_column_constant_variable_and_expression() -> None:
    out = run(
        [
            {
                "type": "add_column",
                "config": {"column_name": "ETLCustomerId", "value": "$ETLCustomerId", "data_type": "bigint"},
            },
            {"type": "add_column", "config": {"column_name": "origin", "value": "src=${sourceTableName}/ü"}},
            {"type": "add_column", "config": {"column_name": "answer", "value": 42}},
            {"type": "add_column", "config": {"column_name": "doubled", "expression": "c_int * 2 + 1"}},
            {
                "type": "add_column",
                "config": {"column_name": "is_big", "expression": "c_bigint > 100", "data_type": "string"},
            },
        ]
    )
    assert col(out, "ETLCustomerId") == [12345] * 3 and out.schema.field("ETLCustomerId").type == pa.int64()
    assert col(out, "origin") == ["src=dbo.every_type/ü"] * 3
    assert col(out, "answer") == [42] * 3
    assert col(out, "doubled") == [-1, 85, None]
    assert col(out, "is_big") == ["true", "false", None]


@pytest.mark.parametrize("name", list(TYPES))
def test_add_column_copies_every_type_and_handles_empty_batches(name: str) -> None:
    transforms = [{"type": "add_column", "config": {"column_name": "copy", "expression": f"[{name}]"}}]
    assert col(run(transforms), "copy") == col(BATCH, name)
    assert run(transforms, EMPTY).num_rows == 0


# ------------------------------------------------------- drop, rename, cast
@pytest.mark.parametrize("name", list(TYPES))
def test_drop_and_rename_every_type(name: str) -> None:
    out = run(
        [
            {"type": "rename_column", "config": {"old_name": name.upper(), "new_name": f"{name}_renamed"}},
            {"type": "drop_column", "config": {"column_name": "c_text" if name != "c_text" else "c_int"}},
        ]
    )
    assert col(out, f"{name}_renamed") == col(BATCH, name)
    assert len(out.schema) == len(SCHEMA) - 1
    assert run([{"type": "drop_column", "config": {"column_name": name}}], EMPTY).schema.get_field_index(name) == -1


CASTS = [
    ("c_text", "string", ["Grüße, 世界 🙂", "  padded  ", None]),
    ("c_int", "string", ["-1", "42", None]),
    ("c_int", "bigint", [-1, 42, None]),
    ("c_int", "float", [-1.0, 42.0, None]),
    ("c_int", "decimal(10,2)", [decimal.Decimal("-1.00"), decimal.Decimal("42.00"), None]),
    ("c_int", "bool", [True, True, None]),
    ("c_decimal", "float", [12.34, -0.05, None]),
    ("c_bit", "int", [1, 0, None]),
    ("c_date", "timestamp", [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), None]),
    ("c_ts_us", "date", [dt.date(1, 1, 1), dt.date(2024, 2, 29), None]),
    ("c_ts_us", "string", ["0001-01-01 00:00:00.000000", "2024-02-29 23:59:59.999999", None]),
    ("c_guid", "string", ["6F9619FF-8B86-D011-B42D-00C04FC964FF", None, "00000000-0000-0000-0000-000000000000"]),
]


@pytest.mark.parametrize(("name", "target", "expected"), CASTS)
def test_cast_type_to_each_target(name: str, target: str, expected: list[Any]) -> None:
    out = run([{"type": "cast_type", "config": {"column_name": name, "target_type": target}}])
    assert col(out, name) == expected
    assert run([{"type": "cast_type", "config": {"column_name": name, "target_type": target}}], EMPTY).num_rows == 0


def test_cast_type_bad_value_fails_or_writes_null_as_configured() -> None:
    text = pa.record_batch({"id": pa.array([1, 2, 3, 4], pa.int32()), "amount": pa.array([" 12 ", "x1", None, "7"])})
    to_int = {"column_name": "amount", "target_type": "int", "on_error": "null"}
    out = run([{"type": "cast_type", "config": to_int}], text)
    assert col(out, "amount") == [12, None, None, 7]
    with pytest.raises(
        TransformError,
        match=r"table dbo.every_type: transformation #1 \(cast_type\): column amount: "
        r"value 'x1' cannot be converted to int32.*set on_error: null",
    ):
        run([{"type": "cast_type", "config": {"column_name": "amount", "target_type": "int"}}], text)
    many = pa.record_batch({"v": pa.array([str(i) if i % 97 else "bad" for i in range(5000)])})
    assert col(
        run([{"type": "cast_type", "config": {"column_name": "v", "target_type": "bigint", "on_error": "null"}}], many),
        "v",
    ).count(None) == len([i for i in range(5000) if i % 97 == 0])
    lossy = pa.record_batch({"v": pa.array([1.5])})
    with pytest.raises(TransformError, match="cannot be converted"):
        run([{"type": "cast_type", "config": {"column_name": "v", "target_type": "int"}}], lossy)


# ------------------------------------------------------------ filter_rows
def test_filter_rows_three_valued_logic_unicode_and_empty() -> None:
    assert col(run([{"type": "filter_rows", "config": {"condition": "c_int > 0 OR c_int IS NULL"}}]), "id") == [2, 3]
    assert col(run([{"type": "filter_rows", "config": {"condition": "NOT (c_int > 0)"}}]), "id") == [1]
    assert col(run([{"type": "filter_rows", "config": {"condition": "c_text LIKE '%世界%'"}}]), "id") == [1]
    assert (
        col(
            run(
                [
                    {
                        "type": "filter_rows",
                        "config": {
                            "condition": "c_date >= DATE '2000-01-01' AND c_tstz < TIMESTAMP '2025-01-01 00:00:00'"
                        },
                    }
                ]
            ),
            "id",
        )
        == []
    )
    assert col(run([{"type": "filter_rows", "config": {"condition": "c_ts_us < DATE '2000-01-01'"}}]), "id") == [1]
    assert col(
        run([{"type": "filter_rows", "config": {"condition": "c_decimal BETWEEN -1 AND 100.5 AND c_bit"}}]), "id"
    ) == [1]
    assert run([{"type": "filter_rows", "config": {"condition": "c_bit = TRUE"}}], EMPTY).num_rows == 0


# ---------------------------------------------------------- replace_value
def test_replace_value_exact_null_substring_and_regex() -> None:
    out = run(
        [
            {"type": "replace_value", "config": {"column_name": "c_int", "old_value": 42, "new_value": None}},
            {"type": "replace_value", "config": {"column_name": "c_bigint", "old_value": None, "new_value": 0}},
            {
                "type": "replace_value",
                "config": {"column_name": "c_text", "old_value": "世界", "new_value": "world", "match": "substring"},
            },
            {
                "type": "replace_value",
                "config": {"column_name": "c_guid", "old_value": "^0+-.*$", "new_value": "zero", "match": "regex"},
            },
            {
                "type": "replace_value",
                "config": {"column_name": "c_date", "old_value": "9999-12-31", "new_value": None},
            },
        ]
    )
    assert col(out, "c_int") == [-1, None, None] and col(out, "c_bigint") == [2**62, -3, 0]
    assert col(out, "c_text") == ["Grüße, world 🙂", "  padded  ", None]
    assert col(out, "c_guid")[2] == "zero" and col(out, "c_date") == [dt.date(1, 1, 1), None, None]


# ------------------------------------------------------- concat and split
@pytest.mark.parametrize(
    ("handling", "expected"),
    [
        ("skip", ["Grüße, 世界 🙂|-1|2024-01-01 00:00:00.000000Z", "  padded  |42", "2024"]),
        ("null", ["Grüße, 世界 🙂|-1|2024-01-01 00:00:00.000000Z", None, None]),
        ("empty", ["Grüße, 世界 🙂|-1|2024-01-01 00:00:00.000000Z", "  padded  |42|", "||"]),
    ],
)
def test_concat_columns_of_mixed_types(handling: str, expected: list[Any]) -> None:
    batch = BATCH
    if handling == "skip":
        expected = expected[:2] + [""]
    out = run(
        [
            {
                "type": "concat_columns",
                "config": {
                    "columns": ["c_text", "c_int", "c_tstz"],
                    "new_column": "joined",
                    "separator": "|",
                    "null_handling": handling,
                },
            }
        ],
        batch,
    )
    assert col(out, "joined") == expected


def test_split_column_parts_rest_and_missing_parts() -> None:
    batch = pa.record_batch(
        {"id": pa.array([1, 2, 3, 4], pa.int32()), "full": pa.array(["Ann Lee Smith", "Ümit", None, ""])}
    )
    out = run(
        [
            {
                "type": "split_column",
                "config": {
                    "column_name": "full",
                    "separator": " ",
                    "new_columns": ["first", "rest"],
                    "keep_original": False,
                },
            }
        ],
        batch,
    )
    assert out.schema.names == ["id", "first", "rest"]
    assert col(out, "first") == ["Ann", "Ümit", None, ""] and col(out, "rest") == ["Lee Smith", None, None, None]
    assert (
        run(
            [
                {
                    "type": "split_column",
                    "config": {"column_name": "c_text", "separator": ",", "new_columns": ["a", "b"]},
                }
            ],
            EMPTY,
        ).num_rows
        == 0
    )


# --------------------------------------------------------- apply_function
FUNCTIONS = [
    ("upper", "c_text", {}, ["GRÜẞE, 世界 🙂", "  PADDED  ", None]),
    ("lower", "c_guid", {}, ["6f9619ff-8b86-d011-b42d-00c04fc964ff", None, "00000000-0000-0000-0000-000000000000"]),
    ("trim", "c_text", {}, ["Grüße, 世界 🙂", "padded", None]),
    ("ltrim", "c_text", {}, ["Grüße, 世界 🙂", "padded  ", None]),
    ("rtrim", "c_text", {}, ["Grüße, 世界 🙂", "  padded", None]),
    ("length", "c_text", {}, [11, 10, None]),
    ("reverse", "c_text", {}, ["🙂 界世 ,eßürG", "  deddap  ", None]),
    ("substring", "c_text", {"start": 8, "length": 2}, ["世界", "d ", None]),
    ("left", "c_text", {"length": 5}, ["Grüße", "  pad", None]),
    ("right", "c_text", {"length": 1}, ["🙂", " ", None]),
    ("round", "c_decimal", {"decimals": 1}, [decimal.Decimal("12.30"), decimal.Decimal("-0.10"), None]),
    ("round", "c_float", {}, [3.0, 1e300, None]),
    ("abs", "c_int", {}, [1, 42, None]),
    ("ceil", "c_real", {}, [2.0, -0.0, None]),
    ("floor", "c_float", {}, [2.0, 1e300, None]),
    ("year", "c_date", {}, [1, 9999, None]),
    ("month", "c_ts_us", {}, [1, 2, None]),
    ("day", "c_ts_ns", {}, [1, 11, None]),
    ("hour", "c_ts_ns", {}, [12, 0, None]),
    ("sha256", "c_text", {}, ["5d1aa1b0ab1e0d0a1c7e2bf3bd3fb8d1d2f1d9b8b7bbae8a8b5b08c0d4b3e6d1", None, None]),
    ("md5", "c_int", {}, ["6bb61e3b7bce0931da574d19d1d82c88", "a1d0c6e83f027327d8461063f4ac58a6", None]),
    ("mask", "c_text", {"keep_last": 2, "mask_char": "#"}, ["######### 🙂", "########  ", None]),
]


@pytest.mark.parametrize(("function", "name", "arguments", "expected"), FUNCTIONS)
def test_apply_function(function: str, name: str, arguments: dict[str, Any], expected: list[Any]) -> None:
    if function == "sha256":
        import hashlib

        expected = [
            hashlib.sha256(BATCH.column(BATCH.schema.get_field_index(name))[0].as_py().encode()).hexdigest(),
            hashlib.sha256(b"  padded  ").hexdigest(),
            None,
        ]
    config = {"column_name": name, "function": function, "new_column": "result", **arguments}
    out = run([{"type": "apply_function", "config": config}])
    assert col(out, "result") == expected
    assert col(out, name) == col(BATCH, name)  # new_column leaves the source alone
    assert run([{"type": "apply_function", "config": config}], EMPTY).num_rows == 0


def test_every_listed_function_is_implemented() -> None:
    from dtaas_dagster.config.transforms import APPLY_FUNCTIONS
    from dtaas_dagster.transforms.columns import FUNCTION_INPUT
    from dtaas_dagster.transforms.columns import FUNCTIONS as IMPLEMENTED

    assert set(APPLY_FUNCTIONS) == set(IMPLEMENTED) == set(FUNCTION_INPUT)
    assert {name for name, *_ in FUNCTIONS} == set(APPLY_FUNCTIONS) - {"capitalize", "title"}


# ------------------------------------------------------------- bad configs
BAD = [
    (
        [{"type": "drop_column", "config": {"column_name": "c_txet"}}],
        r"transformation #1 \(drop_column\): column_name 'c_txet' is not a column here; did you mean 'c_text'",
    ),
    (
        [{"type": "rename_column", "config": {"old_name": "c_int", "new_name": "C_TEXT"}}],
        r"#1 \(rename_column\): new_name 'C_TEXT' clashes with existing column 'c_text'",
    ),
    (
        [
            {"type": "drop_column", "config": {"column_name": "c_int"}},
            {"type": "cast_type", "config": {"column_name": "c_int", "target_type": "bigint"}},
        ],
        r"#2 \(cast_type\): column_name 'c_int' is not a column here",
    ),
    (
        [{"type": "cast_type", "config": {"column_name": "c_binary", "target_type": "date"}}],
        r"#1 \(cast_type\): column c_binary is binary, which cannot be cast to date",
    ),
    (
        [{"type": "filter_rows", "config": {"condition": "c_text > 5"}}],
        r"#1 \(filter_rows\): c_text > 5: cannot compare these types \(c_text is string, 5 is int64\)",
    ),
    ([{"type": "filter_rows", "config": {"condition": "c_int + 1"}}], r"is int64, not a condition"),
    ([{"type": "filter_rows", "config": {"condition": "c_int = NULL"}}], r"use IS NULL"),
    (
        [{"type": "apply_function", "config": {"column_name": "c_int", "function": "upper"}}],
        r"#1 \(apply_function\): upper reads text values, column c_int is int32; cast the column first",
    ),
    (
        [{"type": "add_column", "config": {"column_name": "x", "value": "$nope"}}],
        r"#1 \(add_column\): value uses \$nope, which is not a variable; known variables: ETLCustomerId",
    ),
    ([{"type": "add_column", "config": {"column_name": "_dtaas_op", "value": "x"}}], r"reserved for change columns"),
    (
        [{"type": "add_column", "config": {"column_name": "n", "value": "abc", "data_type": "int"}}],
        r"value 'abc' is not a value of type int32",
    ),
    (
        [{"type": "replace_value", "config": {"column_name": "c_int", "old_value": "N/A", "new_value": 0}}],
        r"#1 \(replace_value\): old_value 'N/A' is not a value of type int32",
    ),
    (
        [{"type": "split_column", "config": {"column_name": "c_int", "separator": ",", "new_columns": ["a"]}}],
        r"column c_int is int32, not text; cast it to string first",
    ),
    (
        [{"type": "concat_columns", "config": {"columns": ["c_text", "c_nope"], "new_column": "j"}}],
        r"columns entry 'c_nope' is not a column here",
    ),
]


@pytest.mark.parametrize(("transforms", "message"), BAD)
def test_bad_transform_configs_name_table_position_and_fix(transforms: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(TransformError, match=r"^table dbo.every_type: .*" + message):
        compile_chain(SPECS.validate_python(transforms), SCHEMA, CONTEXT)


# ------------------------------------------------------------------ CDC
CDC = TableContext(table="dbo.orders", primary_key=("id",), key_required=True)
CHANGES = pa.record_batch(
    {
        "id": pa.array([1, 2, 3, 4, 4], pa.int32()),
        "status": ["open", "closed", "open", "open", "closed"],
        "_dtaas_op": ["insert", "insert", "update", "update_before", "update"],
        "_dtaas_lsn": ["0" * 20] * 5,
        "_dtaas_seqval": ["0" * 19 + str(i) for i in range(5)],
        "_dtaas_commit_time": pa.array([dt.datetime(2024, 1, 1)] * 5, pa.timestamp("us", tz="UTC")),
    }
)


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ({"type": "drop_column", "config": {"column_name": "id"}}, "would drop primary-key column id"),
        ({"type": "rename_column", "config": {"old_name": "ID", "new_name": "order_id"}}, "would rename primary-key"),
        ({"type": "cast_type", "config": {"column_name": "id", "target_type": "string"}}, "would cast primary-key"),
        ({"type": "apply_function", "config": {"column_name": "id", "function": "abs"}}, "would change primary-key"),
        (
            {"type": "rename_column", "config": {"old_name": "_dtaas_lsn", "new_name": "lsn"}},
            "change column _dtaas_lsn",
        ),
        ({"type": "drop_column", "config": {"column_name": "_dtaas_op"}}, "change column _dtaas_op"),
    ],
)
def test_cdc_refuses_to_break_the_merge_key_or_change_columns(transform: dict[str, Any], message: str) -> None:
    with pytest.raises(TransformError, match=message):
        compile_chain(SPECS.validate_python([transform]), CHANGES.schema, CDC)


def test_cdc_full_load_may_rename_the_key_and_records_it() -> None:
    spec = SPECS.validate_python([{"type": "rename_column", "config": {"old_name": "id", "new_name": "order_id"}}])
    chain = compile_chain(spec, CHANGES.schema, TableContext(table="t", primary_key=("id",)))
    assert chain.primary_key == ("order_id",)


def test_change_batches_transform_before_and_after_images_alike() -> None:
    chain = compile_chain(
        SPECS.validate_python(
            [
                {"type": "apply_function", "config": {"column_name": "status", "function": "upper"}},
                {"type": "add_column", "config": {"column_name": "copy_id", "expression": "id"}},
                {"type": "filter_rows", "config": {"condition": "status = 'OPEN'"}},
            ]
        ),
        CHANGES.schema,
        CDC,
    )
    out = chain.apply_changes(CHANGES)
    # insert 2 no longer matches: dropped; update of 4 to 'closed' no longer matches: becomes a delete;
    # the before-image of 4 matches and is kept with the same transforms as its after-image.
    assert col(out, "id") == [1, 3, 4, 4] and col(out, "copy_id") == [1, 3, 4, 4]
    assert col(out, "_dtaas_op") == ["insert", "update", "update_before", "delete"]
    assert col(out, "status") == ["OPEN", "OPEN", "OPEN", "CLOSED"]
    assert out.schema.names[: len(CHANGE_COLUMNS) + 2][2:] == list(CHANGE_COLUMNS)
