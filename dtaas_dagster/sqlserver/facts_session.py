"""Describing a step's tables ahead, in bulk: fewer catalog statements per table.

Why. Describing one table takes four statements (columns, primary key, row
estimate, database options). A step that loads hundreds of small tables one
after the other spent more on those statements than on moving rows: four
round trips per table on a real server, and on the SQL Server double (whose
catalog views are built per statement from every table) about 0.3 CPU-seconds
per table at 500 tables (bench/RESULTS.md, "many tables").

How. While ``SqlServerResource.facts_session(tables)`` is open (a table step
opens it for the tables it loads), ``table_facts`` of one of those tables
takes its description from a :class:`FactsSession`, which reads the
descriptions of that table and of the next tables of the step (same schema, up
to :data:`DESCRIBE_AHEAD` of them) in two statements (columns, primary keys),
plus the database options. Row estimates only size batches and feed progress
percentages and metadata, so they are read once per session, for all its
tables (on the double, the statement that costs most). What stays as before:

- a description is used once, and at most :data:`MAX_AGE_SECONDS` after it was
  read; an older one is read again, with the tables after it. (Before, the
  gap between describing a table and reading it was milliseconds; it is now at
  most this long. A column dropped in the gap fails the read with SQL Server
  error 207, which is retried, and the retry describes the table again.)
- the profile query (MIN/MAX of datetime2(7) columns, longest (max) value)
  runs per table, right before its read;
- a table the bulk answer does not have is described on its own, so a
  missing table gets the same "not found; did you mean" error as before.

Change windows. A CDC run's step reads one change window per table, and each
needs its own catalog facts (the source table's primary key, the capture
instance's captured columns and their types, its min LSN). With
``capture_instances`` the session reads those for the window's table and the
next tables of the step (same schema, up to :data:`DESCRIBE_AHEAD`) in one
batch (``queries.build_change_facts_of_windows``), so a step of ten changed
tables asks the catalog once instead of ten times, and opens no connection
for the nine windows after the first that need no profile. The same rules
hold (at most MAX_AGE_SECONDS old, an instance the answer lacks is described
alone and gets the one-window error), except that a window may take its facts
again while they are fresh: ``schema_drift: ignore`` plans a window twice. A
min LSN read ahead can be up to MAX_AGE_SECONDS old: a cleanup in between is
still caught, since SQL Server's change function refuses a from-LSN below the
instance's min LSN (error 313), which fails the read with nothing written, and
the retry reads the facts again and reports the retention gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.facts import DatabaseOptions, TableDescription, columns_from_rows, result_sets
from dtaas_dagster.stream import TableRef

if TYPE_CHECKING:
    import pyodbc

# Tables described per bulk read: enough to make the catalog statements rare, few enough
# that little is read in vain when MAX_AGE_SECONDS passes before a busy step gets to them.
DESCRIBE_AHEAD = 32
# A description older than this is read again before its table is read.
MAX_AGE_SECONDS = 30.0
# Row estimates are read once per session, this many tables per statement.
ESTIMATES_PER_QUERY = 1_000

_T = TypeVar("_T")


@dataclass(frozen=True)
class ChangeFactsRows:
    """What the catalog says for one change window, as rows: the source table's primary key, the
    captured columns (capture-instance order), the change table's column rows
    (``queries.TABLE_COLUMNS``) and the instance's min LSN (binary(10); None when SQL Server has none)."""

    primary_key: tuple[str, ...]
    captured: tuple[str, ...]
    column_rows: tuple[tuple[Any, ...], ...]
    min_lsn: bytes | None


@dataclass(frozen=True)
class _ChangesDescribed:
    capture_instance: str
    rows: ChangeFactsRows | None  # None: the batch had no answer for this instance
    read_at: float


@dataclass(frozen=True)
class _Described:
    description: TableDescription
    options: DatabaseOptions
    read_at: float


