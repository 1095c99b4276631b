"""Log sequence numbers of the double, shaped like SQL Server's.

An LSN is 10 bytes: a 4-byte virtual log file number, a 4-byte block offset
and a 2-byte slot, compared as one big-endian 80-bit integer. The double has no
log, so it hands out LSNs from a counter, in that shape:

- every committed transaction (CDC or not) moves the counter, so LSNs keep
  increasing even when no tracked table changed;
- a transaction with N change rows gets ``tran_begin_lsn`` = counter + 1, one
  ``__$seqval`` per change row after it, and a commit LSN (``__$start_lsn``)
  on the next block after the last seqval, like a commit record that follows
  the data records it commits.
"""

from __future__ import annotations

from dataclasses import dataclass

LSN_BYTES = 10
_SLOT_BITS = 16
ZERO_LSN = bytes(LSN_BYTES)
# Where the counter starts: VLF 0x27, block 0x10, like a young database.
FIRST_LSN = (0x27 << 48) | (0x10 << _SLOT_BITS)
MAX_LSN_INT = (1 << (8 * LSN_BYTES)) - 1


def lsn_bytes(value: int) -> bytes:
    """The 10-byte big-endian form of an LSN integer (clamped to the valid range)."""
    return max(0, min(value, MAX_LSN_INT)).to_bytes(LSN_BYTES, "big")


def lsn_int(value: bytes | bytearray | memoryview | str | None) -> int:
    """The integer of a binary(10) LSN, padded/truncated on the right like SQL Server converts to binary(10).

    A string converts as SQL Server converts varchar to binary: its bytes, not hex digits.
    """
    if value is None:
        return 0
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else bytes(value)
    if len(raw) > LSN_BYTES:
        raw = raw[:LSN_BYTES]
    return int.from_bytes(raw.ljust(LSN_BYTES, b"\0"), "big")


def lsn_text(value: bytes | int) -> str:
    """'0x0000002700000010000A' as SQL Server tools print binary(10)."""
    raw = lsn_bytes(value) if isinstance(value, int) else bytes(value)
    return "0x" + raw.hex().upper()


def lsn_dmv_text(value: bytes | int | None) -> str | None:
    """'00000027:00000010:0001', the nvarchar(23) form the CDC DMVs show (VLF:block:slot in hex)."""
    if value is None:
        return None
    raw = lsn_bytes(value) if isinstance(value, int) else bytes(value)
    return f"{raw[:4].hex()}:{raw[4:8].hex()}:{raw[8:].hex()}"


@dataclass(frozen=True)
class CommitLsns:
    """The LSNs one committing transaction gets."""

    tran_begin: int
    seqvals: list[int]
    commit: int


def allocate_commit(last: int, change_count: int) -> CommitLsns:
    """LSNs for a transaction committing after ``last`` with ``change_count`` change rows."""
    begin = max(last, FIRST_LSN) + 1
    seqvals = [begin + 1 + i for i in range(change_count)]
    last_record = seqvals[-1] if seqvals else begin
    commit = (((last_record >> _SLOT_BITS) + 1) << _SLOT_BITS) | 0x0001
    return CommitLsns(tran_begin=begin, seqvals=seqvals, commit=commit)
