"""Fast path for ``INSERT [INTO] t [(cols)] VALUES (...), (...)`` of literals and parameters.

Seeding scripts send multi-row INSERTs of literals, and pyodbc's
``fast_executemany`` sends one parameterised single-row INSERT per row. Both
spent most of their time in sqlglot (tokenizing the batch to split it, then
parsing every literal into an AST). When a whole batch is exactly one such
INSERT, this module reads it with one regular expression scan instead, builds
the VALUES rows as an Arrow table (one column per position, typed like the
literals: integers, decimals, floats, strings, binary, NULL, or the bound
parameter's Python value) and hands it to the ordinary ``dml`` staging, which
does SQL Server's conversions and checks exactly as on the slow path.

Anything else (expressions, functions, hints, DEFAULT, a column mixing strings
and numbers, several statements) returns ``None`` and takes the normal path.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

from ..engine_api import Param

_IDENT = r'(?:\[(?:[^\]]|\]\])+\]|"(?:[^"]|"")+"|[A-Za-z_#][\w@#$]*)'
_HEADER = re.compile(
    rf"\s*INSERT\s+(?:INTO\s+)?(?P<table>{_IDENT}(?:\s*\.\s*{_IDENT}){{0,2}})\s*"
    rf"(?:\(\s*(?P<cols>{_IDENT}(?:\s*,\s*{_IDENT})*)\s*\)\s*)?VALUES\s*",
    re.I,
)
_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<str>N?'(?:[^']|'')*')
    | (?P<hex>0x[0-9A-Fa-f]*)(?![\w$#@])
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w$#@.])
    | (?P<null>NULL)(?![\w$#@])
    | (?P<param>@[A-Za-z_]\w*|\?)
    | (?P<punct>[(),;])
    )""",
    re.I | re.X,
)


@dataclass
class FastInsert:
    table: list[str]
    columns: list[str] | None
    rows: list[list[tuple[str, Any]]]


def _unquote(name: str) -> str:
    name = name.strip()
    if name.startswith("["):
        return name[1:-1].replace("]]", "]")
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name


def _split_name(text: str) -> list[str]:
    return [_unquote(p) for p in re.findall(_IDENT, text)]


def _literal(kind: str, text: str) -> tuple[str, Any]:
    if kind == "str":
        national = text[0] in "nN"
        return ("s", text[2 if national else 1 : -1].replace("''", "'"))
    if kind == "hex":
        digits = text[2:]
        return ("b", bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits))
    if kind == "null":
        return ("null", None)
    if kind == "param":
        return ("p", text)
    if "e" in text.lower():
        return ("f", float(text))
    if "." in text:
        return ("d", Decimal(text))
    return ("i", int(text))


def _rows(sql: str, pos: int) -> list[list[tuple[str, Any]]] | None:
    """``(v, ...), (v, ...)`` from ``pos`` to the end of ``sql`` (an optional ';' allowed)."""
    rows: list[list[tuple[str, Any]]] = []
    row: list[tuple[str, Any]] | None = None
    expect = "("
    while True:
        m = _TOKEN.match(sql, pos)
        if m is None:
            break
        pos = m.end()
        kind = m.lastgroup or ""
        text = m.group(kind)
        if expect == "(" and text == "(":
            row, expect = [], "value"
        elif expect == "value" and kind != "punct":
            assert row is not None
            row.append(_literal(kind, text))
            expect = "sep"
        elif expect == "sep" and text in (",", ")"):
            if text == ")":
                assert row is not None
                rows.append(row)
                row = None
            expect = "value" if text == "," else "next"
        elif expect == "next" and text in (",", ";"):
            expect = "(" if text == "," else "end"
        else:
            return None
    if expect not in ("next", "end") or sql[pos:].strip():
        return None
    return rows


@functools.lru_cache(maxsize=256)  # fast_executemany repeats one text per row; FastInsert is never mutated
def scan(sql: str) -> FastInsert | None:
    """The INSERT if ``sql`` is exactly one literal/parameter multi-row INSERT ... VALUES, else None."""
    header = _HEADER.match(sql)
    if header is None:
        return None
    rows = _rows(sql, header.end())
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    cols = [_unquote(c) for c in re.findall(_IDENT, header.group("cols"))] if header.group("cols") else None
    return FastInsert(_split_name(header.group("table")), cols, rows)


_KINDS_TO_ARROW = {"s": pa.string(), "b": pa.binary(), "i": pa.int64(), "f": pa.float64()}


def _column(values: list[tuple[str, Any]], params: dict[str, Param], qmarks: list[Param]) -> pa.Array | None:
    kinds: set[str] = set()
    out: list[Any] = []
    for kind, value in values:
        if kind == "p":
            param = qmarks.pop(0) if value == "?" and qmarks else _named(params, value)
            if param is None:
                return None
            value = param.value
            kind = "null" if value is None else type(value).__name__
        if kind != "null":
            kinds.add(kind)
        out.append(value)
    if kinds == {"i", "d"}:
        kinds, out = {"d"}, [Decimal(v) if isinstance(v, int) else v for v in out]
    if len(kinds) > 1:
        return None
    kind = next(iter(kinds), "null")
    try:
        if kind == "null":
            return pa.nulls(len(out))
        return pa.array(out, _KINDS_TO_ARROW.get(kind))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _named(params: dict[str, Param], name: str) -> Param | None:
    return next((p for key, p in params.items() if key.lower() == name.lower()), None)


def source_table(insert: FastInsert, params: dict[str, Param]) -> pa.Table | None:
    """The VALUES rows as an Arrow table (columns s0, s1, ...), or None when a column mixes kinds."""
    qmarks = list(params.values())
    width = len(insert.rows[0])
    arrays = []
    for i in range(width):
        array = _column([row[i] for row in insert.rows], params, qmarks)
        if array is None:
            return None
        arrays.append(array)
    return pa.table(arrays, names=[f"s{i}" for i in range(width)])
