"""The T-SQL dialect the double parses, and how it writes DuckDB SQL and names.

sqlglot's T-SQL tokenizer inherits keywords from other dialects: ``LIMIT``,
``QUALIFY``, ``ILIKE``, ``TRUE``, ``INTERVAL`` ... are keywords there, while
SQL Server reads them as ordinary identifiers (none is a reserved word in
https://learn.microsoft.com/en-us/sql/t-sql/language-elements/reserved-keywords-transact-sql).
A column named ``limit`` or ``interval`` must therefore parse as a column, so
:class:`DoubleTSQL` drops those keywords. None of the syntax they introduce is
T-SQL the double supports (``OFFSET ... FETCH``, ``GROUP BY ROLLUP/CUBE`` and
``MERGE ... USING`` were 102 before and stay errors).

On the DuckDB side every identifier is written quoted (:func:`duck_sql`), so a
column named like a DuckDB keyword (``window``, ``at``, ``true``) or holding a
``"`` works; DuckDB matches quoted identifiers case-insensitively, like the
default collation does.
"""

from __future__ import annotations

import re
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.tsql import TSQL
from sqlglot.tokens import TokenType

from ..engine_api import SqlServerError, not_supported

# sqlglot keywords that SQL Server treats as identifiers (checked against its reserved-word list)
NOT_TSQL_KEYWORDS = frozenset(
    {
        "CUBE",
        "ROLLUP",
        "GLOB",
        "ILIKE",
        "LATERAL",
        "LIMIT",
        "LOCK",
        "NOTNULL",
        "OFFSET",
        "PARTITIONED_BY",
        "QUALIFY",
        "REGEXP",
        "RLIKE",
        "UNCACHE",
        "USING",
        "XOR",
        "TRUE",
        "FALSE",
        "WINDOW",
        "INTERVAL",
    }
)


class DoubleTSQL(TSQL):
    """sqlglot's T-SQL without the keywords SQL Server does not have."""

    class Tokenizer(TSQL.Tokenizer):
        KEYWORDS = {k: v for k, v in TSQL.Tokenizer.KEYWORDS.items() if k not in NOT_TSQL_KEYWORDS}

    class Parser(TSQL.Parser):
        # sqlglot reads SYSDATETIME() as GETDATE() (datetime) and SYSDATETIMEOFFSET() as a local timestamp;
        # keep them by name so the engine gives datetime2(7) and datetimeoffset(7) (functions.py)
        FUNCTIONS = {
            **TSQL.Parser.FUNCTIONS,
            "SYSDATETIME": lambda args: exp.Anonymous(this="SYSDATETIME", expressions=args),
            "SYSDATETIMEOFFSET": lambda args: exp.Anonymous(this="SYSDATETIMEOFFSET", expressions=args),
            # sqlglot turns PARSENAME of a literal into SPLIT_PART; keep it (functions.py evaluates it)
            "PARSENAME": lambda args: exp.Anonymous(this="PARSENAME", expressions=args),
        }
        # PostgreSQL's EXCLUDE constraint: in T-SQL "exclude int" is a column definition
        CONSTRAINT_PARSERS = {k: v for k, v in TSQL.Parser.CONSTRAINT_PARSERS.items() if k != "EXCLUDE"}
        SCHEMA_UNNAMED_CONSTRAINTS = TSQL.Parser.SCHEMA_UNNAMED_CONSTRAINTS - {"EXCLUDE"}


def duck_sql(node: exp.Expression) -> str:
    """DuckDB SQL for a translated tree, every identifier quoted."""
    return node.sql("duckdb", identify=True)


def quote_duck(name: str) -> str:
    """A DuckDB quoted identifier for any SQL Server name (``"`` doubled)."""
    return '"' + name.replace('"', '""') + '"'


def split_multipart(name: str) -> list[str]:
    """``[db].[dbo].[it's]`` / ``dbo."a.b"`` / ``dbo.t`` into its parts, quotes removed (like PARSENAME)."""
    parts: list[str] = []
    current, i = "", 0
    while i < len(name):
        ch = name[i]
        if ch in '["':
            close = "]" if ch == "[" else '"'
            i += 1
            while i < len(name):
                if name[i] == close and name[i + 1 : i + 2] == close:
                    current += close
                    i += 2
                    continue
                if name[i] == close:
                    break
                current += name[i]
                i += 1
        elif ch == ".":
            parts.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current.strip())
    return parts


# -- parsing: T-SQL text the tokenizer would misread is marked first ----------------------------
_BARE_0X = re.compile(r"0x(?![0-9A-Fa-f_$#@])")
_EMPTY_BINARY = "__tsql_empty_binary__"


def _mark_empty_binary(text: str) -> str:
    """Replace each bare ``0x`` literal (empty binary) with a marker identifier.

    sqlglot's T-SQL tokenizer reads a bare ``0x`` as the identifier ``0x``, the
    same node as a bracketed ``[0x]``; only the token's width tells them apart.
    """
    if not _BARE_0X.search(text):
        return text
    pieces: list[str] = []
    done = 0
    for token in DoubleTSQL().tokenize(text):
        if token.token_type == TokenType.IDENTIFIER and token.text == "0x" and token.end - token.start == 1:
            pieces += [text[done : token.start], f"[{_EMPTY_BINARY}]"]
            done = token.end + 1
    return "".join(pieces) + text[done:]


_REAL = re.compile(r"(?i)\breal\b")


def _mark_real(text: str) -> str:
    """Spell the type ``real`` as ``float(24)``, its SQL Server synonym.

    sqlglot's T-SQL tokenizer reads REAL and FLOAT as the same token, so the
    catalog would record a real column as float(53). Only REAL in a type
    position is respelled (after a column or variable name, after AS, or as
    CONVERT's first argument): a column *named* real stays a column.
    """
    if not _REAL.search(text):
        return text
    pieces: list[str] = []
    done = 0
    tokens = DoubleTSQL().tokenize(text)
    for i, token in enumerate(tokens):
        if token.token_type == TokenType.FLOAT and token.text.upper() == "REAL" and _type_position(tokens, i):
            pieces += [text[done : token.start], "float(24)"]
            done = token.end + 1
    return "".join(pieces) + text[done:]


def _type_position(tokens: list[Any], i: int) -> bool:
    prev = tokens[i - 1] if i >= 1 else None
    if prev is None:
        return False
    if prev.token_type in (TokenType.VAR, TokenType.IDENTIFIER):
        return True
    if prev.text.upper() == "AS":  # CAST(x AS real), not the alias in SELECT x AS real
        return i + 1 < len(tokens) and tokens[i + 1].text == ")"
    return prev.text == "(" and i >= 2 and tokens[i - 2].text.upper() in ("CONVERT", "TRY_CONVERT")


def _empty_binary(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Column) and node.name == _EMPTY_BINARY and not node.table:
        return exp.HexString(this="")
    return node


def parse(text: str) -> exp.Expression:
    """Parse one T-SQL statement; syntax errors are SQL Server's 102."""
    marked = _mark_empty_binary(_mark_real(text))
    try:
        node = sqlglot.parse_one(marked, read=DoubleTSQL)
        if marked != text:
            node = node.transform(_empty_binary)
    except sqlglot.errors.ParseError as e:
        raise SqlServerError(102, f"Incorrect syntax near '{text[:60]}'.") from e
    if node is None or isinstance(node, exp.Command):
        raise not_supported(text[:200])
    return node
