"""Errors from SQL Server, translated at the boundary into ones that name the thing and the fix.

Driver messages are long ("[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]...")
and never name our config. :func:`translate_driver_error` maps the SQLSTATE /
native error to one of the classes below, keeps the driver text as the cause,
and scrubs anything that looks like a password out of it.
"""

from __future__ import annotations

import re

from dtaas_dagster.stream import TableRef


class SqlServerError(RuntimeError):
    """Base class: a SQL Server problem the user can act on. ``retryable`` says whether a retry may help."""

    retryable = True


class SqlServerLoginFailed(SqlServerError):
    retryable = False


class SqlServerUnreachable(SqlServerError):
    retryable = True


class SqlServerTableNotFound(SqlServerError):
    retryable = False


class SqlServerPermissionDenied(SqlServerError):
    retryable = False


class SqlServerQueryFailed(SqlServerError):
    retryable = True


class PrimaryKeyRequired(SqlServerError):
    retryable = False


# A connection-string password: PWD=... or Password=..., braced ({...} with }} for })
# or up to the next ';'. The key must start a word, so "SQLPWD=" is not taken for one.
_PWD_VALUE = re.compile(r"(?i)\b(pwd|password)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)")


def scrub(text: str, *secrets: str) -> str:
    """Hide connection-string ``PWD=`` values and every whole-token occurrence of the secrets.

    A secret is replaced only where it stands as a token of its own: not preceded
    or followed by a letter, digit or ``_``. Replacing it inside other words would
    mangle the message and, worse, show where a short password's characters occur
    (a one-letter password "x" turned "Login timeout expired" into "e***pired",
    which gives the password away). A password that equals a word of the message
    is still replaced there: nothing else can hide it.
    """
    text = _PWD_VALUE.sub(lambda m: f"{m.group(1)}=***", text)
    for secret in secrets:
        if secret:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", text)
    return text


def _native_error(exc: BaseException) -> tuple[str, str]:
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    state = str(args[0]) if args else ""
    message = str(args[1]) if len(args) > 1 else str(exc)
    return state, message


def _native(lowered: str, number: int) -> bool:
    """Whether a (lower-cased) driver message carries SQL Server error ``number``."""
    return re.search(rf"\({number}\)|native error: {number}\b", lowered) is not None


def translate_driver_error(
    exc: BaseException, *, source: str, address: str, user: str, password_env: str, password: str = ""
) -> SqlServerError:
    """Turn a pyodbc / arrow-odbc connection error into a clear error for source ``source``."""
    state, message = _native_error(exc)
    message = scrub(message, password)
    lowered = message.lower()
    # native error numbers as the drivers print them: "... (18456)" (pyodbc), "Native error: 18456"
    # (arrow-odbc); a bare number could be anything, e.g. "Process ID 229" in a deadlock message
    if state == "28000" or _native(lowered, 18456) or "login failed" in lowered:
        return SqlServerLoginFailed(
            f"login failed for user '{user}' on SQL Server source '{source}' ({address}): check the user "
            f"and the password in the environment variable {password_env}. Driver said: {message}"
        )
    if state in ("08001", "08S01", "HYT00", "HYT01") or any(
        phrase in lowered
        for phrase in (
            "timeout",
            "unable to connect",
            "connection refused",
            "server is not found",
            "tcp provider",
            "can't connect",
            "unable to establish",
            "communication link",
        )
    ):
        return SqlServerUnreachable(
            f"cannot reach SQL Server source '{source}' at {address}: check host and port in dtaas.yaml, that the "
            f"server is running and that the firewall allows TCP to it. Driver said: {message}"
        )
    if _native(lowered, 229) or "permission was denied" in lowered:
        return SqlServerPermissionDenied(
            f"the login '{user}' of SQL Server source '{source}' ({address}) lacks a permission it needs: grant it "
            f"(for a full load: SELECT on the table, e.g. GRANT SELECT ON SCHEMA::dbo TO [{user}]; for CDC also "
            f"SELECT on the cdc schema, see docs/operations.md). Driver said: {message}"
        )
    if _native(lowered, 313) and "fn_cdc_get_" in lowered:
        # SQL Server's (misleading) "insufficient number of arguments" for an LSN range the
        # change function refuses: retryable, the retry reads the min LSN again and names the gap
        return SqlServerQueryFailed(
            f"SQL Server source '{source}' ({address}) refused a CDC change window (error 313): its from-LSN is "
            "below the capture instance's min LSN (the cleanup job purged its changes since the window was "
            "planned) or it ends past the max LSN. Nothing was written; a retry (or a re-execution) checks the "
            f"retention again and names the table and both LSNs (docs/cdc.md, 'Retention gap'). Driver said: {message}"
        )
    return SqlServerQueryFailed(f"SQL Server source '{source}' ({address}) failed: {message}")


def table_not_found(table: TableRef, source: str, candidates: list[str]) -> SqlServerTableNotFound:
    import difflib

    wanted = table.qualified
    close = difflib.get_close_matches(wanted.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6)
    hint = ""
    if close:
        original = next(c for c in candidates if c.lower() == close[0])
        hint = f"; did you mean {original}?"
    elif candidates:
        hint = f"; tables there: {', '.join(candidates[:10])}{' ...' if len(candidates) > 10 else ''}"
    return SqlServerTableNotFound(
        f"table {wanted} not found in source '{source}' (database {table.database}){hint} "
        "Fix the table name in the task's tables list."
    )
