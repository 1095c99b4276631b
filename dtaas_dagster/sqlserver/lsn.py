"""Log sequence numbers: SQL Server's ``binary(10)`` CDC positions as a value object.

An LSN orders every committed transaction of a database (``__$start_lsn``);
``__$seqval`` orders the changes within one. Both are 10 bytes, compared as
big-endian unsigned numbers, and written as 20 lower-case hex digits, so text
order is LSN order (the ``_dtaas_lsn`` / ``_dtaas_seqval`` columns, the
sensor's cursor, tags and manifests all use that text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

import numpy as np
import pyarrow as pa

_HEX20 = re.compile(r"^[0-9a-f]{20}$")
# each byte value's two hex digits as one 2-byte item (copied as bytes: high digit first in memory)
_DIGIT_PAIRS = np.frombuffer(b"".join(f"{b:02x}".encode() for b in range(256)), dtype=np.uint16)
LSN_BYTES = 10


@total_ordering
@dataclass(frozen=True)
class Lsn:
    """One LSN (or seqval)."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value < 1 << (8 * LSN_BYTES):
            raise ValueError(f"an LSN is {LSN_BYTES} bytes; {self.value} does not fit")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Lsn:
        if len(raw) != LSN_BYTES:
            raise ValueError(f"an LSN is {LSN_BYTES} bytes, got {len(raw)}")
        return cls(int.from_bytes(raw, "big"))

    @classmethod
    def from_hex(cls, text: str) -> Lsn:
        """From 20 hex digits (any case; an optional 0x prefix)."""
        digits = text.lower().removeprefix("0x")
        if not _HEX20.match(digits):
            raise ValueError(f"{text!r} is not an LSN: write it as 20 hex digits, e.g. 0000002a000001300001")
        return cls(int(digits, 16))

    @property
    def hex(self) -> str:
        return f"{self.value:020x}"

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(LSN_BYTES, "big")

    def increment(self) -> Lsn:
        """The next possible LSN (``sys.fn_cdc_increment_lsn``)."""
        return Lsn(self.value + 1)

    def decrement(self) -> Lsn:
        """The previous possible LSN (``sys.fn_cdc_decrement_lsn``)."""
        if self.value == 0:
            raise ValueError("the zero LSN has no predecessor")
        return Lsn(self.value - 1)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return self.value < other.value

    def __str__(self) -> str:
        return self.hex


ZERO = Lsn(0)


def hex_column(array: pa.Array) -> pa.Array:
    """A binary(10) Arrow column (LSNs or seqvals) as 20-digit lower-case hex text, vectorised.

    One table lookup per byte writes its two digits straight into a string array's buffers
    (this halved the conversion of a change window)."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if array.null_count:
        raise ValueError("an LSN column has NULLs")
    count = len(array)
    if count == 0:
        return pa.array([], pa.string())
    if pa.types.is_fixed_size_binary(array.type) and array.type.byte_width == LSN_BYTES:
        start = array.offset * LSN_BYTES
    elif pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        width = np.int64 if pa.types.is_large_binary(array.type) else np.int32
        offsets = np.frombuffer(array.buffers()[1], dtype=width, count=array.offset + count + 1)[array.offset :]
        if not (np.diff(offsets) == LSN_BYTES).all():
            raise ValueError(f"an LSN column has a value that is not {LSN_BYTES} bytes")
        start = int(offsets[0])
    else:
        raise ValueError(f"an LSN column is {array.type}, not binary({LSN_BYTES})")
    data = np.frombuffer(array.buffers()[-1], dtype=np.uint8, count=start + count * LSN_BYTES)[start:]
    data = data.reshape(-1, LSN_BYTES)
    chars = np.ascontiguousarray(_DIGIT_PAIRS[data]).view(np.uint8)  # (count, 20): two digits per byte
    text_offsets = np.arange(0, (count + 1) * LSN_BYTES * 2, LSN_BYTES * 2, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(text_offsets), pa.py_buffer(chars))
