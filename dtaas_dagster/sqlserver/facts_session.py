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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dtaas_dagster.sqlserver import queries
from dtaas_dagster.sqlserver.facts import DatabaseOptions, TableDescription, columns_from_rows
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
class _Described:
    description: TableDescription
    options: DatabaseOptions
    read_at: float


class FactsSession:
    """Descriptions of a step's tables, read ahead in bulk (see the module docstring).

    ``tables`` are ``(schema, table)`` in the order the step loads them.
    ``read_options`` reads the database options over a cursor. Not thread-safe:
    one step loads one table at a time.
    """

    def __init__(
        self,
        *,
        database: str,
        tables: Sequence[tuple[str, str]],
        read_options: Callable[[pyodbc.Cursor], DatabaseOptions],
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
