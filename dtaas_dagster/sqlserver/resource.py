"""SqlServerResource: connections, named catalog queries and bulk reads.

Control and catalog queries go through pyodbc; bulk reads go through
arrow-odbc on the same connection string (500k-900k rows/s against 150k-280k
for pyodbc ``fetchmany``, measured in the project's design notes). All T-SQL
comes from :mod:`dtaas_dagster.sqlserver.queries`. The resource decides
nothing about a load: planning is a function of the facts it reads
(:mod:`dtaas_dagster.sqlserver.snapshot`). A step that loads many tables opens
:meth:`SqlServerResource.facts_session` to read their facts ahead, in bulk
(:mod:`dtaas_dagster.sqlserver.facts_session`).

The password never enters a string we log or raise: pyodbc gets it inside the
connection string (``PWD={...}``), arrow-odbc as its ``password`` argument, and
every driver message is scrubbed before it becomes one of our errors.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa
from dagster import ConfigurableResource, EnvVar
from pydantic import Field, PrivateAttr

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.bulk import BulkRead, read_counted
from dtaas_dagster.sqlserver.cdc import (
    CaptureInstance,
    CdcNotEnabled,
    CdcProbe,
    ChangeWindow,
    InstanceProbe,
    database_not_enabled,
    probe_parameters,
)
from dtaas_dagster.sqlserver.drivers import OdbcDriver, resolve_driver
from dtaas_dagster.sqlserver.errors import (
    SqlServerError,
    scrub,
    table_not_found,
    translate_driver_error,
)
from dtaas_dagster.sqlserver.facts import (
    DatabaseOptions,
    ServerInfo,
    TableDescription,
    TableFacts,
    TableInfo,
    columns_from_rows,
    result_sets,
)
from dtaas_dagster.sqlserver.facts_session import ChangeFactsRows, FactsSession
from dtaas_dagster.sqlserver.lsn import Lsn
from dtaas_dagster.stream import SourceCount, TableRef

if TYPE_CHECKING:
    import pyodbc

    from dtaas_dagster.config import SqlServerSource

_SQL_SS_TIMESTAMPOFFSET = -155


def _escape_odbc_value(value: str) -> str:
    """Brace-quote a connection-string value so ; = { } inside it cannot change the string."""
    return "{" + value.replace("}", "}}") + "}"


def _datetimeoffset_from_bytes(raw: bytes) -> dt.datetime:
    year, month, day, hour, minute, second, fraction_ns, tz_hour, tz_minute = struct.unpack("<6hI2h", raw)
    offset = dt.timezone(dt.timedelta(hours=tz_hour, minutes=tz_minute))
    return dt.datetime(year, month, day, hour, minute, second, fraction_ns // 1000, tzinfo=offset)


def _one_window_facts(cursor: pyodbc.Cursor, window: ChangeWindow, source: tuple[str, str] | None) -> ChangeFactsRows:
    """The catalog rows of one change window, in one batch (``queries.build_change_facts``)."""
    params: list[object] = [*source] if source is not None else []
    params += [window.capture_instance, "cdc", window.capture_instance + "_CT", window.capture_instance]
    cursor.execute(queries.build_change_facts(with_key=source is not None), *params)
    results = result_sets(cursor, 4 if source is not None else 3)
    key = tuple(str(r[0]) for r in results.pop(0)) if source is not None else ()
    min_value = results[2][0][0] if results[2] else None
    return ChangeFactsRows(
        key,
        tuple(str(r[0]) for r in results[0]),
        tuple(tuple(r) for r in results[1]),
        None if min_value is None else bytes(min_value),
    )


def _changes_profile(
    cursor: pyodbc.Cursor, window: ChangeWindow, wanted: Sequence[queries.ProfileColumn]
) -> tuple[object, ...]:
    """The profile of a change window's rows (what its plan needs to size and type the read)."""
    sql = queries.build_changes_profile(window.capture_instance, wanted)
    cursor.execute(sql, window.from_lsn.hex, window.to_lsn.hex)
    [[row]] = result_sets(cursor, 1)
    return tuple(row)


