"""Per-table transforms in dtaas.yaml: nine specs, a union discriminated on ``type``.

The shape is the original DTaaS one, so its task definitions carry over::

    transformations:
      - {type: add_column, config: {column_name: ETLCustomerId, value: $ETLCustomerId}}
      - {type: rename_column, config: {old_name: ID, new_name: customer_id}}
      - {type: drop_column, config: {column_name: InternalNotes}}

What can be checked without the table is checked here, when the config loads
(expression syntax, type names, function arguments). Checks against the
table's columns and types run before any data moves
(:mod:`dtaas_dagster.transforms.chain`). docs/transforms.md has one example
per transform.
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from dtaas_dagster.config.base import Model, fix
from dtaas_dagster.transforms.expressions import ExpressionError, parse_expression
from dtaas_dagster.transforms.types import TYPE_NAMES, parse_type_name

ColumnName = Annotated[str, Field(min_length=1, max_length=128)]
Scalar = bool | int | float | str | None

# apply_function: name -> the optional arguments it takes (docs/transforms.md lists them).
APPLY_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "upper": (),
    "lower": (),
    "trim": (),
    "ltrim": (),
    "rtrim": (),
    "length": (),
    "reverse": (),
    "capitalize": (),
    "title": (),
    "substring": ("start", "length"),
    "left": ("length",),
    "right": ("length",),
    "round": ("decimals",),
    "abs": (),
    "ceil": (),
    "floor": (),
    "year": (),
    "month": (),
    "day": (),
    "hour": (),
    "sha256": (),
    "md5": (),
    "mask": ("keep_last", "mask_char"),
}


def _check_type_name(value: str | None) -> str | None:
    if value is not None:
        parse_type_name(value)
    return value


def _check_expression(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_expression(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
    return value


class AddColumnConfig(Model):
    """A new column: a constant (which may use $variables) or an expression over other columns."""

    column_name: ColumnName = Field(description="Name of the new column.")
    value: Scalar = Field(
        None,
        description=(
            "Constant value; text may use $variables ($ETLCustomerId, $sourceTableName, ...). Not with expression."
        ),
    )
    expression: str | None = Field(
        None, description=("Expression over the row's columns (the filter_rows language), e.g. quantity * unit_price.")
    )
    data_type: str | None = Field(
        None,
        description=(
            "Type of the new column: " + ", ".join(TYPE_NAMES) + "; unset = the value's own type (text for text)."
        ),
        json_schema_extra=fix("use one of " + ", ".join(TYPE_NAMES)),
    )

    _type = field_validator("data_type")(classmethod(lambda cls, v: _check_type_name(v)))
    _expr = field_validator("expression")(classmethod(lambda cls, v: _check_expression(v)))

    @model_validator(mode="after")
    def _value_or_expression(self) -> AddColumnConfig:
        if self.expression is not None and self.value is not None:
            raise ValueError("give value or expression, not both; remove one")
        if isinstance(self.value, str) and not string.Template(self.value).is_valid():
            raise ValueError(
                f"value {self.value!r} has a lone $ or an unclosed ${{; write $name or ${{name}}, "
                "and $$ for a literal $"
            )
        return self


class DropColumnConfig(Model):
    """Remove a column."""

    column_name: ColumnName = Field(description="Column to drop.")


class RenameColumnConfig(Model):
    """Rename a column."""

    old_name: ColumnName = Field(description="Current column name.")
    new_name: ColumnName = Field(description="New column name.")


class CastTypeConfig(Model):
    """Change a column's type."""

    column_name: ColumnName = Field(description="Column to cast.")
    target_type: str = Field(
        description="Target type: " + ", ".join(TYPE_NAMES) + ".",
        json_schema_extra=fix("use one of " + ", ".join(TYPE_NAMES)),
    )
    on_error: Literal["fail", "null"] = Field(
        "fail",
        description=("A value that does not convert exactly: fail the load (fail) or write null (null)."),
        json_schema_extra=fix("use fail or null"),
    )

    _type = field_validator("target_type")(classmethod(lambda cls, v: _check_type_name(v)))


class FilterRowsConfig(Model):
    """Keep only the rows where a condition is true."""

    condition: str = Field(description="Condition in the filter language, e.g. status = 'shipped' AND amount > 0.")

    _expr = field_validator("condition")(classmethod(lambda cls, v: _check_expression(v)))


class ReplaceValueConfig(Model):
    """Replace values in a column (whole values, substrings or regex matches)."""

    column_name: ColumnName = Field(description="Column whose values are replaced.")
    old_value: Scalar = Field(description="Value to replace; null replaces nulls.")
    new_value: Scalar = Field(description="Replacement; null writes null.")
    match: Literal["exact", "substring", "regex"] = Field(
        "exact",
        description=("exact: whole values equal to old_value; substring / regex (text columns): every occurrence."),
        json_schema_extra=fix("use exact, substring or regex"),
    )

    @model_validator(mode="after")
    def _text_for_substring(self) -> ReplaceValueConfig:
        if self.match != "exact" and not (isinstance(self.old_value, str) and isinstance(self.new_value, str)):
            raise ValueError(f"match: {self.match} needs text old_value and new_value; quote them, or use match: exact")
        if self.match == "regex":
            import re

            try:
                re.compile(str(self.old_value))
            except re.error as exc:
                raise ValueError(f"old_value is not a valid regular expression ({exc}); fix the pattern") from None
        return self


