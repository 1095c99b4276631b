"""Text formats (CSV and JSON lines): encoding batches and decoding files.

Both must round-trip every Arrow type a SQL Server source produces. The text
form of each value is:

============================ ============================ ==========================
Arrow type                   CSV                          JSON lines
============================ ============================ ==========================
null (any type)              empty field, unquoted        ``null``
int*/uint*                   ``-12``                      number
float32/float64              shortest round-trip, ``nan``, number; NaN/inf as the
                             ``inf``                      strings ``"NaN"``,
                                                          ``"Infinity"``, ``"-Infinity"``
bool                         ``true`` / ``false``         ``true`` / ``false``
decimal128(p, s)             ``"-12.3400"`` (plain, all   string, same text
                             ``s`` digits, quoted)
string                       always quoted; ``""`` is the string, JSON-escaped
                             empty string
binary                       base64, quoted               base64 string
date32                       ``2024-02-29``               string, same text
time64                       ``23:59:59.999999999``       string, same text
timestamp[unit, tz]          ``0001-01-01 00:00:00.000000`` string ``0001-01-01T00:00:00.000000``
                             (all digits of the unit;     (ISO-8601 with ``T``, all
                             ``Z`` when tz-aware)         digits; ``Z`` when tz-aware)
============================ ============================ ==========================

The header row of a CSV file holds the column names. Readers decode the text
with the Arrow schema stored in the manifest, so a read gives back the exact
values that were written. Everything is vectorised with Arrow compute except
base64 and the rare decimals Arrow prints in exponent form (``0E-10``), which
are formatted per value in Python.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)


def _decimal_text(arr: pa.Array) -> pa.Array:
    """Plain decimal text with all scale digits; Arrow prints tiny values as ``1E-10``."""
    text = pc.cast(arr, pa.string())
    exponent = pc.fill_null(pc.match_substring(text, "E"), False)
    if not pc.any(exponent).as_py():
        return text
    fixed = [format(v.as_py(), "f") for v in pc.filter(arr, exponent)]  # rare rows only
    return pc.replace_with_mask(text, exponent, pa.array(fixed, pa.string()))


def _base64_text(arr: pa.Array) -> pa.Array:
    # Arrow has no base64 kernel: one Python call per value, binary columns only.
    return pa.array(
        [None if v is None else base64.b64encode(v).decode("ascii") for v in arr.to_pylist()],
        pa.string(),
    )


def _timestamp_iso(arr: pa.Array) -> pa.Array:
    return pc.replace_substring(pc.cast(arr, pa.string()), " ", "T", max_replacements=1)


def csv_encode_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Decimals to plain text and binary to base64; Arrow's CSV writer does the rest."""
    columns = []
    for col in batch.columns:
        if pa.types.is_decimal(col.type):
            col = _decimal_text(col)
        elif _is_binary(col.type):
            col = _base64_text(col)
        columns.append(col)
    names = batch.schema.names
    return pa.RecordBatch.from_arrays(columns, names=names)


def _json_string(text: pa.Array) -> pa.Array:
    """JSON string literals: escape backslash, quote and control characters, add quotes."""
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    if pc.any(pc.fill_null(pc.match_substring_regex(text, r"[\x00-\x1f]"), False)).as_py():
        for code in range(0x20):
            text = pc.replace_substring(text, chr(code), json.dumps(chr(code))[1:-1])
    return pc.binary_join_element_wise('"', text, '"', "")


def _json_float(arr: pa.Array) -> pa.Array:
    text = pc.cast(arr, pa.string())
    for arrow_text, json_text in (("nan", '"NaN"'), ("inf", '"Infinity"'), ("-inf", '"-Infinity"')):
        text = pc.if_else(pc.equal(text, arrow_text), json_text, text)
    return text


