"""Split a T-SQL batch into statements.

T-SQL needs no semicolons: ``CREATE TABLE t (a int) INSERT INTO t VALUES (1)
SELECT * FROM t`` is three statements. sqlglot parses that as one opaque
Command, so we tokenize with sqlglot's T-SQL tokenizer and cut before each
keyword that starts a statement at parenthesis depth 0, except where that
keyword continues the current statement (``INSERT ... SELECT``, ``UNION ALL
SELECT``, ``UPDATE ... SET``, ``ALTER TABLE ... DROP COLUMN``, ``WITH (NOLOCK)``,
``ON DELETE CASCADE``, a CTE's main query).
"""

from __future__ import annotations

from sqlglot.dialects.tsql import TSQL
from sqlglot.errors import TokenError
from sqlglot.tokens import Token

from ..engine_api import SqlServerError

STARTERS = {
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "DECLARE",
    "SET",
    "USE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVE",
    "EXEC",
    "EXECUTE",
    "WITH",
    "GO",
    "PRINT",
    "IF",
    "WHILE",
    "RETURN",
    "MERGE",
    "GRANT",
    "REVOKE",
    "DENY",
    "RAISERROR",
    "THROW",
    "WAITFOR",
    "DBCC",
    "BACKUP",
    "RESTORE",
    "CHECKPOINT",
    "KILL",
}
_SET_OPS = {"UNION", "ALL", "EXCEPT", "INTERSECT"}


def _word(token: Token) -> str:
    return token.text.upper() if token.token_type.name not in ("STRING", "NATIONAL_STRING", "IDENTIFIER") else ""


def _continues(word: str, stmt: list[Token], prev: str, nxt: str) -> bool:
    """True when keyword ``word`` (at depth 0) belongs to the statement in ``stmt``."""
    first = _word(stmt[0])
    words = [_word(t) for t in stmt]
    if prev == "ON" and word in ("DELETE", "UPDATE") or prev in ("AS", "BY", "INTO"):
        return True
    if word == "IF" and prev in ("TABLE", "DATABASE", "SCHEMA", "VIEW", "INDEX", "PROCEDURE"):
        return True  # DROP TABLE IF EXISTS
    if prev in _SET_OPS and word in ("SELECT", "ALL"):
        return True
    if word == "WITH" and (nxt == "(" or first in ("ALTER", "CREATE")):
        return True
    if first == "INSERT" and word in ("SELECT", "WITH", "EXEC", "EXECUTE"):
        return "VALUES" not in words and "SELECT" not in words
    if first == "WITH" and word in ("SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"):
        return not any(w in ("SELECT", "INSERT", "UPDATE", "DELETE") for w in words[1:] if w) or prev == ")"
    if first == "UPDATE" and word == "SET":
        return "SET" not in words
    if first == "ALTER" and word in ("DROP", "ALTER", "SET", "ROLLBACK", "ADD"):
        return True
    if (
        first in ("BEGIN", "COMMIT", "ROLLBACK", "SAVE")
        and len(stmt) == 1
        and word not in ("SELECT", "INSERT", "UPDATE", "DELETE")
    ):
        return True
    if first == "CREATE" and word in ("SELECT",) and prev == "AS":
        return True
    return False


def split_batch(sql: str) -> list[str]:
    """Statement texts of a batch, in order (semicolons and empty statements dropped)."""
    try:
        tokens = TSQL().tokenize(sql)
    except TokenError as e:
        raise SqlServerError(102, f"Incorrect syntax near '{sql[:40]}': {e}") from e
    statements: list[list[Token]] = []
    current: list[Token] = []
    depth = 0
    for i, token in enumerate(tokens):
        if token.token_type.name == "SEMICOLON" and depth == 0:
            if current:
                statements.append(current)
            current = []
            continue
        word = _word(token)
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        if depth == 0 and current and word in STARTERS:
            prev = _word(current[-1]) or current[-1].text
            nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
            if not _continues(word, current, prev.upper(), nxt):
                statements.append(current)
                current = []
        current.append(token)
    if current:
        statements.append(current)
    return [_text(sql, stmt) for stmt in statements]


def _text(sql: str, stmt: list[Token]) -> str:
    start = stmt[0].start
    end = stmt[-1].end + 1
    # a closing quote/bracket may sit after the token's recorded end
    while end < len(sql) and sql[end] in "'\"]":
        end += 1
    return sql[start:end].strip()
