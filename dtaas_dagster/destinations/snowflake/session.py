"""One Snowflake connection as the loader uses it: named statements, transactions, errors with a fix.

The connection is a DB-API connection of ``snowflake-connector-python`` in
``qmark`` style (opened by :mod:`.connection` through ``dagster_snowflake``);
nothing here imports the connector, so this module is cheap to import.

Errors are translated at this boundary: a statement that fails raises
:class:`SnowflakeStatementError` naming the statement, the target and the
Snowflake error code; codes a retry cannot fix (unknown object, missing
privilege, bad login, SQL Snowflake rejects) raise the permanent
:class:`SnowflakePermanentError` instead, so the step does not spend its
retries on them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from dtaas_dagster.destinations.snowflake.sql import BEGIN, COMMIT, ROLLBACK, Statement
from dtaas_dagster.errors import PermanentLoadError

log = logging.getLogger(__name__)

# Snowflake error numbers a retry cannot fix, with the fix to show.
PERMANENT_ERRORS = {
    1003: "Snowflake rejected the SQL (syntax); this is a dtaas bug or a server without this statement",
    2003: "the object does not exist or the role may not use it; check the names and the grants "
    "(docs/snowflake.md#grants)",
    2043: "the object does not exist or the operation is not allowed on it; check the names and the grants",
    3001: "the role lacks a privilege; grant it (docs/snowflake.md#grants)",
    90105: "the role lacks a privilege; grant it (docs/snowflake.md#grants)",
    390100: "wrong user or password; check user and the variable named in password_env",
    390144: "the key-pair login was refused; check the private key and the public key registered for the user",
    390190: "the account identifier does not exist; check account",
    251005: "user is empty; set user",
    251006: "password is empty; set the variable named in password_env",
}


class SnowflakeStatementError(RuntimeError):
    """A statement failed in a way a retry may fix (network, timeout, a busy warehouse)."""


class SnowflakePermanentError(PermanentLoadError):
    """A statement failed in a way a retry cannot fix; the message says what to change."""


def _errno(exc: BaseException) -> int | None:
    value = getattr(exc, "errno", None)
    return value if isinstance(value, int) else None


def translate(exc: BaseException, *, what: str) -> Exception:
    """A connector error as one of ours, naming ``what`` failed."""
    errno = _errno(exc)
    message = str(getattr(exc, "msg", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if errno in PERMANENT_ERRORS:
        return SnowflakePermanentError(
            f"{what} failed: Snowflake error {errno:06d}: {message}; {PERMANENT_ERRORS[errno]}"
        )
    code = f"Snowflake error {errno:06d}" if errno is not None else type(exc).__name__
    return SnowflakeStatementError(f"{what} failed: {code}: {message}")


class Session:
    """A connection plus the target it works on (for messages)."""

    def __init__(self, connection: Any, *, target: str = "") -> None:
        self.connection = connection
        self.target = target
        self.in_transaction = False
        self.statements: list[str] = []  # names of the statements run, in order (metadata, tests)

    def run(self, statement: Statement) -> Any:
        """Execute one statement; the cursor holds its result."""
        cursor = self.connection.cursor()
        started = time.monotonic()
        try:
            cursor.execute(statement.sql, statement.params or None)
        except Exception as exc:  # noqa: BLE001 - translated at this boundary
            where = f" on {self.target}" if self.target else ""
            raise translate(exc, what=f"{statement.name}{where}") from exc
        self.statements.append(statement.name)
        log.debug("%s: %.3fs", statement.name, time.monotonic() - started)
        return cursor

    def rows(self, statement: Statement) -> list[tuple[Any, ...]]:
        return list(self.run(statement).fetchall())

    def scalar(self, statement: Statement) -> Any:
        rows = self.rows(statement)
        return rows[0][0] if rows else None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT; ROLLBACK on any error (the error is re-raised)."""
        self.run(BEGIN)
        self.in_transaction = True
        try:
            yield
            self.run(COMMIT)
        except BaseException:
            try:
                self.run(ROLLBACK)
            except Exception:  # noqa: BLE001 - the first error matters; Snowflake rolls back on disconnect
                log.warning("ROLLBACK failed after an error; the session's end rolls the transaction back")
            raise
        finally:
            self.in_transaction = False
