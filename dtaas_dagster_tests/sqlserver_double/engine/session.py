"""One client connection: current database, SET options, transactions, variables.

Transactions map onto DuckDB transactions of the session's own cursor. Outside
BEGIN TRAN each writing statement runs in its own DuckDB transaction
(autocommit). SQL Server keeps a transaction open when one statement fails;
DuckDB aborts the whole transaction on any error. The engine therefore checks
keys, NOT NULL, truncation and conversions itself before writing, and, for
errors it cannot foresee, *recovers*: it rolls the DuckDB transaction back,
begins a new one and replays the writes that had succeeded (every write of an
explicit transaction is logged with its parameters and Arrow inputs, including
the CDC manager's own DDL and metadata writes on ``txn.cursor``). The CDC
manager keeps its change records in memory until ``before_commit``, so a replay
does not duplicate them.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from ..engine_api import Param, SqlServerError, SqlType, StatementResult
from . import aborts
from .conversion_errors import overflow_from_duckdb
from .split import split_batch

_descriptors = itertools.count(1)
LogEntry = tuple[str, Any, dict[str, pa.Table]]  # DuckDB SQL, its parameters (dict or list), registered Arrow inputs


@dataclass
class Transaction:
    """What the CDC manager sees as ``txn``: the session and its DuckDB cursor."""

    session: "DuckDbSession"
    cursor: "duckdb.DuckDBPyConnection | ReplayLoggedCursor"
    descriptor: int
    explicit: bool
    changed: bool = False
    log: list[LogEntry] = field(default_factory=list)


class ReplayLoggedCursor:
    """An explicit transaction's cursor as the CDC manager sees it: writes are logged for replay.

    The CDC manager runs its DDL and metadata writes (``sp_cdc_enable_table`` creating
    ``cdc.*`` tables) on ``txn.cursor`` directly, not through ``session.write``. Without
    this wrapper a later ``recover()`` would rebuild the transaction without them while
    the catalog still lists those tables. Reads (SELECT/WITH) are not logged.
    """

    def __init__(self, cursor: duckdb.DuckDBPyConnection, log: list[LogEntry]) -> None:
        self._cursor = cursor
        self._log = log
        self._registered: dict[str, pa.Table] = {}

    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        result = self._cursor.execute(sql, params) if params is not None else self._cursor.execute(sql)
        if sql.lstrip()[:6].upper() not in ("SELECT", "WITH"):
            self._log.append((sql, params if params is not None else {}, dict(self._registered)))
        return result

    def register(self, name: str, data: pa.Table) -> None:
        self._registered[name] = data
        self._cursor.register(name, data)

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)
        self._cursor.unregister(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@dataclass
class Variable:
    type: SqlType
    value: Any


def map_duckdb_error(e: duckdb.Error) -> SqlServerError:
    """Translate a DuckDB error into SQL Server's number and words."""
    text = str(e).split("\n")[0]
    for marker, number in (
        ("Divide by zero error", 8134),
        ("Conversion failed when converting date and/or time", 241),
        ("Conversion failed", 245),
        ("String or binary data", 2628),
        ("Arithmetic overflow", 8115),
    ):
        if marker in text:
            return SqlServerError(number, text[text.index(marker) :])
    if isinstance(e, duckdb.ConversionException):
        return overflow_from_duckdb(text) or SqlServerError(245, f"Conversion failed: {text}")
    if isinstance(e, duckdb.BinderException) and "must appear in the GROUP BY" in text:
        name = text.split('"')[1] if '"' in text else "?"
        return SqlServerError(
            8120,
            f"Column '{name}' is invalid in the select list because it is not contained "
            "in either an aggregate function or the GROUP BY clause.",
        )
    if isinstance(e, duckdb.BinderException) and "column" in text.lower():
        name = text.split('"')[1] if '"' in text else text
        return SqlServerError(207, f"Invalid column name '{name}'.")
    if isinstance(e, duckdb.CatalogException):
        return SqlServerError(208, f"Invalid object name: {text}")
    if isinstance(e, duckdb.TransactionException) and "onflict" in text:
        return SqlServerError(3960, f"Snapshot isolation transaction aborted due to update conflict. ({text})")
    return SqlServerError(102, f"not supported by the SQL Server double: {text}")


