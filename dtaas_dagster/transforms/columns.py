"""Vectorised Arrow implementations of the column transforms (``pyarrow.compute``, per batch).

Each function takes Arrow arrays and returns an array; the chain
(:mod:`.chain`) decides where the result goes. Only ``sha256`` and ``md5``
visit values one by one (Arrow has no cryptographic hash kernel); they use
``hashlib`` on the UTF-8 text and are the slowest functions (documented).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_BISECT_BELOW = 64


class BadValue(ValueError):
    """A value cannot be converted; the message shows it."""


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


# --------------------------------------------------------------------------- cast
def cast_column(array: pa.Array, target: pa.DataType, *, on_error: str) -> pa.Array:
    """Cast exactly: a value that does not convert (or would lose digits) fails, or becomes null.

    With ``on_error: null`` the bad values are found by bisection: a batch
    with a few bad values costs a few extra casts, not one per value.
    """
    if _is_text(array.type) and not _is_text(target):
        array = pc.utf8_trim_whitespace(array)
    if pa.types.is_integer(array.type) and pa.types.is_decimal(target) and target.precision < 38:
        # Arrow sizes integer -> decimal by the type's widest value; go through decimal(38, s)
        # so each value is checked against the target's precision instead.
        source = array
        try:
            array = pc.cast(array, pa.decimal128(38, target.scale))
        except pa.ArrowInvalid:
            array = source
    try:
        return pc.cast(array, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        if on_error == "fail":
            raise BadValue(_bad_value_message(array, target, exc)) from None
    return _cast_or_null(array, target)


def _cast_or_null(array: pa.Array, target: pa.DataType) -> pa.Array:
    try:
        return pc.cast(array, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if len(array) <= _BISECT_BELOW:
        values = []
        for index in range(len(array)):
            try:
                values.append(pc.cast(array.slice(index, 1), target, safe=True))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values.append(pa.nulls(1, target))
        return pa.concat_arrays(values)
    half = len(array) // 2
    return pa.concat_arrays([_cast_or_null(array.slice(0, half), target), _cast_or_null(array.slice(half), target)])


def _bad_value_message(array: pa.Array, target: pa.DataType, exc: BaseException) -> str:
    first = _first_bad(array, target)
    shown = f"value {first!r}" if first is not None else "a value"
    return (
        f"{shown} cannot be converted to {target} exactly ({str(exc).splitlines()[0]}); "
        "set on_error: null to write null instead, or fix the data"
    )


def _first_bad(array: pa.Array, target: pa.DataType) -> Any:
    if len(array) == 1:
        value = array[0].as_py()
        return value if not isinstance(value, (bytes, str)) or len(value) <= 60 else str(value)[:60] + "..."
    half = len(array) // 2
    for part in (array.slice(0, half), array.slice(half)):
        try:
            pc.cast(part, target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _first_bad(part, target)
    return None


def can_cast(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether Arrow has a cast from ``source`` to ``target`` at all (values may still fail)."""
    try:
        pc.cast(pa.array([], source), target)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


# ------------------------------------------------------------------ replace_value
def replace_values(array: pa.Array, old: pa.Scalar, new: pa.Scalar, *, match: str) -> pa.Array:
    if match == "substring":
        return pc.replace_substring(array, pattern=old.as_py(), replacement=new.as_py())
    if match == "regex":
        return pc.replace_substring_regex(array, pattern=old.as_py(), replacement=new.as_py())
    if not old.is_valid:
        return pc.coalesce(array, new) if new.is_valid else array
    hit = pc.fill_null(pc.equal(array, old), False)
    return pc.if_else(hit, new, array)


# ----------------------------------------------------------------- text building
def as_text(array: pa.Array) -> pa.Array:
    return array if _is_text(array.type) else pc.cast(array, pa.string())


def concat(arrays: Sequence[pa.Array], *, separator: str, null_handling: str) -> pa.Array:
    """Join texts with ``separator``. ``skip`` is CONCAT_WS: nulls and their separators are left out.

    pyarrow 26's own ``null_handling='skip'`` returns one row fewer when a row is
    all nulls, so skip is built from pieces: ``separator + value`` (or ``''``)
    per column, joined, and the first separator cut off.
    """
    texts = [as_text(a) for a in arrays]
    if null_handling != "skip":
        handling = {"null": "emit_null", "empty": "replace"}[null_handling]
        return pc.binary_join_element_wise(*texts, separator, null_handling=handling, null_replacement="")
    pieces = [pc.fill_null(pc.binary_join_element_wise(separator, t, ""), "") for t in texts]
    joined = pc.binary_join_element_wise(*pieces, "")
    return pc.utf8_slice_codeunits(joined, len(separator)) if separator else joined


