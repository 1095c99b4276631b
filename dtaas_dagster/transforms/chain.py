"""A table's transform chain: validated against its Arrow schema before data moves, then run per batch.

:func:`compile_chain` walks the specs over the table's columns, as the data
will flow, and fails on the first problem with a :class:`TransformError`
that names the table, the transform's position (``#2``, counting from 1) and
the fix: an unknown column, a cast Arrow cannot do, a name that clashes, a
type a function cannot read. What comes out is a :class:`Chain`: one Arrow
step per transform, the output schema, the primary key after renames, and the
filter_rows conditions that can be pushed down to SQL Server
(:mod:`.pushdown`).

Rules that hold for every source and destination:

- column names match case-insensitively (SQL Server's default collations);
  a new name may not equal an existing one in any case;
- the change columns of CDC batches (``_dtaas_op``, ``_dtaas_lsn``,
  ``_dtaas_seqval``, ``_dtaas_commit_time``; any ``_dtaas_`` name) are never
  dropped, renamed or changed, and no transform may create a ``_dtaas_`` column;
- when the mode needs the primary key (``cdc``, ``full_load_and_cdc``: changes
  are merged per key), a key column may not be dropped, renamed or changed;
- every transform maps rows one to one except filter_rows, so a change batch
  is transformed exactly like a snapshot batch, before- and after-images
  alike (:meth:`Chain.apply_changes` for what filter_rows does to changes).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dtaas_dagster.transforms import columns as ops
from dtaas_dagster.transforms.arrow_eval import row_mask
from dtaas_dagster.transforms.expressions import Column, Node, render
from dtaas_dagster.transforms.pushdown import Pushdown

CHANGE_PREFIX = "_dtaas_"
CHANGE_COLUMNS = ("_dtaas_op", "_dtaas_lsn", "_dtaas_seqval", "_dtaas_commit_time")
Step = Callable[[pa.RecordBatch], pa.RecordBatch]


class TransformError(ValueError):
    """A transform does not fit the table; the message names the table, the position and the fix."""


@dataclass(frozen=True)
class Col:
    """A column as the chain sees it: name, type and the source column it still is (None once computed)."""

    name: str
    type: pa.DataType
    source: str | None
    nullable: bool = True


@dataclass(frozen=True)
class TableContext:
    """What validation needs to know about the table besides its columns."""

    table: str
    primary_key: tuple[str, ...] = ()
    key_required: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)
    source_types: Mapping[str, str] = field(default_factory=dict)
    allow_pushdown: bool = True


@dataclass
class Chain:
    """A validated chain: Arrow steps, the output schema, the key after renames and the pushdown."""

    input_schema: pa.Schema
    output_schema: pa.Schema
    steps: list[tuple[str, Step]]
    filters: list[tuple[int, Node]]  # (step index, condition) of the filter_rows steps kept in Arrow
    primary_key: tuple[str, ...]
    renamed_sources: dict[str, str]  # output column -> source column it still is
    pushdown: Pushdown | None = None

    @property
    def is_identity(self) -> bool:
        return not self.steps

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        for _, step in self.steps:
            batch = step(batch)
        return batch

    def apply_changes(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Transform a CDC change batch (with ``_dtaas_op``): every row alike, filter_rows by operation.

        A filter keeps what the destination must see so that it holds exactly
        the source rows that match: an ``insert`` (or ``update_before``) that
        does not match is dropped; an ``update`` whose new image does not match
        becomes a ``delete`` (the row may have matched before, so the
        destination removes it by key); a ``delete`` is always kept (deleting a
        key the destination lacks changes nothing).
        """
        filter_steps = {index for index, _ in self.filters}
        conditions = dict(self.filters)
        for index, (_, step) in enumerate(self.steps):
            if index not in filter_steps:
                batch = step(batch)
                continue
            batch = _filter_changes(batch, conditions[index])
        return batch


def _filter_changes(batch: pa.RecordBatch, condition: Node) -> pa.RecordBatch:
    matches = row_mask(condition, batch)
    position = batch.schema.get_field_index("_dtaas_op")
    if position < 0:
        raise TransformError("a change batch has no _dtaas_op column; apply_changes is for CDC change batches")
    op = batch.column(position)
    is_update = pc.equal(op, "update")
    is_delete = pc.equal(op, "delete")
    keep = pc.or_(pc.or_(matches, is_update), is_delete)
    new_op = pc.if_else(pc.and_(is_update, pc.invert(matches)), pa.scalar("delete", op.type), op)
    arrays = list(batch.columns)
    arrays[position] = new_op
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema).filter(keep)