def _database_options(cursor: pyodbc.Cursor) -> DatabaseOptions:
    """Snapshot isolation allowed, CDC enabled and RCSI of the current database."""
    row = cursor.execute(queries.DATABASE_OPTIONS).fetchone()
    if not row:
        return DatabaseOptions(snapshot_isolation=False, cdc_enabled=False)
    return DatabaseOptions(
        snapshot_isolation=int(row[0] or 0) == 1, cdc_enabled=bool(row[1]), read_committed_snapshot=bool(row[2])
    )


def _capture_instances(cursor: pyodbc.Cursor) -> list[CaptureInstance]:
    rows = cursor.execute(queries.CAPTURE_INSTANCES).fetchall()
    return [CaptureInstance(str(r[0]), str(r[1]), str(r[2]), Lsn.from_bytes(bytes(r[3])), r[4]) for r in rows]


def _profile(
    cursor: pyodbc.Cursor, schema: str, table: str, wanted: Sequence[queries.ProfileColumn]
) -> tuple[object, ...]:
    return tuple(cursor.execute(queries.build_profile_select(schema, table, wanted)).fetchone())


class SqlServerResource(ConfigurableResource):
    """One SQL Server database, reached through ODBC (Driver 18 or FreeTDS)."""

    source_name: str = Field(description="Name of the source in dtaas.yaml (used in messages and pool names).")
    host: str = Field(description="SQL Server host name or IP address.")
    port: int = Field(default=1433, description="TCP port of the SQL Server instance.")
    database: str = Field(description="Database to read from.")
    user: str = Field(description="SQL login name.")
    password: str = Field(description="Password of the login; give it as EnvVar so it is never stored in config.")
    password_env: str = Field(
        default="", description="Name of the environment variable holding the password (for messages)."
    )
    driver: str = Field(default="auto", description="auto, msodbc18, freetds, or an ODBC driver name/path.")
    encrypt: str = Field(default="yes", description="yes, no, optional or strict.")
    trust_server_certificate: bool = Field(
        default=False, description="Accept the server's certificate without validation."
    )
    login_timeout_seconds: int = Field(default=15, description="Seconds to wait for a connection.")
    query_timeout_seconds: int = Field(default=0, description="Seconds before a query is cancelled (0: no limit).")
    odbc_extra: dict[str, str] = Field(default_factory=dict, description="Extra ODBC connection attributes.")

    _driver: OdbcDriver | None = PrivateAttr(default=None)
    _facts_session: FactsSession | None = PrivateAttr(default=None)

    @classmethod
    def from_source(cls, name: str, source: SqlServerSource, *, password: str | None = None) -> SqlServerResource:
        """The resource of source ``name``; the password stays an ``EnvVar`` unless given
        (load-time catalog reads resolve it themselves)."""
        return cls(
            source_name=name,
            host=source.host,
            port=source.port,
            database=source.database,
            user=source.user,
            password=password if password is not None else EnvVar(source.password_env),
            password_env=source.password_env,
            driver=source.driver,
            encrypt=source.encrypt,
            trust_server_certificate=source.trust_server_certificate,
            login_timeout_seconds=source.login_timeout_seconds,
            query_timeout_seconds=source.query_timeout_seconds,
            odbc_extra=dict(source.odbc_extra),
        )

    # ----------------------------------------------------------------- connections
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def odbc_driver(self) -> OdbcDriver:
        if self._driver is None:
            self._driver = resolve_driver(self.driver)
        return self._driver

    def connection_string(self, *, with_password: bool = True) -> str:
        """The ODBC connection string. With ``with_password=False`` it is safe to show."""
        driver = self.odbc_driver()
        parts = {"DRIVER": _escape_odbc_value(driver.value)}
        if driver.is_freetds:
            parts.update(SERVER=self.host, PORT=str(self.port), TDS_Version="7.4", ClientCharset="UTF-8")
            parts["Encryption"] = {"yes": "require", "strict": "require", "optional": "request", "no": "off"}[
                self.encrypt
            ]
        else:
            parts["SERVER"] = f"tcp:{self.host},{self.port}"
            parts["Encrypt"] = {"yes": "yes", "strict": "strict", "optional": "optional", "no": "no"}[self.encrypt]
            parts["TrustServerCertificate"] = "yes" if self.trust_server_certificate else "no"
            parts["LoginTimeout"] = str(self.login_timeout_seconds)
        parts["DATABASE"] = _escape_odbc_value(self.database)
        parts["UID"] = _escape_odbc_value(self.user)
        if with_password:
            parts["PWD"] = _escape_odbc_value(self.password)
        for key, value in self.odbc_extra.items():
            parts[key] = _escape_odbc_value(value)
        return ";".join(f"{key}={value}" for key, value in parts.items()) + ";"

    def _translate(self, exc: BaseException) -> SqlServerError:
        return translate_driver_error(
            exc,
            source=self.source_name,
            address=self.address,
            user=self.user,
            password_env=self.password_env or "(the password variable)",
            password=self.password,
        )

    @contextlib.contextmanager
    def connect(self) -> Iterator[pyodbc.Connection]:
        """A pyodbc connection with autocommit on; driver errors come out translated."""
        import pyodbc

        try:
            connection = pyodbc.connect(self.connection_string(), autocommit=True, timeout=self.login_timeout_seconds)
        except pyodbc.Error as exc:
            raise self._translate(exc) from None
        connection.add_output_converter(_SQL_SS_TIMESTAMPOFFSET, _datetimeoffset_from_bytes)
        if self.query_timeout_seconds:
            connection.timeout = self.query_timeout_seconds
        try:
            yield connection
        except pyodbc.Error as exc:
            raise self._translate(exc) from None
        finally:
            connection.close()

    # --------------------------------------------------------------------- catalog
    def server_info(self) -> ServerInfo:
        """Test the connection and read what preflight needs to know."""
        with self.connect() as connection:
            cursor = connection.cursor()
            version, edition, database, _ = cursor.execute(queries.SERVER_INFO).fetchone()
            options = _database_options(cursor)
        return ServerInfo(
            product_version=str(version),
            edition=str(edition),
            database=str(database),
            snapshot_isolation=options.snapshot_isolation,
            cdc_enabled=options.cdc_enabled,
        )

    def database_options(self) -> DatabaseOptions:
        """The sys.databases settings of the source database."""
        with self.connect() as connection:
            return _database_options(connection.cursor())

    def list_tables(self) -> list[TableInfo]:
        """User tables of the database with row estimates from sys.dm_db_partition_stats."""
        with self.connect() as connection:
            rows = connection.cursor().execute(queries.LIST_TABLES).fetchall()
        return [TableInfo(str(r[0]), str(r[1]), None if r[2] is None else int(r[2])) for r in rows]

    def _describe(self, cursor: pyodbc.Cursor, schema: str, table: str) -> TableDescription:
        ref = TableRef(self.database, schema, table)
        rows = cursor.execute(queries.TABLE_COLUMNS, schema, table).fetchall()
        if not rows:
            candidates = [f"{r[0]}.{r[1]}" for r in cursor.execute(queries.LIST_TABLES).fetchall()]
            raise table_not_found(ref, self.source_name, candidates)
        key = [str(r[0]) for r in cursor.execute(queries.PRIMARY_KEY_COLUMNS, schema, table).fetchall()]
        estimate_row = cursor.execute(queries.TABLE_ROW_ESTIMATE, schema, table).fetchone()
        estimate = None if not estimate_row or estimate_row[0] is None else int(estimate_row[0])
        return TableDescription(ref, columns_from_rows(rows), tuple(key), estimate)

    def describe_table(self, schema: str, table: str) -> TableDescription:
        """Columns, types, nullability, primary key and row estimate; a clear error when missing."""
        with self.connect() as connection:
            return self._describe(connection.cursor(), schema, table)

    @contextlib.contextmanager
    def facts_session(
        self, tables: Sequence[tuple[str, str]], *, capture_instances: Mapping[tuple[str, str], str] | None = None
    ) -> Iterator[FactsSession]:
        """While the block runs, ``table_facts`` of these ``(schema, table)``s (in load order) reads
        their descriptions ahead, in bulk, and so does ``change_facts`` of the tables whose change
        window's capture instance ``capture_instances`` names (see facts_session.py). One step at a
        time per resource."""
        session = FactsSession(
            database=self.database,
            tables=tables,
            read_options=_database_options,
            capture_instances=capture_instances,
        )
        self._facts_session = session
        try:
            yield session
        finally:
            self._facts_session = None

    def table_facts(
        self,
        schema: str,
        table: str,
        *,
        profile_columns: Callable[[TableDescription], Sequence[queries.ProfileColumn]] = lambda _: (),
        cdc: bool = False,
    ) -> TableFacts:
        """Description, database options and the profile a plan needs, over ONE connection.

        ``profile_columns`` (a pure function of the description, from the planner)
        names what to profile; the profile query runs only when it names something.
        With ``cdc``, also the table's capture instances and the max LSN, read before
        the caller's bulk read starts (the snapshot-to-CDC handoff, docs/cdc.md).
        Inside :meth:`facts_session` the description and options may come from its bulk read.
        """
        session = self._facts_session
        known = session.take(schema, table) if session is not None else None
        if known is not None and not cdc:  # read ahead: a connection only when the profile needs one
            wanted = list(profile_columns(known[0]))
            if not wanted:
                return TableFacts(known[0], known[1])
            with self.connect() as connection:
                return TableFacts(known[0], known[1], _profile(connection.cursor(), schema, table, wanted))
        with self.connect() as connection:
            cursor = connection.cursor()
            if known is None:
                known = session.read_ahead(cursor, schema, table) if session is not None else None
            description, options = known or (self._describe(cursor, schema, table), _database_options(cursor))
            instances: tuple[CaptureInstance, ...] = ()
            max_lsn = None
            if cdc and options.cdc_enabled:
                instances = tuple(i for i in _capture_instances(cursor) if i.tracks(schema, table))
                row = cursor.execute(queries.CDC_MAX_LSN).fetchone()
                max_lsn = None if row is None or row[0] is None else Lsn.from_bytes(bytes(row[0]))
            wanted = list(profile_columns(description))
            profile = _profile(cursor, schema, table, wanted) if wanted else ()
        return TableFacts(description, options, profile, max_lsn, instances)

    # --------------------------------------------------------------------------- CDC
    def capture_instances(self) -> list[CaptureInstance]:
        """Every capture instance of the database (cdc.change_tables), with its source table."""
        with self.connect() as connection:
            return _capture_instances(connection.cursor())

    def cdc_max_lsn(self) -> Lsn | None:
        """sys.fn_cdc_get_max_lsn(): the newest LSN the capture job has processed (None: CDC is off)."""
        with self.connect() as connection:
            row = connection.cursor().execute(queries.CDC_MAX_LSN).fetchone()
        return None if row is None or row[0] is None else Lsn.from_bytes(bytes(row[0]))

    def map_time_to_lsn(self, moment: dt.datetime) -> Lsn | None:
        """The first LSN committed at or after ``moment`` (given in UTC; mapped in server time)."""
        with self.connect() as connection:
            cursor = connection.cursor()
            offset = int(cursor.execute(queries.SERVER_UTC_OFFSET_MINUTES).fetchone()[0])
            local = moment.astimezone(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=offset)
            row = cursor.execute(queries.MAP_TIME_TO_LSN, local).fetchone()
        return None if row is None or row[0] is None else Lsn.from_bytes(bytes(row[0]))

    def cdc_probe(self, froms: Mapping[str, Lsn]) -> CdcProbe:
        """One batch for all ``froms`` (capture instance -> first LSN wanted): max LSN, min LSNs,
        and the first change of each instance in ``[from, max]``."""
        names, params = probe_parameters(dict(froms))
        with self.connect() as connection:
            cursor = connection.cursor().execute(queries.build_cdc_probe(names), *params)
            row = cursor.fetchone()
            if row is None or row[0] is None:
                raise database_not_enabled(self.database, self.source_name)
            max_lsn = Lsn.from_bytes(bytes(row[0]))
            probes: dict[str, InstanceProbe] = {}
            if names and cursor.nextset():
                for name, min_lsn, first in cursor.fetchall():
                    probes[str(name)] = InstanceProbe(
                        str(name),
                        Lsn.from_bytes(bytes(min_lsn)) if min_lsn else Lsn(0),
                        None if first is None else Lsn.from_bytes(bytes(first)),
                        froms[str(name)],
                    )
        return CdcProbe(max_lsn, probes)

    def change_facts(
        self,
        window: ChangeWindow,
        *,
        profile_columns: Callable[[TableDescription], Sequence[queries.ProfileColumn]] = lambda _: (),
        source: tuple[str, str] | None = None,
    ) -> TableFacts:
        """The captured columns of a capture instance (types from its change table) and, when the
        plan needs it, a profile of the window's rows; one connection, one batch (plus the
        profile). With ``source`` (schema, table), the description's primary key is the source
        table's. Inside :meth:`facts_session` opened with the window's capture instance, the batch
        may be the session's, for this window and the next ones (facts_session.py).

        ``options`` are not read from sys.databases: a change window reads committed change
        rows by LSN, under no isolation level of ours, and CDC is on (the instance exists).
        """
        session = self._facts_session if source is not None else None
        if session is not None and source is not None:
            known = session.take_changes(*source, window.capture_instance)
            if known is not None:  # read ahead: a connection only when the profile needs one
                facts, wanted = self._change_facts_of(window, known, profile_columns)
                if not wanted:
                    return facts
                with self.connect() as connection:
                    return replace(facts, profile=_changes_profile(connection.cursor(), window, wanted))
        with self.connect() as connection:
            cursor = connection.cursor()
            rows = session.read_changes_ahead(cursor, *source, window.capture_instance) if session and source else None
            if rows is None:
                rows = _one_window_facts(cursor, window, source)
            facts, wanted = self._change_facts_of(window, rows, profile_columns)
            if wanted:
                facts = replace(facts, profile=_changes_profile(cursor, window, wanted))
        return facts

    def _change_facts_of(
        self,
        window: ChangeWindow,
        rows: ChangeFactsRows,
        profile_columns: Callable[[TableDescription], Sequence[queries.ProfileColumn]],
    ) -> tuple[TableFacts, list[queries.ProfileColumn]]:
        """The facts of a change window from its catalog rows, and the columns to profile (none when
        the window starts before the instance's min LSN: the caller reports the gap, reads nothing)."""
        if not rows.captured:
            raise CdcNotEnabled(
                f"capture instance {window.capture_instance} does not exist in database {self.database} of "
                f"source '{self.source_name}' (it was disabled or dropped); see docs/cdc.md"
            )
        by_name = {c.name.lower(): c for c in columns_from_rows(rows.column_rows)}
        columns = tuple(by_name[name.lower()] for name in rows.captured if name.lower() in by_name)
        description = TableDescription(
            TableRef(self.database, "cdc", window.capture_instance + "_CT"), columns, rows.primary_key
        )
        options = DatabaseOptions(snapshot_isolation=False, cdc_enabled=True)
        min_lsn = None if rows.min_lsn is None else Lsn.from_bytes(rows.min_lsn)
        facts = TableFacts(description, options, (), None, (), min_lsn)
        if min_lsn is not None and window.from_lsn < min_lsn:
            return facts, []
        return facts, list(profile_columns(description))

    # ---------------------------------------------------------------- bulk reads
    def read_arrow(
        self,
        read: BulkRead,
        *,
        batch_rows: int | None = 50_000,
        batch_mb: float | None = None,
        count: SourceCount | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream a bulk read as fetched Arrow batches, checked for completeness (see bulk.py);
        ``count`` records the rows received and the rows SQL Server says it sent."""
        try:
            yield from read_counted(
                read,
                connection_string=self.connection_string(with_password=False),
                password=self.password,
                login_timeout_seconds=self.login_timeout_seconds,
                query_timeout_seconds=self.query_timeout_seconds or None,
                batch_rows=batch_rows,
                batch_mb=batch_mb,
                count=count,
            )
        except SqlServerError:
            raise
        except Exception as exc:  # arrow-odbc raises its own Error type; translate at the boundary
            if type(exc).__module__.startswith("arrow_odbc"):
                raise self._translate(exc) from None
            raise

    def safe_message(self, text: str) -> str:
        return scrub(text, self.password)
