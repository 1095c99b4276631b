"""Vectorised wire encoding of date/time values (MS-TDS 2.2.5.5.1.8).

date: 3 bytes, days since 0001-01-01. time(n): 3-5 bytes of 10^-n second
units since midnight. datetime2(n): time then date. datetimeoffset(n): UTC
time and date, then the offset in minutes (int16). datetime: int32 days since
1900-01-01 and uint32 ticks of 1/300 second.

Arrow input follows engine_api: timestamp('us') or a fixed-width string
'YYYY-MM-DD HH:MM:SS.fffffff' (datetime2), 'YYYY-MM-DD HH:MM:SS.fffffff +HH:MM'
(datetimeoffset), date32, time64.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import typeinfo as ti
from .rowencode import DAYS_0001_TO_1970, DAYS_1900_TO_1970, US_PER_DAY, Segment, _fixed, _le_bytes, string_parts

UNITS_PER_DAY_7 = 864_000_000_000  # 100 ns units per day


def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (vectorised)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _digits(chars: np.ndarray, start: int, count: int) -> np.ndarray:
    value = np.zeros(chars.shape[0], dtype=np.int64)
    for i in range(start, start + count):
        value = value * 10 + (chars[:, i].astype(np.int64) - 48)
    return value


def _normalise_fraction(arr: pa.Array) -> pa.Array:
    """'YYYY-MM-DD HH:MM:SS[.f{1,7}]' -> always 7 fraction digits (27 characters)."""
    no_fraction = pc.equal(pc.utf8_length(arr), 19)
    arr = pc.if_else(no_fraction, pc.binary_join_element_wise(arr, ".", ""), arr)
    return pc.utf8_rpad(arr, width=27, padding="0")


def _normalise(arr: pa.Array, width: int) -> pa.Array:
    """Accept fractions of 0-7 digits (engines often give 6), as the contract's 7-digit form."""
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if width == 27:
        return _normalise_fraction(arr)
    parts = pc.extract_regex(
        arr, r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,7})?) ?(?P<offset>[+-]\d\d:\d\d)$"
    )
    return pc.binary_join_element_wise(
        _normalise_fraction(pc.struct_field(parts, "stamp")), pc.struct_field(parts, "offset"), " "
    )


def _fixed_chars(arr: pa.Array, width: int, what: str) -> np.ndarray:
    lengths, _data = string_parts(arr)
    if (lengths != width).any():
        arr = _normalise(arr, width)
    lengths, data = string_parts(arr)
    n = len(arr)
    chars = np.full((n, width), ord("0"), dtype=np.uint8)
    ok = lengths == width
    bad = ~ok & (lengths != 0) if arr.null_count else ~ok
    if bad.any():
        sample = arr[int(np.argmax(bad))].as_py()
        raise ValueError(f"{what} string {sample!r} is not in the contract's fixed format ({width} chars)")
    if ok.any():
        chars[ok] = data.reshape(-1, width)
    return chars  # NULL rows keep the all-zero placeholder; NBCROW masking drops them


def _string_units(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970, 100 ns units since midnight) of 'YYYY-MM-DD HH:MM:SS.fffffff'."""
    days = days_from_civil(_digits(chars, 0, 4), _digits(chars, 5, 2), _digits(chars, 8, 2))
    seconds = _digits(chars, 11, 2) * 3600 + _digits(chars, 14, 2) * 60 + _digits(chars, 17, 2)
    return days, seconds * 10_000_000 + _digits(chars, 20, 7)


def _timestamp_units(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970, 100 ns units since midnight) of an Arrow timestamp array."""
    if arr.type.unit != "us":
        arr = pc.cast(arr, pa.timestamp("us", arr.type.tz), safe=False)
    us = (
        arr.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        if arr.null_count
        else arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
    )
    days = np.floor_divide(us, US_PER_DAY)
    return days, (us - days * US_PER_DAY) * 10


def _scaled(units7: np.ndarray, scale: int) -> np.ndarray:
    return units7 // (10 ** (7 - scale))


def _date_bytes(days1970: np.ndarray) -> np.ndarray:
    return _le_bytes(days1970 + DAYS_0001_TO_1970, "<i4", 3)


def encode_temporal(arr: pa.Array, name: str, scale: int) -> Segment:
    """One fixed-width segment (length byte + value) for a date/time column."""
    if name == "date":
        if not pa.types.is_date32(arr.type):
            arr = pc.cast(arr, pa.date32())
        days = arr.fill_null(0).cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
        return _fixed(3, _date_bytes(days))
    if name == "time":
        if not pa.types.is_time64(arr.type) or arr.type.unit != "ns":
            arr = pc.cast(arr, pa.time64("ns"))
        ns = arr.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        w = ti.time_width(scale)
        return _fixed(w, _le_bytes(_scaled(ns // 100, scale), "<i8", w))
    if name == "datetimeoffset":
        return _datetimeoffset(arr, scale)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        days, units = _string_units(_fixed_chars(arr, 27, name))
    else:
        if pa.types.is_date(arr.type):
            arr = pc.cast(arr, pa.timestamp("us"))
        days, units = _timestamp_units(arr)
    if name == "datetime2":
        w = ti.time_width(scale)
        payload = np.hstack([_le_bytes(_scaled(units, scale), "<i8", w), _date_bytes(days)])
        return _fixed(w + 3, payload)
    return _datetime(days, units, name == "datetime")


def _datetime(days: np.ndarray, units7: np.ndarray, eight_bytes: bool) -> Segment:
    days = days + DAYS_1900_TO_1970
    if eight_bytes:
        ticks = (units7 * 3 + 50_000) // 100_000  # 1/300 s, rounded
        roll = ticks >= 25_920_000
        days = days + roll
        ticks = np.where(roll, 0, ticks)
        return _fixed(8, np.hstack([_le_bytes(days, "<i4"), _le_bytes(ticks, "<u4")]))
    minutes = (units7 + 300_000_000) // 600_000_000
    roll = minutes >= 1440
    return _fixed(4, np.hstack([_le_bytes(days + roll, "<u2"), _le_bytes(np.where(roll, 0, minutes), "<u2")]))


def _datetimeoffset(arr: pa.Array, scale: int) -> Segment:
    if pa.types.is_timestamp(arr.type):
        days, units = _timestamp_units(arr)
        offset = np.zeros(len(arr), dtype=np.int64)
    else:
        chars = _fixed_chars(arr, 34, "datetimeoffset")
        if arr.null_count:
            chars[~np.asarray(arr.is_valid()), 27:34] = np.frombuffer(b" +00:00", dtype=np.uint8)
        days, units = _string_units(chars)
        sign = np.where(chars[:, 28] == ord("-"), -1, 1)
        offset = sign * (_digits(chars, 29, 2) * 60 + _digits(chars, 32, 2))
    total = days * UNITS_PER_DAY_7 + units - offset * 600_000_000  # local -> UTC
    days = np.floor_divide(total, UNITS_PER_DAY_7)
    units = total - days * UNITS_PER_DAY_7
    w = ti.time_width(scale)
    payload = np.hstack([_le_bytes(_scaled(units, scale), "<i8", w), _date_bytes(days), _le_bytes(offset, "<i2")])
    return _fixed(w + 5, payload)