class FactsSession:
    """Descriptions of a step's tables, read ahead in bulk (see the module docstring).

    ``tables`` are ``(schema, table)`` in the order the step loads them.
    ``read_options`` reads the database options over a cursor.
    ``capture_instances`` maps those of the tables the step reads a change window of to the
    window's capture instance. Not thread-safe: one step loads one table at a time.
    """

    def __init__(
        self,
        *,
        database: str,
        tables: Sequence[tuple[str, str]],
        read_options: Callable[[pyodbc.Cursor], DatabaseOptions],
        capture_instances: Mapping[tuple[str, str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._order = list(dict.fromkeys(tables))
        self._position = {key: index for index, key in enumerate(self._order)}
        self._read_options = read_options
        self._clock = clock
        self._described: dict[tuple[str, str], _Described] = {}
        self._taken: set[tuple[str, str]] = set()
        self._estimates: dict[str, dict[str, Any]] = {}  # per schema, read once
        self._instances = dict(capture_instances or {})
        self._changes: dict[tuple[str, str], _ChangesDescribed] = {}
        self.bulk_reads = 0  # how often the catalog was asked (tests and benchmarks read it)

    def take(self, schema: str, table: str) -> tuple[TableDescription, DatabaseOptions] | None:
        """The description and database options of one of the session's tables, if read ahead
        less than MAX_AGE_SECONDS ago (each is taken once); None otherwise."""
        found = self._described.pop((schema, table), None)
        if found is None or self._clock() - found.read_at > MAX_AGE_SECONDS:
            return None
        self._taken.add((schema, table))
        return found.description, found.options

    def read_ahead(
        self, cursor: pyodbc.Cursor, schema: str, table: str
    ) -> tuple[TableDescription, DatabaseOptions] | None:
        """Read this table's description and those of the next tables ahead, then take this one;
        None when the session does not load this table or the catalog has no (single) answer for it
        (the caller describes it alone)."""
        if (schema, table) not in self._position:
            return None
        self._read_ahead(cursor, (schema, table))
        return self.take(schema, table)

    def _read_ahead(self, cursor: pyodbc.Cursor, key: tuple[str, str]) -> None:
        schema = key[0]
        names = [key[1]] + [
            table
            for other_schema, table in self._order[self._position[key] + 1 :]
            if other_schema == schema and (other_schema, table) not in self._taken
        ]
        names = names[:DESCRIBE_AHEAD]
        read_at = self._clock()
        parameters = [schema, *names]
        columns = _grouped(cursor.execute(queries.build_columns_of_tables(len(names)), *parameters).fetchall())
        keys = _grouped(cursor.execute(queries.build_primary_keys_of_tables(len(names)), *parameters).fetchall())
        estimates = self._estimates_of(cursor, schema)
        options = self._read_options(cursor)
        self.bulk_reads += 1
        self._described = {k: v for k, v in self._described.items() if k[0] != schema or k[1] not in names}
        for name in names:
            rows = _lookup(columns, name)
            if not rows:
                continue  # not found (or ambiguous under a case-sensitive collation): described alone
            key_columns = [str(r[0]) for r in _lookup(keys, name) or []]
            estimate = _lookup(estimates, name)
            self._described[(schema, name)] = _Described(
                TableDescription(
                    TableRef(self._database, schema, name),
                    columns_from_rows(rows),
                    tuple(key_columns),
                    None if estimate is None else int(estimate),
                ),
                options,
                read_at,
            )

    def take_changes(self, schema: str, table: str, capture_instance: str) -> ChangeFactsRows | None:
        """The catalog facts of this table's change window, if read ahead for this capture instance
        less than MAX_AGE_SECONDS ago; None otherwise. The same window may take them again while
        they are that fresh (``schema_drift: ignore`` plans a window twice)."""
        found = self._fresh_changes(schema, table, capture_instance)
        return None if found is None else found.rows

    def read_changes_ahead(
        self, cursor: pyodbc.Cursor, schema: str, table: str, capture_instance: str
    ) -> ChangeFactsRows | None:
        """Read the change-window facts of this table and of the next tables ahead in one batch, then
        take this one's; None when the session has no window of this table on this capture instance
        or the catalog has no (single) answer for it (the caller reads it alone; a table the batch
        had no answer for does not cost another batch)."""
        if self._instances.get((schema, table)) != capture_instance:
            return None
        known = self._fresh_changes(schema, table, capture_instance)
        if known is not None:
            return known.rows
        start = self._position[(schema, table)]
        names = [table] + [
            other
            for other_schema, other in self._order[start + 1 :]
            if other_schema == schema
            and (schema, other) in self._instances
            and self._fresh_changes(schema, other, self._instances[(schema, other)]) is None
        ]
        names = names[:DESCRIBE_AHEAD]
        instances = [self._instances[(schema, name)] for name in names]
        parameters: list[object] = [schema, *names, *instances, "cdc", *(i + "_CT" for i in instances)]
        for instance in instances:
            parameters += [instance, instance]
        read_at = self._clock()
        cursor.execute(queries.build_change_facts_of_windows(len(names)), *parameters)
        keys, captured, columns, min_lsns = (_grouped(rows) for rows in result_sets(cursor, 4))
        self.bulk_reads += 1
        for name, instance in zip(names, instances):
            captured_rows = _lookup(captured, instance)
            column_rows = _lookup(columns, instance + "_CT")
            min_lsn_rows = _lookup(min_lsns, instance)
            rows = None  # no such instance (or ambiguous): read alone, for the one-window error
            if captured_rows and column_rows and min_lsn_rows:
                min_lsn = min_lsn_rows[0][0]
                rows = ChangeFactsRows(
                    tuple(str(r[0]) for r in _lookup(keys, name) or []),
                    tuple(str(r[0]) for r in captured_rows),
                    tuple(column_rows),
                    None if min_lsn is None else bytes(min_lsn),
                )
            self._changes[(schema, name)] = _ChangesDescribed(instance, rows, read_at)
        return self.take_changes(schema, table, capture_instance)

    def _fresh_changes(self, schema: str, table: str, capture_instance: str) -> _ChangesDescribed | None:
        found = self._changes.get((schema, table))
        if found is None or found.capture_instance != capture_instance:
            return None
        return None if self._clock() - found.read_at > MAX_AGE_SECONDS else found

    def _estimates_of(self, cursor: pyodbc.Cursor, schema: str) -> dict[str, Any]:
        """Row estimates of all the session's tables of ``schema``, read the first time they are asked for."""
        if schema not in self._estimates:
            names = [table for other_schema, table in self._order if other_schema == schema]
            found: dict[str, Any] = {}
            for start in range(0, len(names), ESTIMATES_PER_QUERY):
                chunk = names[start : start + ESTIMATES_PER_QUERY]
                sql = queries.build_row_estimates_of_tables(len(chunk))
                found.update((str(r[0]), r[1]) for r in cursor.execute(sql, schema, *chunk).fetchall())
            self._estimates[schema] = found
        return self._estimates[schema]


def _grouped(rows: Iterable[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Rows whose first value is a table name, grouped by it (the name removed)."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        result.setdefault(str(row[0]), []).append(tuple(row[1:]))
    return result


def _lookup(by_name: dict[str, _T], name: str) -> _T | None:
    """The entry of ``name``: its exact spelling, else the only one equal to it ignoring case
    (SQL Server's default collations compare names case-insensitively)."""
    if name in by_name:
        return by_name[name]
    matches = [value for other, value in by_name.items() if other.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None
