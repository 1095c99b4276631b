"""Resolving a task's ``tables:`` against the source's catalog.

Explicit entries come first, in config order, renamed to the catalog's spelling
and keeping their options; pattern matches follow, sorted case-insensitively,
minus ``exclude_tables`` (which never removes an explicit entry). Names compare
case-insensitively, as under SQL Server's default collations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dtaas_dagster.config import ConfigError, TableConfig, TaskConfig
from dtaas_dagster.config.base import did_you_mean
from dtaas_dagster.sqlserver.names import format_table_name, parse_table_name


@dataclass(frozen=True)
class TableSelection:
    """The tables a task loads, plus warnings for the person who wrote the config."""

    tables: list[TableConfig]
    warnings: list[str] = field(default_factory=list)


def _key(schema: str, table: str) -> tuple[str, str]:
    return schema.lower(), table.lower()


def match_tables(task: TaskConfig, available: Sequence[tuple[str, str]], *, task_name: str = "") -> TableSelection:
    """Resolve ``task.tables`` against the catalog's ``(schema, table)`` names."""
    label = f"task {task_name}: " if task_name else ""
    by_key = {_key(s, t): (s, t) for s, t in available}
    result: list[TableConfig] = []
    chosen: set[tuple[str, str]] = set()
    for table in task.explicit_tables():
        ref = parse_table_name(table.name)
        found = by_key.get(_key(ref.schema.text, ref.table.text))
        if found is None:
            names = [format_table_name(s, t) for s, t in available]
            hint = did_you_mean(table.name, names).replace("'", "")
            raise ConfigError(
                f"{label}table {table.name} not found in source {task.source}"
                f"{hint or '; check the name (dtaas tables lists them).'}"
            )
        result.append(table.model_copy(update={"name": format_table_name(*found)}))
        chosen.add(_key(*found))
    excludes = [parse_table_name(x) for x in task.exclude_tables]
    used_excludes: set[int] = set()
    for pattern in task.patterns():
        ref = parse_table_name(pattern)
        matched = [(s, t) for s, t in available if ref.matches(s, t)]
        if not matched:
            raise ConfigError(
                f"{label}pattern {pattern} matched no table in source {task.source}; "
                "check the pattern (schema.table, * and ? wildcards) or remove it."
            )
        for s, t in sorted(matched, key=lambda st: _key(*st)):
            hits = [i for i, x in enumerate(excludes) if x.matches(s, t)]
            used_excludes.update(hits)
            if _key(s, t) in chosen or hits:
                continue
            result.append(TableConfig(name=format_table_name(s, t)))
            chosen.add(_key(s, t))
    warnings = [
        f"{label}exclude_tables entry {task.exclude_tables[i]} matched no table of the patterns in source "
        f"{task.source}; check it for a typo or remove it."
        for i in range(len(excludes))
        if i not in used_excludes
    ]
    return TableSelection(result, warnings)
