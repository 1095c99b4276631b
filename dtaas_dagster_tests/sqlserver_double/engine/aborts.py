"""Which errors end the whole batch, and what they do to the open transaction.

SQL Server ends only the failing *statement* for most errors (a duplicate
key, a NULL into NOT NULL, truncation, an arithmetic overflow or a divide by
zero: https://learn.microsoft.com/en-us/sql/t-sql/statements/set-arithabort-transact-sql)
and the batch goes on. Conversion errors (245, 241, 248, 8114) abort the
batch instead and roll back an open transaction ("depending upon the severity
of the error, the entire transaction may be rolled back even when SET
XACT_ABORT is OFF"). With ``SET XACT_ABORT ON`` every run-time error does
that (https://learn.microsoft.com/en-us/sql/t-sql/statements/set-xact-abort-transact-sql);
compile errors (syntax, unknown names) are not affected by it.

The rolled-back transaction is reported to the client with an ENVCHANGE
(``SqlServerError.env_changes``), as SQL Server does, so drivers that track
the transaction state (ODBC with autocommit off) stay in step.
"""

from __future__ import annotations

from typing import Any

from ..engine_api import SqlServerError

BATCH_ABORTING = frozenset({241, 245, 248, 8114, 1205})
COMPILE_ERRORS = frozenset({102, 137, 156, 195, 207, 208, 8120})


def aborts_batch(session: Any, error: SqlServerError) -> bool:
    if error.aborts_batch or error.number in BATCH_ABORTING:
        return True
    return session.options.get("xact_abort") == "ON" and error.number not in COMPILE_ERRORS


def apply(session: Any, error: SqlServerError) -> SqlServerError:
    """Mark ``error`` as ending the batch when SQL Server would, rolling back the open transaction."""
    if not aborts_batch(session, error):
        return error
    error.aborts_batch = True
    if session.in_transaction:
        descriptor = session.transaction_descriptor
        session.rollback()
        error.env_changes = [*getattr(error, "env_changes", []), ("rollback_tran", descriptor)]
    return error