class ConcatColumnsConfig(Model):
    """A new text column joining several columns with a separator."""

    columns: list[ColumnName] = Field(
        min_length=2,
        description="Columns to join, in order (non-text ones as text).",
        json_schema_extra=fix("list at least two columns"),
    )
    new_column: ColumnName = Field(description="Name of the new column.")
    separator: str = Field("", description="Text between the values.")
    null_handling: Literal["skip", "null", "empty"] = Field(
        "skip",
        description=("A null value: skip it (skip), make the result null (null) or use empty text (empty)."),
        json_schema_extra=fix("use skip, null or empty"),
    )


class SplitColumnConfig(Model):
    """New text columns from splitting a text column on a separator."""

    column_name: ColumnName = Field(description="Text column to split.")
    separator: str = Field(min_length=1, description="Separator text (not a pattern).")
    new_columns: list[ColumnName] = Field(
        min_length=1,
        description=("Names of the parts, in order; the last one takes the rest; missing parts are null."),
        json_schema_extra=fix("list the names of the parts"),
    )
    keep_original: bool = Field(True, description="Keep the split column (true) or drop it (false).")


class ApplyFunctionConfig(Model):
    """A function applied to a column's values (in place, or into a new column)."""

    column_name: ColumnName = Field(description="Column the function reads.")
    function: str = Field(
        description="Function name: " + ", ".join(APPLY_FUNCTIONS) + ".",
        json_schema_extra=fix("use one of " + ", ".join(APPLY_FUNCTIONS)),
    )
    new_column: ColumnName | None = Field(None, description="Write the result here; unset = replace the column.")
    decimals: int | None = Field(None, ge=-18, le=18, description="round: digits after the point (default 0).")
    start: int | None = Field(None, ge=1, description="substring: first character, from 1.")
    length: int | None = Field(None, ge=0, description="substring, left, right: number of characters.")
    keep_last: int | None = Field(None, ge=0, description="mask: characters left visible at the end (default 4).")
    mask_char: str | None = Field(None, min_length=1, max_length=1, description="mask: the masking character (*).")

    @model_validator(mode="after")
    def _known_function_and_arguments(self) -> ApplyFunctionConfig:
        from dtaas_dagster.config.base import did_you_mean

        if self.function not in APPLY_FUNCTIONS:
            raise ValueError(
                f"unknown function {self.function!r}{did_you_mean(self.function, APPLY_FUNCTIONS)}; "
                f"functions: {', '.join(APPLY_FUNCTIONS)}"
            )
        allowed = APPLY_FUNCTIONS[self.function]
        given = [
            name
            for name in ("decimals", "start", "length", "keep_last", "mask_char")
            if getattr(self, name) is not None
        ]
        extra = [name for name in given if name not in allowed]
        if extra:
            takes = ", ".join(allowed) if allowed else "no arguments"
            raise ValueError(
                f"{self.function} does not take {', '.join(extra)} ({self.function} takes {takes}); remove it"
            )
        if self.function in ("left", "right") and self.length is None:
            raise ValueError(f"{self.function} needs length; add length: N")
        return self


class AddColumn(Model):
    """``add_column``: a constant, a variable or an expression."""

    type: Literal["add_column"] = Field(description="Transform kind.")
    config: AddColumnConfig = Field(description="Its settings.")


class DropColumn(Model):
    """``drop_column``."""

    type: Literal["drop_column"] = Field(description="Transform kind.")
    config: DropColumnConfig = Field(description="Its settings.")


class RenameColumn(Model):
    """``rename_column``."""

    type: Literal["rename_column"] = Field(description="Transform kind.")
    config: RenameColumnConfig = Field(description="Its settings.")


class CastType(Model):
    """``cast_type``."""

    type: Literal["cast_type"] = Field(description="Transform kind.")
    config: CastTypeConfig = Field(description="Its settings.")


class FilterRows(Model):
    """``filter_rows``."""

    type: Literal["filter_rows"] = Field(description="Transform kind.")
    config: FilterRowsConfig = Field(description="Its settings.")


class ReplaceValue(Model):
    """``replace_value``."""

    type: Literal["replace_value"] = Field(description="Transform kind.")
    config: ReplaceValueConfig = Field(description="Its settings.")


class ConcatColumns(Model):
    """``concat_columns``."""

    type: Literal["concat_columns"] = Field(description="Transform kind.")
    config: ConcatColumnsConfig = Field(description="Its settings.")


class SplitColumn(Model):
    """``split_column``."""

    type: Literal["split_column"] = Field(description="Transform kind.")
    config: SplitColumnConfig = Field(description="Its settings.")


class ApplyFunction(Model):
    """``apply_function``."""

    type: Literal["apply_function"] = Field(description="Transform kind.")
    config: ApplyFunctionConfig = Field(description="Its settings.")


SPECS: dict[str, type[Model]] = {
    "add_column": AddColumn,
    "drop_column": DropColumn,
    "rename_column": RenameColumn,
    "cast_type": CastType,
    "filter_rows": FilterRows,
    "replace_value": ReplaceValue,
    "concat_columns": ConcatColumns,
    "split_column": SplitColumn,
    "apply_function": ApplyFunction,
}


def _transform_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in SPECS else None


TransformSpec = Annotated[
    (
        Annotated[AddColumn, Tag("add_column")]
        | Annotated[DropColumn, Tag("drop_column")]
        | Annotated[RenameColumn, Tag("rename_column")]
        | Annotated[CastType, Tag("cast_type")]
        | Annotated[FilterRows, Tag("filter_rows")]
        | Annotated[ReplaceValue, Tag("replace_value")]
        | Annotated[ConcatColumns, Tag("concat_columns")]
        | Annotated[SplitColumn, Tag("split_column")]
        | Annotated[ApplyFunction, Tag("apply_function")]
    ),
    Discriminator(
        _transform_kind,
        custom_error_type="unknown_transform",
        custom_error_message="unknown transform type; use one of " + ", ".join(SPECS),
    ),
]
