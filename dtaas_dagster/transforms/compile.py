"""Compile a table's transform specs into a :class:`~.chain.Chain` (validation happens here).

One builder per transform type; each checks its spec against the columns at
its position and returns the Arrow step plus the columns after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dtaas_dagster.config.transforms import (
    AddColumn,
    ApplyFunction,
    CastType,
    ConcatColumns,
    DropColumn,
    FilterRows,
    RenameColumn,
    ReplaceValue,
    SplitColumn,
)
from dtaas_dagster.transforms import columns as ops
from dtaas_dagster.transforms.arrow_eval import ExpressionTypeError, check_expression, evaluate, row_mask
from dtaas_dagster.transforms.chain import (
    Chain,
    Col,
    Step,
    TableContext,
    TransformError,
    _rebuild,
    _resolve,
    _scalar,
    _Walk,
    substitute,
)
from dtaas_dagster.transforms.expressions import Node, columns_of, parse_expression, render
from dtaas_dagster.transforms.pushdown import combine_pushdown, plan_pushdown
from dtaas_dagster.transforms.types import parse_type_name


def _add_column(spec: AddColumn, walk: _Walk) -> Step:
    config = spec.config
    walk.check_new_name(config.column_name, "column_name")
    target = parse_type_name(config.data_type) if config.data_type else None
    if config.expression is not None:
        node = _checked_expression(config.expression, walk, condition=False)
        result_type = check_expression(node, walk.schema(), want_condition=False)
        if target is not None and not ops.can_cast(result_type, target):
            raise walk.fail(
                f"the expression is {result_type}, which cannot be cast to {config.data_type}",
                "change data_type or the expression",
            )
        out_type = target or (pa.string() if pa.types.is_null(result_type) else result_type)

        def compute(arrays: list[pa.Array], batch_schema: pa.Schema) -> pa.Array:
            value = evaluate(node, pa.RecordBatch.from_arrays(arrays, schema=batch_schema))
            return value if value.type.equals(out_type) else ops.cast_column(value, out_type, on_error="fail")
    else:
        value = config.value
        if isinstance(value, str):
            value = substitute(value, walk.context.variables, walk)
        out_type = target or (pa.string() if value is None or isinstance(value, str) else pa.scalar(value).type)
        constant = _scalar(value, out_type, walk, "value")

        def compute(arrays: list[pa.Array], batch_schema: pa.Schema) -> pa.Array:
            return pa.repeat(constant, len(arrays[0]))

    before = walk.schema()
    walk.cols.append(Col(config.column_name, out_type, None))
    after = walk.schema()
    return _rebuild(after, lambda arrays: [*arrays, compute(arrays, before)])


def _drop_column(spec: DropColumn, walk: _Walk) -> Step:
    position = walk.find(spec.config.column_name)
    walk.protect(position, "drop")
    if len(walk.cols) == 1:
        raise walk.fail("it would drop the last column", "keep at least one column")
    del walk.cols[position]
    after = walk.schema()
    return _rebuild(after, lambda arrays: arrays[:position] + arrays[position + 1 :])


def _rename_column(spec: RenameColumn, walk: _Walk) -> Step:
    position = walk.find(spec.config.old_name, "old_name")
    walk.protect(position, "rename")
    walk.check_new_name(spec.config.new_name, "new_name", replacing=position)
    col = walk.cols[position]
    walk.cols[position] = Col(spec.config.new_name, col.type, col.source, col.nullable)
    after = walk.schema()
    return _rebuild(after, lambda arrays: arrays)


def _cast_type(spec: CastType, walk: _Walk) -> Step:
    config = spec.config
    position = walk.find(config.column_name)
    walk.protect(position, "cast")
    col = walk.cols[position]
    target = parse_type_name(config.target_type)
    if not ops.can_cast(col.type, target):
        raise walk.fail(
            f"column {col.name} is {col.type}, which cannot be cast to {config.target_type}",
            "cast to string first, or choose another target_type",
        )
    walk.cols[position] = Col(col.name, target, None)
    after = walk.schema()

    def build(arrays: list[pa.Array]) -> list[pa.Array]:
        try:
            arrays[position] = ops.cast_column(arrays[position], target, on_error=config.on_error)
        except ops.BadValue as exc:
            raise walk_error(walk_copy, f"column {col.name}: {exc}") from None
        return arrays

    walk_copy = (walk.context.table, walk.index, walk.kind)
    return _rebuild(after, build)


def walk_error(where: tuple[str, int, str], problem: str) -> TransformError:
    table, index, kind = where
    return TransformError(f"table {table}: transformation #{index + 1} ({kind}): {problem}")


def _filter_rows(spec: FilterRows, walk: _Walk, pushed: list[tuple[object, str]]) -> tuple[Step | None, Node]:
    node = _checked_expression(spec.config.condition, walk, condition=True)
    sources = {c.name: c for c in walk.cols}
    if walk.context.allow_pushdown and all(sources[name].source is not None for name in columns_of(node)):
        predicate, exact = plan_pushdown(
            node, {name: sources[name] for name in columns_of(node)}, walk.context.source_types
        )
        if predicate is not None:
            pushed.append((predicate, render(node)))
            if exact:
                return None, node
    return (lambda batch: keep_rows(batch, row_mask(node, batch))), node


def keep_rows(batch: pa.RecordBatch, mask: pa.Array) -> pa.RecordBatch:
    """The rows where ``mask`` is true; the batch itself when that is every row (no copy)."""
    if mask.true_count == len(mask):
        return batch
    return batch.filter(mask)


def _replace_value(spec: ReplaceValue, walk: _Walk) -> Step:
    config = spec.config
    position = walk.find(config.column_name)
    walk.protect(position, "change")
    col = walk.cols[position]
    if config.match != "exact" and not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise walk.fail(
            f"match: {config.match} needs a text column, {col.name} is {col.type}",
            "use match: exact, or cast the column to string first",
        )
    old = _scalar(config.old_value, col.type, walk, "old_value")
    new = _scalar(config.new_value, col.type, walk, "new_value")
    walk.cols[position] = Col(col.name, col.type, None)
    after = walk.schema()

    def build(arrays: list[pa.Array]) -> list[pa.Array]:
        arrays[position] = ops.replace_values(arrays[position], old, new, match=config.match)
        return arrays

    return _rebuild(after, build)


def _concat_columns(spec: ConcatColumns, walk: _Walk) -> Step:
    config = spec.config
    positions = [walk.find(name, "columns entry") for name in config.columns]
    for position in positions:
        if not ops.can_cast(walk.cols[position].type, pa.string()):
            col = walk.cols[position]
            raise walk.fail(f"column {col.name} is {col.type}, which has no text form", "leave it out")
    walk.check_new_name(config.new_column, "new_column")
    walk.cols.append(Col(config.new_column, pa.string(), None))
    after = walk.schema()
    return _rebuild(
        after,
        lambda arrays: [
            *arrays,
            ops.concat([arrays[p] for p in positions], separator=config.separator, null_handling=config.null_handling),
        ],
    )


def _split_column(spec: SplitColumn, walk: _Walk) -> Step:
    config = spec.config
    position = walk.find(config.column_name)
    col = walk.cols[position]
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise walk.fail(f"column {col.name} is {col.type}, not text", "cast it to string first with cast_type")
    if not config.keep_original:
        walk.protect(position, "drop")
    seen: set[str] = set()
    for name in config.new_columns:
        walk.check_new_name(name, "new_columns entry", replacing=None if config.keep_original else position)
        if name.lower() in seen:
            raise walk.fail(f"new_columns names {name!r} twice", "give each part its own name")
        seen.add(name.lower())
    parts = len(config.new_columns)
    walk.cols += [Col(name, pa.string(), None) for name in config.new_columns]
    if not config.keep_original:
        del walk.cols[position]
    after = walk.schema()

    def build(arrays: list[pa.Array]) -> list[pa.Array]:
        pieces = ops.split(arrays[position], separator=config.separator, parts=parts)
        kept = arrays if config.keep_original else arrays[:position] + arrays[position + 1 :]
        return [*kept, *pieces]

    return _rebuild(after, build)


def _apply_function(spec: ApplyFunction, walk: _Walk) -> Step:
    config = spec.config
    position = walk.find(config.column_name)
    col = walk.cols[position]
    if not ops.accepts(config.function, col.type):
        wants = ops.FUNCTION_INPUT[config.function]
        raise walk.fail(
            f"{config.function} reads {wants} values, column {col.name} is {col.type}",
            "cast the column first with cast_type, or pick another function",
        )
    arguments = {
        name: getattr(config, name)
        for name in ("decimals", "start", "length", "keep_last", "mask_char")
        if getattr(config, name) is not None
    }
    function = ops.FUNCTIONS[config.function]
    out_type = function(pa.array([], col.type), **arguments).type
    if config.new_column is None:
        walk.protect(position, "change")
        walk.cols[position] = Col(col.name, out_type, None)
    else:
        walk.check_new_name(config.new_column, "new_column")
        walk.cols.append(Col(config.new_column, out_type, None))
    after = walk.schema()

    def build(arrays: list[pa.Array]) -> list[pa.Array]:
        result = function(arrays[position], **arguments)
        if config.new_column is None:
            arrays[position] = result
            return arrays
        return [*arrays, result]

    return _rebuild(after, build)


def _checked_expression(text: str, walk: _Walk, *, condition: bool) -> Node:
    node = _resolve(parse_expression(text), walk, "the expression names")
    try:
        check_expression(node, walk.schema(), want_condition=condition)
    except ExpressionTypeError as exc:
        raise walk.fail(str(exc), "fix the expression (docs/transforms.md, filter_rows)") from None
    return node


_BUILDERS = {
    AddColumn: _add_column,
    DropColumn: _drop_column,
    RenameColumn: _rename_column,
    CastType: _cast_type,
    ReplaceValue: _replace_value,
    ConcatColumns: _concat_columns,
    SplitColumn: _split_column,
    ApplyFunction: _apply_function,
}


def _key_after(key: Sequence[str], schema: pa.Schema, walk: _Walk) -> tuple[str, ...]:
    """The primary key under its output names; () when a transform dropped or changed a key column.

    A key column the read does not select (columns_include/exclude) is not the
    chain's business and keeps its name.
    """
    current = {c.source.lower(): c.name for c in walk.cols if c.source is not None}
    read = {name.lower() for name in schema.names}
    names = []
    for column in key:
        if column.lower() in current:
            names.append(current[column.lower()])
        elif column.lower() not in read:
            names.append(column)
        else:
            return ()
    return tuple(names)


def compile_chain(specs: Sequence[Any], schema: pa.Schema, context: TableContext) -> Chain:
    """Validate ``specs`` against ``schema`` (first problem raises :class:`TransformError`) and compile them."""
    walk = _Walk(schema, context)
    steps: list[tuple[str, Step]] = []
    filters: list[tuple[int, Node]] = []
    pushed: list[tuple[object, str]] = []
    for index, spec in enumerate(specs):
        walk.index, walk.kind = index, spec.type
        if isinstance(spec, FilterRows):
            step, node = _filter_rows(spec, walk, pushed)
            if step is not None:
                filters.append((len(steps), node))
                steps.append((spec.type, step))
            continue
        build: Any = _BUILDERS[type(spec)]
        steps.append((spec.type, build(spec, walk)))
    primary_key = _key_after(context.primary_key, schema, walk)
    return Chain(
        input_schema=schema,
        output_schema=walk.schema(),
        steps=steps,
        filters=filters,
        primary_key=primary_key,
        renamed_sources={c.name: c.source for c in walk.cols if c.source is not None},
        pushdown=combine_pushdown(pushed) if pushed else None,
    )