def _json_fragment(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        text = pc.cast(arr, pa.string())
    elif pa.types.is_floating(t):
        text = _json_float(arr)
    elif pa.types.is_decimal(t):
        text = _json_string(_decimal_text(arr))
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text = _json_string(pc.cast(arr, pa.string()))
    elif _is_binary(t):
        text = _json_string(_base64_text(arr))
    elif pa.types.is_timestamp(t):
        text = _json_string(_timestamp_iso(arr))
    elif pa.types.is_date(t) or pa.types.is_time(t):
        text = _json_string(pc.cast(arr, pa.string()))
    elif pa.types.is_null(t):
        text = pa.nulls(len(arr), pa.string())
    else:
        raise TypeError(f"JSON lines output does not support Arrow type {t}; cast the column first")
    return pc.fill_null(text, "null")


def jsonl_encode_batch(batch: pa.RecordBatch) -> pa.Buffer:
    """One JSON object per row, built column-wise; returns the UTF-8 bytes of all lines."""
    if batch.num_columns == 0:
        return pa.py_buffer(b"{}\n" * batch.num_rows)
    parts: list[Any] = []
    for i, (name, col) in enumerate(zip(batch.schema.names, batch.columns, strict=True)):
        parts.append(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":")
        parts.append(_json_fragment(col))
    parts.append("}\n")
    lines = pc.binary_join_element_wise(*parts, "")
    # 64-bit offsets: a batch may exceed 2 GiB of text. The lines are contiguous in
    # the data buffer, so the file content is one slice of it: no per-row join.
    lines = pc.cast(lines, pa.large_string())
    offsets = pa.Array.from_buffers(pa.int64(), len(lines) + 1, [None, lines.buffers()[1]], offset=lines.offset)
    lo, hi = offsets[0].as_py(), offsets[len(lines)].as_py()
    return lines.buffers()[2].slice(lo, hi - lo)


def decode_text_column(text: pa.Array, target: pa.DataType) -> pa.Array:
    """Text (as written by the CSV/JSON encoders) back to ``target``; see the module table.

    JSON numbers and booleans arrive already typed and are only cast.
    """
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return pc.cast(text, target)
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return pc.cast(text, target)
    if _is_binary(target):
        values = [None if v is None else base64.b64decode(v) for v in text.to_pylist()]
        return pa.array(values, target)
    if pa.types.is_time(target):
        stamps = pc.cast(pc.binary_join_element_wise("1970-01-01T", text, ""), pa.timestamp("ns"))
        nanos = pc.cast(stamps, pa.int64())
        unit_nanos = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[target.unit]
        as_int = pa.int64() if pa.types.is_time64(target) else pa.int32()
        return pc.cast(pc.cast(pc.divide(nanos, unit_nanos), as_int), target)
    if pa.types.is_floating(target):
        for json_text, arrow_text in (("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")):
            text = pc.if_else(pc.equal(text, json_text), arrow_text, text)
    return pc.cast(text, target)


def read_csv_bytes(body: bytes, schema: pa.Schema) -> pa.Table:
    return pcsv.read_csv(
        pa.BufferReader(body),
        read_options=pcsv.ReadOptions(block_size=max(len(body), 1 << 20)),
        parse_options=pcsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in schema.names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # "" is the empty string, an empty field is null
        ),
    )


def _json_read_type(t: pa.DataType) -> pa.DataType:
    native = pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t)
    return t if native else pa.string()


def read_jsonl_bytes(body: bytes, schema: pa.Schema) -> pa.Table:
    read_schema = pa.schema([(f.name, _json_read_type(f.type)) for f in schema])
    try:
        return pjson.read_json(
            pa.BufferReader(body),
            read_options=pjson.ReadOptions(block_size=max(len(body), 1 << 20)),
            parse_options=pjson.ParseOptions(explicit_schema=read_schema, unexpected_field_behavior="error"),
        )
    except pa.ArrowInvalid:
        # Float columns holding "NaN"/"Infinity" strings mix JSON types, which
        # Arrow's reader refuses: parse those (rare) files line by line.
        rows = [json.loads(line) for line in body.splitlines() if line.strip()]
        columns = []
        for f in read_schema:
            values = [row.get(f.name) for row in rows]
            if pa.types.is_floating(f.type):
                values = [float(v) if isinstance(v, str) else v for v in values]
            columns.append(pa.array(values, f.type))
        return pa.Table.from_arrays(columns, schema=read_schema)
