"""Table names as users write them in ``dtaas.yaml``, and matching them against the catalog.

A table reference is ``schema.table``. A part that contains a dot, a bracket,
a wildcard character or surrounding blanks is written bracketed, as SQL Server
writes it: ``stg.[dot.table]``, ``[my schema].orders``; ``]]`` inside brackets
is one ``]``. Outside brackets ``*`` and ``?`` are wildcards (``dbo.*``); inside
brackets every character is literal. SQL Server compares names
case-insensitively under the default collations, and so do we, everywhere.

Asset keys need ``[A-Za-z0-9_]`` only. :func:`asset_name_part` keeps a name
that already fits and otherwise replaces the other characters and appends a
short hash of the exact name, so ``表格`` and ``顧客`` (or ``order lines`` and
``order_lines``) get distinct, stable keys.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

TABLE_NAME_FIX = "write it as schema.table, e.g. dbo.orders (bracket a part that contains a dot: stg.[dot.table])"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_]+$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_]")
_NEEDS_BRACKETS = re.compile(r"[.\[\]*?]|^\s|\s$")


@dataclass(frozen=True)
class NamePart:
    """One part of a reference: its text, and whether it was bracketed (literal, no wildcards)."""

    text: str
    bracketed: bool = False

    @property
    def is_pattern(self) -> bool:
        return not self.bracketed and ("*" in self.text or "?" in self.text)

    def regex(self) -> re.Pattern[str]:
        if not self.is_pattern:
            return re.compile(f"^{re.escape(self.text)}$", re.IGNORECASE | re.DOTALL)
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in self.text)
        return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class TableName:
    """A parsed ``schema.table`` reference (either part may be a pattern)."""

    schema: NamePart
    table: NamePart

    @property
    def is_pattern(self) -> bool:
        return self.schema.is_pattern or self.table.is_pattern

    def matches(self, schema: str, table: str) -> bool:
        return bool(self.schema.regex().match(schema) and self.table.regex().match(table))


def _read_part(text: str, start: int, original: str) -> tuple[NamePart, int]:
    """The part at ``start`` and the index just after it."""
    if start < len(text) and text[start] == "[":
        out, i = [], start + 1
        while i < len(text):
            if text[i] == "]":
                if text[i + 1 : i + 2] == "]":
                    out.append("]")
                    i += 2
                    continue
                return NamePart("".join(out), bracketed=True), i + 1
            out.append(text[i])
            i += 1
        raise ValueError(f"{original!r} has a '[' without its closing ']'; {TABLE_NAME_FIX}")
    end = text.find(".", start)
    end = len(text) if end < 0 else end
    part = text[start:end]
    if "[" in part or "]" in part:
        raise ValueError(f"{original!r}: brackets must enclose a whole part; {TABLE_NAME_FIX}")
    return NamePart(part), end


def parse_table_name(value: str) -> TableName:
    """``schema.table`` (parts optionally bracketed) -> :class:`TableName`; a clear error otherwise."""
    schema, i = _read_part(value, 0, value)
    if value[i : i + 1] != ".":
        raise ValueError(f"{value!r} must be schema.table (the schema is required); {TABLE_NAME_FIX}, or dbo.*")
    table, j = _read_part(value, i + 1, value)
    if j != len(value):
        raise ValueError(
            f"{value!r} has more than two parts; {TABLE_NAME_FIX}. A three-part name's database is the "
            "source's database setting"
        )
    for part in (schema, table):
        if not part.text.strip():
            raise ValueError(f"{value!r} has an empty part; {TABLE_NAME_FIX}")
    return TableName(schema, table)


def has_wildcard(value: str) -> bool:
    """Whether ``value`` is a pattern (an unbracketed ``*`` or ``?``)."""
    try:
        return parse_table_name(value).is_pattern
    except ValueError:
        return False


def format_part(name: str) -> str:
    """A catalog name as written in dtaas.yaml: bracketed when it has to be."""
    return "[" + name.replace("]", "]]") + "]" if _NEEDS_BRACKETS.search(name) else name


def format_table_name(schema: str, table: str) -> str:
    """The reference that :func:`parse_table_name` reads back as exactly (schema, table)."""
    return f"{format_part(schema)}.{format_part(table)}"


def asset_name_part(name: str) -> str:
    """A SQL Server name as a Dagster asset-key component (A-Z, a-z, 0-9, _), distinct per name."""
    if _SAFE_KEY.match(name):
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]
    return f"{_UNSAFE_KEY_CHARS.sub('_', name)}_{digest}"