def _is_single_insert(sql: str) -> bool:
    from .fast_insert import scan

    return sql.lstrip()[:6].upper() == "INSERT" and scan(sql) is not None


class DuckDbSession:
    """Implements ``engine_api.EngineSession``."""

    def __init__(self, engine: Any, user: str, database: str, spid: int) -> None:
        self.engine = engine
        self.user = user
        self.database = database
        self.spid = spid
        self.login_time = dt.datetime.now()
        self.cursor = engine.con.cursor()
        self.txn: Transaction | None = None
        self.trancount = 0
        self.options: dict[str, str] = {"nocount": "OFF", "isolation": "READ COMMITTED"}
        self.variables: dict[str, Variable] = {}
        self.last_identity: int | None = None
        self.rowcount = 0
        self.identity_insert: set[int] = set()  # object ids with IDENTITY_INSERT ON
        self._plan_cache: dict[str, list[str]] = {}
        self.row_plans: dict[tuple[str, str], Any] = {}  # single_insert.RowPlan (or None) per (database, text)
        self.pending_rows: Any = None  # single_insert.PendingRows: one-row INSERTs buffered inside BEGIN TRAN

    # -- EngineSession API ----------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return self.txn is not None and self.txn.explicit

    @property
    def transaction_descriptor(self) -> int:
        return self.txn.descriptor if self.in_transaction and self.txn else 0

    @property
    def nocount(self) -> bool:
        return self.options["nocount"] == "ON"

    def execute(self, sql: str, params: Mapping[str, Param] | None = None) -> Iterator[StatementResult]:
        statements = self._plan_cache.get(sql)
        if statements is None:
            # one literal INSERT ... VALUES needs no splitting (tokenizing it costs more than running it)
            statements = [sql] if _is_single_insert(sql) else split_batch(sql)
            if len(self._plan_cache) > 500:
                self._plan_cache.clear()
            self._plan_cache[sql] = statements
        self.variables = {}
        return _StatementRunner(self, statements, dict(params or {}))

    def describe_undeclared_parameters(self, sql: str) -> list[tuple[str, SqlType]]:
        from .translate import describe_parameters

        return describe_parameters(self, sql)

    def begin_transaction(self) -> None:
        if self.txn is None or not self.txn.explicit:
            self._begin(explicit=True)
        self.trancount += 1

    def commit(self) -> None:
        if self.trancount == 0:
            raise SqlServerError(3902, "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.")
        self.trancount -= 1
        if self.trancount == 0:
            self._commit()

    def rollback(self) -> None:
        if self.trancount == 0:
            raise SqlServerError(3903, "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.")
        self.trancount = 0
        self._rollback()

    def close(self) -> None:
        self.engine.forget_session(self.spid)
        if self.txn is not None:
            self._rollback()
        self.cursor.close()

    # -- values the translator asks for --------------------------------------------
    def global_value(self, name: str) -> tuple[Any, SqlType]:
        from .globals import global_value

        return global_value(self, name)

    def function_value(self, name: str, args: list[Any]) -> tuple[Any, SqlType]:
        from .globals import function_value

        return function_value(self, name, args)

    def txn_for_read(self) -> Transaction:
        """The transaction object CDC functions read through (a transient one outside BEGIN TRAN)."""
        if self.txn is not None:
            return self.txn
        return Transaction(self, self.cursor, 0, explicit=False)

    # -- transactions ---------------------------------------------------------
    def _begin(self, explicit: bool) -> Transaction:
        if explicit and self.options["isolation"] == "SNAPSHOT":
            db = self.engine.database(self.database)
            if not db.allow_snapshot_isolation:
                raise SqlServerError(
                    3952,
                    f"Snapshot isolation transaction failed accessing database '{db.name}' because snapshot isolation is not allowed in this database. Use ALTER DATABASE to allow snapshot isolation.",
                )
        self.cursor.execute("BEGIN TRANSACTION")
        self.txn = Transaction(self, self.cursor, next(_descriptors), explicit)
        if explicit:
            self.txn.cursor = ReplayLoggedCursor(self.cursor, self.txn.log)
        return self.txn

    def flush_pending_rows(self) -> None:
        if self.pending_rows is not None:
            from .single_insert import flush

            flush(self)

    def _commit(self) -> None:
        txn = self.txn
        if txn is None:
            return
        try:
            self.flush_pending_rows()
            if txn.changed:
                with self.engine.commit_lock:
                    self.engine.cdc.before_commit(txn)
                    self.cursor.execute("COMMIT")
            else:
                self.cursor.execute("COMMIT")
        except duckdb.Error as e:
            self._rollback()
            raise map_duckdb_error(e) from e
        finally:
            self.txn = None

    def _rollback(self) -> None:
        txn, self.txn = self.txn, None
        self.pending_rows = None
        try:
            self.cursor.execute("ROLLBACK")
        except duckdb.Error:
            pass
        if txn is not None and txn.changed:
            self.engine.cdc.after_rollback(txn)

    def autocommit_scope(self) -> "_Scope":
        """Context for a writing statement: joins the open transaction or opens one."""
        return _Scope(self)

    def write(
        self,
        sql: str,
        params: dict[str, Any] | list[Any] | None = None,
        registrations: dict[str, pa.Table] | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """Run a writing DuckDB statement in the current transaction, logged for replay."""
        assert self.txn is not None
        for name, table in (registrations or {}).items():
            self.cursor.register(name, table)
        try:
            result = self.cursor.execute(sql, params or {})
        finally:
            for name in registrations or {}:
                self.cursor.unregister(name)
        if self.txn.explicit:
            logged = list(params) if isinstance(params, list) else dict(params or {})
            self.txn.log.append((sql, logged, dict(registrations or {})))
        return result

    def recover(self) -> None:
        """After a DuckDB error inside BEGIN TRAN: restart the DuckDB transaction and replay."""
        txn = self.txn
        if txn is None:
            return
        try:
            self.cursor.execute("ROLLBACK")
        except duckdb.Error:
            pass
        self.cursor.execute("BEGIN TRANSACTION")
        try:
            for sql, params, registrations in txn.log:
                for name, table in registrations.items():
                    self.cursor.register(name, table)
                self.cursor.execute(sql, params)
                for name in registrations:
                    self.cursor.unregister(name)
        except duckdb.Error as e:  # cannot rebuild: the transaction is lost, as with XACT_ABORT
            self.trancount = 0
            self._rollback()
            raise SqlServerError(
                3998,
                f"Uncommittable transaction is detected at the end of the batch. The transaction is rolled back. ({e})",
            ) from e


class _StatementRunner:
    """Runs a batch's statements one per ``next()``.

    Not a generator: a generator that raises is finished, but the protocol layer
    catches a statement's SqlServerError, sends it and asks for the next statement,
    as SQL Server carries on after a statement-level error.
    """

    def __init__(self, session: DuckDbSession, statements: list[str], params: dict[str, Param]) -> None:
        self._session = session
        self._statements = iter(statements)
        self._params = params

    def __iter__(self) -> "_StatementRunner":
        return self

    def __next__(self) -> StatementResult:
        from .statements import run_statement

        statement = next(self._statements)
        try:
            return run_statement(self._session, statement, self._params)
        except SqlServerError as error:
            if aborts.apply(self._session, error).aborts_batch:
                self._statements = iter(())  # SQL Server runs nothing more of this batch
            raise


class _Scope:
    def __init__(self, session: DuckDbSession) -> None:
        self.session = session
        self.own = False

    def __enter__(self) -> Transaction:
        s = self.session
        if s.txn is None:
            s._begin(explicit=False)
            self.own = True
        assert s.txn is not None
        return s.txn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        s = self.session
        if self.own:
            if exc_type is None:
                s._commit()
            else:
                s._rollback()
        elif exc_type is not None and isinstance(exc, duckdb.Error):
            s.recover()
