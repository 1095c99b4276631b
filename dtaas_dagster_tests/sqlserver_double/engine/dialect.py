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

from sqlglot import exp
from sqlglot.dialects.tsql import TSQL

# sqlglot keywords that SQL Server treats as identifiers (checked against its reserved-word list)
NOT_TSQL_KEYWORDS = frozenset({
    "CUBE", "ROLLUP", "GLOB", "ILIKE", "LATERAL", "LIMIT", "LOCK", "NOTNULL", "OFFSET", "PARTITIONED_BY",
    "QUALIFY", "REGEXP", "RLIKE", "UNCACHE", "USING", "XOR", "TRUE", "FALSE", "WINDOW", "INTERVAL",
})


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
                if name[i] == close and name[i + 1:i + 2] == close:
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