def split(array: pa.Array, *, separator: str, parts: int) -> list[pa.Array]:
    """``parts`` text arrays: the pieces of each value; the last takes the rest; missing pieces are null."""
    lists = pc.split_pattern(array, pattern=separator, max_splits=parts - 1)
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    starts = lists.offsets[:-1]
    lengths = pc.list_value_length(lists)
    result = []
    for index in range(parts):
        present = pc.fill_null(pc.greater(lengths, index), False)
        positions = pc.if_else(present, pc.add(pc.cast(starts, pa.int64()), index), pa.scalar(None, pa.int64()))
        result.append(lists.values.take(positions))
    return result


# ---------------------------------------------------------------- apply_function
def _mask(array: pa.Array, keep_last: int, mask_char: str) -> pa.Array:
    text = as_text(array)
    length = pc.utf8_length(text)
    hidden = pc.max_element_wise(pc.subtract(length, keep_last), 0)
    visible = pc.utf8_slice_codeunits(text, start=-keep_last) if keep_last else pc.utf8_slice_codeunits(text, 0, 0)
    return pc.binary_join_element_wise(pc.binary_repeat(mask_char, hidden), visible, "")


def _digest(array: pa.Array, algorithm: str) -> pa.Array:
    values = as_text(array).to_pylist() if not pa.types.is_binary(array.type) else array.to_pylist()
    out = [
        None if v is None else hashlib.new(algorithm, v if isinstance(v, bytes) else v.encode("utf-8")).hexdigest()
        for v in values
    ]
    return pa.array(out, pa.string())


def _substring(array: pa.Array, start: int, length: int | None) -> pa.Array:
    stop = None if length is None else start - 1 + length
    return pc.utf8_slice_codeunits(array, start - 1, stop)


FUNCTIONS: dict[str, Callable[..., pa.Array]] = {
    "upper": lambda a: pc.utf8_upper(a),
    "lower": lambda a: pc.utf8_lower(a),
    "trim": lambda a: pc.utf8_trim_whitespace(a),
    "ltrim": lambda a: pc.utf8_ltrim_whitespace(a),
    "rtrim": lambda a: pc.utf8_rtrim_whitespace(a),
    "length": lambda a: pc.utf8_length(a),
    "reverse": lambda a: pc.utf8_reverse(a),
    "capitalize": lambda a: pc.utf8_capitalize(a),
    "title": lambda a: pc.utf8_title(a),
    "substring": lambda a, start=1, length=None: _substring(a, start, length),
    "left": lambda a, length: pc.utf8_slice_codeunits(a, 0, length),
    "right": lambda a, length: pc.utf8_slice_codeunits(a, -length) if length else pc.utf8_slice_codeunits(a, 0, 0),
    # half away from zero, as SQL Server's ROUND
    "round": lambda a, decimals=0: pc.round(a, ndigits=decimals, round_mode="half_towards_infinity"),
    "abs": lambda a: pc.abs_checked(a),
    "ceil": lambda a: pc.ceil(a),
    "floor": lambda a: pc.floor(a),
    "year": lambda a: pc.year(a),
    "month": lambda a: pc.month(a),
    "day": lambda a: pc.day(a),
    "hour": lambda a: pc.hour(a),
    "sha256": lambda a: _digest(a, "sha256"),
    "md5": lambda a: _digest(a, "md5"),
    "mask": lambda a, keep_last=4, mask_char="*": _mask(a, keep_last, mask_char),
}

# What a function reads: text, number or temporal (checked against the column type before data moves).
FUNCTION_INPUT = {
    **{
        name: "text"
        for name in (
            "upper",
            "lower",
            "trim",
            "ltrim",
            "rtrim",
            "length",
            "reverse",
            "capitalize",
            "title",
            "substring",
            "left",
            "right",
        )
    },
    **{name: "number" for name in ("round", "abs", "ceil", "floor")},
    **{name: "temporal" for name in ("year", "month", "day")},
    "hour": "timestamp",
    **{name: "any" for name in ("sha256", "md5", "mask")},
}


def accepts(function: str, type_: pa.DataType) -> bool:
    kind = FUNCTION_INPUT[function]
    if kind == "text":
        return _is_text(type_)
    if kind == "number":
        return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)
    if kind == "temporal":
        return pa.types.is_date(type_) or pa.types.is_timestamp(type_)
    if kind == "timestamp":
        return pa.types.is_timestamp(type_)
    return True