# ------------------------------------------------------------------------- helpers
class _Walk:
    """The columns as the chain goes, and the error helper for position ``index``."""

    def __init__(self, schema: pa.Schema, context: TableContext) -> None:
        self.cols = [Col(f.name, f.type, f.name, f.nullable) for f in schema]
        self.context = context
        self.index = 0
        self.kind = ""

    def fail(self, problem: str, fix: str) -> TransformError:
        return TransformError(
            f"table {self.context.table}: transformation #{self.index + 1} ({self.kind}): {problem}; {fix}"
        )

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cols]

    def find(self, name: str, role: str = "column_name") -> int:
        exact = [i for i, c in enumerate(self.cols) if c.name == name]
        found = exact or [i for i, c in enumerate(self.cols) if c.name.lower() == name.lower()]
        if len(found) != 1:
            from dtaas_dagster.config.base import did_you_mean

            hint = did_you_mean(name, self.names)
            raise self.fail(
                f"{role} {name!r} is not a column here{hint}", f"columns at this point: {', '.join(self.names)}"
            )
        return found[0]

    def check_new_name(self, name: str, role: str, *, replacing: int | None = None) -> None:
        if any(ord(ch) < 32 for ch in name):
            raise self.fail(f"{role} {name!r} contains a control character", "choose a plain name")
        if name.lower().startswith(CHANGE_PREFIX):
            raise self.fail(
                f"{role} {name!r} starts with {CHANGE_PREFIX}, which is reserved for change columns",
                "choose another name",
            )
        for i, col in enumerate(self.cols):
            if i != replacing and col.name.lower() == name.lower():
                raise self.fail(
                    f"{role} {name!r} clashes with existing column {col.name!r}",
                    "choose another name, or drop/rename the existing column first",
                )

    def protect(self, position: int, action: str) -> None:
        """Refuse to drop/rename/change a change column, or a key column the merge needs."""
        col = self.cols[position]
        if col.name.lower().startswith(CHANGE_PREFIX):
            raise self.fail(
                f"it would {action} change column {col.name}, which the CDC merge reads",
                "leave the _dtaas_ columns as they are",
            )
        if (
            self.context.key_required
            and col.source is not None
            and col.source.lower() in {k.lower() for k in self.context.primary_key}
            and col.name == self._key_name(col.source)
        ):
            raise self.fail(
                f"it would {action} primary-key column {col.name}, which mode cdc/full_load_and_cdc needs to merge "
                "changes per row",
                f"keep {col.name} as it is; to have it under another name or type too, add a copy with "
                f"add_column (expression: {render(Column(col.name))})",
            )

    def _key_name(self, source: str) -> str:
        for col in self.cols:
            if col.source == source:
                return col.name
        return source

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.cols])


def _resolve(node: Node, walk: _Walk, role: str) -> Node:
    """The tree with every column name spelled as in the schema (case-insensitive lookup)."""
    if isinstance(node, Column):
        return Column(walk.cols[walk.find(node.name, role)].name)
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(node):  # every node type is a frozen dataclass
        value: Any = getattr(node, f.name)
        if isinstance(value, tuple) and value and not isinstance(value[0], (str, int)):
            updates[f.name] = tuple(_resolve(v, walk, role) for v in value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            updates[f.name] = _resolve(value, walk, role)  # type: ignore[arg-type]
    replaced: Node = dataclasses.replace(node, **updates) if updates else node  # type: ignore[arg-type]
    return replaced


def _rebuild(schema: pa.Schema, build: Callable[[list[pa.Array]], list[pa.Array]]) -> Step:
    def step(batch: pa.RecordBatch) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(build(list(batch.columns)), schema=schema)

    return step


def _scalar(value: Any, type_: pa.DataType, walk: _Walk, what: str) -> pa.Scalar:
    if value is None:
        return pa.scalar(None, type_)
    try:
        return (
            pc.cast(pa.scalar(value), type_, safe=True)
            if not isinstance(value, str) or pa.types.is_string(type_)
            else ops.cast_column(pa.array([value]), type_, on_error="fail")[0]
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ops.BadValue):
        raise walk.fail(
            f"{what} {value!r} is not a value of type {type_}",
            "give a value of that type, or cast the column first with cast_type",
        ) from None


def substitute(text: str, variables: Mapping[str, str], walk: _Walk) -> str:
    try:
        return string.Template(text).substitute(variables)
    except KeyError as exc:
        raise walk.fail(
            f"value uses ${exc.args[0]}, which is not a variable", f"known variables: {', '.join(sorted(variables))}"
        ) from None
    except ValueError:
        raise walk.fail(f"value {text!r} has a lone $", "write $$ for a literal $") from None
