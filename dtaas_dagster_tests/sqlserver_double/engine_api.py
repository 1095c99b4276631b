"""The contract between the double's TDS protocol layer and its SQL engine.

The protocol layer (``tds/``, ``server.py``) knows bytes on the wire: packets,
PRELOGIN/LOGIN7, tokens, RPC parameter decoding, and how to encode Arrow
columns as TDS rows. The engine (``engine/``) knows T-SQL: it parses a batch,
runs it on DuckDB with SQL Server's semantics, keeps the catalog, CDC and
transactions. Neither imports the other's internals; they meet here.

Arrow representation of each SQL Server type (engine -> encoder, and decoded
RPC parameters encoder -> engine):

=====================  ====================================================
SQL Server type        Arrow type
=====================  ====================================================
tinyint                uint8
smallint / int         int16 / int32
bigint                 int64
bit                    bool
real / float           float32 / float64
decimal(p,s), numeric  decimal128(p, s)
money / smallmoney     decimal128(19, 4) / decimal128(10, 4)
char/varchar/text      string (or large_string)
nchar/nvarchar/ntext   string (or large_string)
binary/varbinary/image binary (or large_binary)
uniqueidentifier       string, canonical 36-char upper-case form
date                   date32
time(n)                time64('ns')
datetime, smalldatetime timestamp('us')  (value already rounded to 1/300 s)
datetime2(n)           timestamp('us') when n <= 6; for any n the engine may
                       instead give a string 'YYYY-MM-DD HH:MM:SS.fffffff'
                       (always 7 fraction digits) so 100 ns and year 0001 both
                       survive. The encoder accepts both forms.
datetimeoffset(n)      string 'YYYY-MM-DD HH:MM:SS.fffffff +HH:MM'
=====================  ====================================================

Errors: the engine raises :class:`SqlServerError` with SQL Server's error
number; the protocol layer sends it as an ERROR token and carries on with the
next statement of the batch only where SQL Server would (statement-level
errors do not abort the batch unless ``aborts_batch`` is set).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class SqlType:
    """A SQL Server column type as the client should see it in COLMETADATA.

    ``name`` is lower-case SQL Server spelling: 'int', 'nvarchar', 'datetime2',
    'decimal', 'uniqueidentifier', ...
    ``length`` is in characters for char/varchar/nchar/nvarchar, in bytes for
    binary/varbinary, and -1 for ``(max)``.
    ``precision``/``scale`` are for decimal/numeric; ``scale`` is also the
    fractional-second digits of time/datetime2/datetimeoffset (0..7).
    """

    name: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True


@dataclass(frozen=True)
class ResultColumn:
    name: str
    type: SqlType


@dataclass
class ResultSet:
    """Columns plus a lazy stream of Arrow record batches in those columns' order."""

    columns: list[ResultColumn]
    batches: Iterable[pa.RecordBatch]


@dataclass
class StatementResult:
    """What one statement of a batch produced.

    ``rowcount`` is the DONE token's count (rows affected or returned), None for
    statements that have none (SET, USE, CREATE ...). ``messages`` are INFO
    tokens (e.g. "Changed database context to 'sales'.").
    ``return_status`` is set for procedure calls (RETURNSTATUS token).
    ``output_params`` carries OUTPUT parameter values for RPC calls.
    ``env_changes`` are ENVCHANGE events: ('database', new, old),
    ('begin_tran', descriptor), ('commit_tran', descriptor), ('rollback_tran', descriptor).
    """

    result_set: ResultSet | None = None
    rowcount: int | None = None
    messages: list[str] = field(default_factory=list)
    return_status: int | None = None
    output_params: dict[str, Any] = field(default_factory=dict)
    env_changes: list[tuple] = field(default_factory=list)


class SqlServerError(Exception):
    """An error SQL Server would report, with its number, severity and state."""

    def __init__(
        self,
        number: int,
        message: str,
        *,
        severity: int = 16,
        state: int = 1,
        aborts_batch: bool = False,
    ) -> None:
        super().__init__(message)
        self.number = number
        self.message = message
        self.severity = severity
        self.state = state
        self.aborts_batch = aborts_batch
        # ENVCHANGEs the error caused (a transaction rolled back by a batch-aborting error)
        self.env_changes: list[tuple] = []


def not_supported(statement: str) -> SqlServerError:
    """Error 102 for anything outside the double's T-SQL subset."""
    return SqlServerError(102, f"not supported by the SQL Server double: {statement}")


@dataclass(frozen=True)
class Param:
    """A bound parameter of an RPC call, decoded by the protocol layer.

    ``name`` includes the leading '@'. ``value`` is a Python value (int, float,
    Decimal, str, bytes, bool, datetime.date/time/datetime, uuid.UUID) or None.
    """

    name: str
    type: SqlType
    value: Any
    output: bool = False


class EngineSession(Protocol):
    """One client connection's state: current database, open transaction, SET options."""

    database: str

    @property
    def in_transaction(self) -> bool: ...

    @property
    def transaction_descriptor(self) -> int:
        """8-byte transaction id the client echoes back in ALL_HEADERS (0 when none)."""
        ...

    def execute(self, sql: str, params: Mapping[str, Param] | None = None) -> Iterator[StatementResult]:
        """Run a T-SQL batch (or one parameterised statement) statement by statement.

        Raises SqlServerError per failing statement *inside* the iteration, so
        the caller can emit an ERROR token and continue with the next statement.
        """
        ...

    def describe_undeclared_parameters(self, sql: str) -> list[tuple[str, SqlType]]:
        """For sp_describe_undeclared_parameters: the inferred type of each @Pn / ? in sql."""
        ...

    def begin_transaction(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None:
        """Connection closed: roll back anything open and release resources."""
        ...


class Engine(Protocol):
    """A SQL Server instance: logins, databases, sessions."""

    server_name: str
    version: str

    def authenticate(self, user: str, password: str) -> bool: ...

    def open_session(self, user: str, database: str | None) -> EngineSession:
        """database None means the login's default database ('master')."""
        ...
