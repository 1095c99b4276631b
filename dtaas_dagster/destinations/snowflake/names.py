"""Snowflake names: the identifier policy, quoting, and target names rendered from templates.

Policy (docs/snowflake.md#names)
--------------------------------
- ``identifier_case: upper`` (default): every name taken from the source or a
  template is upper-cased, which is how Snowflake resolves an unquoted
  identifier, so ``dbo.orders`` lands in ``ORDERS`` and a user writes
  ``select * from raw.dbo.orders`` without quotes. ``preserve`` keeps the exact
  case (the user then has to quote mixed-case names).
- In SQL every identifier is written quoted (``"ORDERS"``), after
  :func:`check_identifier`: a quoted upper-case name is the same object as the
  unquoted one, and a name with spaces, dots or quotes stays one identifier.
  Nothing a user or a source table supplies reaches SQL any other way.
- Names that dtaas itself owns (``_DTAAS_STAGE``, ``_DTAAS_STATE``, staging
  tables, the change and soft-delete columns) are upper case under both
  policies.
- For people (logs, metadata) :func:`display` shows a name unquoted when it is
  a plain identifier and quoted otherwise.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dtaas_dagster.errors import PermanentLoadError

MAX_IDENTIFIER_LENGTH = 255
_PLAIN = re.compile(r"^[A-Z_][A-Z0-9_$]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SnowflakeNameError(PermanentLoadError):
    """A target name that cannot be a Snowflake identifier, or two columns that collide."""


def check_identifier(name: str, *, what: str) -> str:
    """``name`` if Snowflake accepts it as a quoted identifier; else a clear error."""
    if not name or not name.strip():
        raise SnowflakeNameError(f"{what} is empty; check the destination's name templates and variables")
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise SnowflakeNameError(
            f"{what} {name[:40]!r}... is {len(name)} characters; Snowflake allows "
            f"{MAX_IDENTIFIER_LENGTH}. Shorten the template or the variable."
        )
    if _CONTROL.search(name):
        raise SnowflakeNameError(f"{what} {name!r} contains a control character; Snowflake identifiers cannot")
    return name


def quote(name: str) -> str:
    """The quoted identifier (embedded double quotes doubled), after :func:`check_identifier`."""
    check_identifier(name, what="identifier")
    return '"' + name.replace('"', '""') + '"'


def display(name: str) -> str:
    """A name as a person would type it: bare when it is a plain upper-case identifier."""
    return name if _PLAIN.match(name) else quote(name)


def apply_case(name: str, case: str) -> str:
    """The Snowflake spelling of a source or template name under the case policy."""
    return name.upper() if case == "upper" else name


@dataclass(frozen=True)
class TableName:
    """A fully qualified Snowflake table (or stage) name, already in its final case."""

    database: str
    schema: str
    name: str

    def __post_init__(self) -> None:
        check_identifier(self.database, what="database name")
        check_identifier(self.schema, what="schema name")
        check_identifier(self.name, what="table name")

    @property
    def sql(self) -> str:
        return f"{quote(self.database)}.{quote(self.schema)}.{quote(self.name)}"

    @property
    def schema_sql(self) -> str:
        return f"{quote(self.database)}.{quote(self.schema)}"

    @property
    def display(self) -> str:
        return ".".join(display(part) for part in (self.database, self.schema, self.name))

    def sibling(self, name: str) -> TableName:
        """Another object in the same schema."""
        return TableName(self.database, self.schema, name)


def render_name(template: str, variables: Mapping[str, str], *, what: str, case: str) -> str:
    """One name from its ``$variable`` template (checked at config load), under the case policy."""
    try:
        text = string.Template(template).substitute(variables)
    except KeyError as e:
        raise SnowflakeNameError(
            f"{what} template {template!r} uses ${e.args[0]}, which has no value in this run; define it under variables"
        ) from None
    return check_identifier(apply_case(text, case), what=f"{what} {text!r}")


def render_target(*, database: str, schema: str, table: str, variables: Mapping[str, str], case: str) -> TableName:
    """The target table of one stream from the destination's three templates."""
    return TableName(
        render_name(database, variables, what="database", case=case),
        render_name(schema, variables, what="schema", case=case),
        render_name(table, variables, what="table", case=case),
    )


def target_columns(source_names: Iterable[str], *, case: str, reserved: Iterable[str] = ()) -> dict[str, str]:
    """Source column name -> Snowflake column name; two source columns must not land on one name."""
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    taken = {name.upper() for name in reserved}
    for source in source_names:
        target = check_identifier(apply_case(source, case), what=f"column {source!r}")
        if target.upper() in taken:
            raise SnowflakeNameError(
                f"column {source!r} has a name dtaas reserves in Snowflake ({target}); "
                "exclude it (columns_exclude) or rename it at the source"
            )
        if target in seen:
            raise SnowflakeNameError(
                f"columns {seen[target]!r} and {source!r} both become {display(target)} under "
                "identifier_case: upper; use identifier_case: preserve for this destination"
            )
        seen[target] = source
        mapping[source] = target
    return mapping


def object_slug(target: TableName) -> str:
    """A short, safe, unique token for one target: stage paths and staging-table names use it.

    Letters, digits and ``_`` of the table name (so a person can tell which
    table a left-over belongs to) plus a hash of the full name (so two targets
    never share one). Stage paths appear in PUT/COPY text, where identifiers
    cannot be bound, so nothing else may reach them.
    """
    readable = re.sub(r"[^a-z0-9]+", "_", target.name.lower())[:40].strip("_") or "t"
    digest = hashlib.sha1(f"{target.database}\x00{target.schema}\x00{target.name}".encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def load_token(load_id: str) -> str:
    """A load id (``<run8>-a<attempt>-<hex8>``) as a safe name part: lower case, ``_`` for ``-``."""
    token = re.sub(r"[^a-z0-9]", "_", load_id.lower())
    if not token:
        raise ValueError(f"load id {load_id!r} has no letters or digits")
    return token
