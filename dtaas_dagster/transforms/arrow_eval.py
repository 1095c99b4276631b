"""Evaluate a filter / add_column expression on an Arrow batch, vectorised with ``pyarrow.compute``.

Semantics are SQL's, so pushdown and Arrow agree (see :mod:`.pushdown`):

- three-valued logic: a comparison with NULL is NULL, ``AND``/``OR`` are
  Kleene (``NULL AND FALSE`` is FALSE), ``NOT NULL`` is NULL, and a row is
  kept only where the condition is TRUE;
- ``IN`` is the ``OR`` of equalities (``x IN (1, NULL)`` is NULL when x is 2);
- ``LIKE`` is case-sensitive, ``%`` any text, ``_`` one character, ``\\``
  escapes the next one;
- arithmetic is checked (an overflow or a division by zero fails the load,
  rather than writing a wrong value); integer division truncates toward zero;
- a ``DATE``/``TIMESTAMP`` literal compared with a timestamp column takes the
  column's unit and time zone (a literal is read as UTC for a zoned column).

:func:`check_expression` type-checks a tree against a schema by evaluating it
on an empty batch of that schema, node by node, so a mistake is reported
against the smallest sub-expression that causes it, before any data moves.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dtaas_dagster.transforms.expressions import (
    And,
    Arithmetic,
    Between,
    Column,
    Compare,
    InList,
    IsNull,
    Like,
    Literal,
    Negate,
    Node,
    Not,
    Or,
    render,
)

# An Arrow array, chunked array or scalar (pyarrow has no type stubs, so mypy sees Any).
Value = Any

_COMPARE = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


def _sql_modulo(left: Value, right: Value) -> Value:
    """``%`` as in SQL Server: the remainder takes the sign of the left side (Arrow's takes the right's)."""
    remainder = pc.modulo_checked(left, right)
    differs = pc.and_(pc.not_equal(remainder, 0), pc.not_equal(pc.less(left, 0), pc.less(right, 0)))
    return pc.if_else(differs, pc.subtract_checked(remainder, right), remainder)


_ARITHMETIC = {
    "+": pc.add_checked,
    "-": pc.subtract_checked,
    "*": pc.multiply_checked,
    "/": pc.divide_checked,
    "%": _sql_modulo,
}


class ExpressionTypeError(ValueError):
    """The expression does not fit the table's column types; the message names the sub-expression."""


def literal_scalar(node: Literal) -> pa.Scalar:
    """The Arrow scalar of a literal (decimals get the smallest precision that holds them)."""
    if node.kind == "null":
        return pa.scalar(None, pa.null())
    if node.kind == "decimal":
        value = node.value
        assert isinstance(value, decimal.Decimal)
        sign, digits, exponent = value.as_tuple()
        scale = max(0, -int(exponent))
        precision = max(len(digits), scale, 1)
        return pa.scalar(value, pa.decimal128(min(max(precision, scale + 1), 38), scale))
    types = {
        "int": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }
    return pa.scalar(node.value, types[node.kind])


def _is_temporal(value: Value) -> bool:
    return pa.types.is_timestamp(value.type) or pa.types.is_date(value.type)


def _align_temporal(left: Value, right: Value) -> tuple[Value, Value]:
    """Give a DATE/TIMESTAMP literal the type of the timestamp column it meets (unit and zone)."""
    if not (_is_temporal(left) and _is_temporal(right)) or left.type.equals(right.type):
        return left, right
    if isinstance(right, pa.Scalar) and pa.types.is_timestamp(left.type):
        return left, _literal_as(right, left.type)
    if isinstance(left, pa.Scalar) and pa.types.is_timestamp(right.type):
        return _literal_as(left, right.type), right
    return left, right


def _literal_as(scalar: pa.Scalar, target: pa.TimestampType) -> pa.Scalar:
    if not scalar.is_valid:
        return pa.scalar(None, target)
    value = scalar.as_py()
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if target.tz is not None:
        value = value.replace(tzinfo=dt.UTC)
    return pa.scalar(value, target)


def _compare(op: str, left: Value, right: Value) -> Value:
    left, right = _align_temporal(left, right)
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        other = right if pa.types.is_null(left.type) else left
        return _nulls_like(other, pa.bool_())
    return _COMPARE[op](left, right)


def _nulls_like(value: Value, type_: pa.DataType) -> Value:
    if isinstance(value, pa.Scalar):
        return pa.scalar(None, type_)
    return pa.nulls(len(value), type_)


def _in_list(node: InList, operand: Value) -> Value:
    result: Value | None = None
    for literal in node.values:
        equal = _compare("=", operand, literal_scalar(literal))
        result = equal if result is None else pc.or_kleene(result, equal)
    assert result is not None
    return pc.invert(result) if node.negated else result


class _Evaluator:
    def __init__(self, columns: Mapping[str, Value]) -> None:
        self.columns = columns

    def __call__(self, node: Node) -> Value:
        if isinstance(node, Literal):
            return literal_scalar(node)
        if isinstance(node, Column):
            return self.columns[node.name]
        if isinstance(node, Negate):
            return pc.negate_checked(self(node.operand))
        if isinstance(node, Arithmetic):
            return _ARITHMETIC[node.op](self(node.left), self(node.right))
        if isinstance(node, Compare):
            return _compare(node.op, self(node.left), self(node.right))
        if isinstance(node, InList):
            return _in_list(node, self(node.operand))
        if isinstance(node, IsNull):
            operand = self(node.operand)
            return pc.is_valid(operand) if node.negated else pc.is_null(operand)
        if isinstance(node, Like):
            matched = pc.match_like(self(node.operand), node.pattern)
            return pc.invert(matched) if node.negated else matched
        if isinstance(node, Between):
            operand = self(node.operand)
            inside = pc.and_kleene(_compare(">=", operand, self(node.low)), _compare("<=", operand, self(node.high)))
            return pc.invert(inside) if node.negated else inside
        if isinstance(node, And):
            return _fold(pc.and_kleene, [self(item) for item in node.items])
        if isinstance(node, Or):
            return _fold(pc.or_kleene, [self(item) for item in node.items])
        if isinstance(node, Not):
            return pc.invert(self(node.operand))
        raise TypeError(f"not an expression node: {node!r}")


def _fold(function: object, values: list[Value]) -> Value:
    result = values[0]
    for value in values[1:]:
        result = function(result, value)  # type: ignore[operator]
    return result


def evaluate(node: Node, batch: pa.RecordBatch) -> pa.Array:
    """The expression's value for every row of ``batch`` (a scalar result is repeated)."""
    columns = {name: batch.column(index) for index, name in enumerate(batch.schema.names)}
    value = _Evaluator(columns)(node)
    if isinstance(value, pa.Scalar):
        return pa.array([value.as_py()] * batch.num_rows, value.type if not pa.types.is_null(value.type) else None)
    return value


def row_mask(node: Node, batch: pa.RecordBatch) -> pa.Array:
    """Boolean mask where the condition is TRUE (NULL counts as not kept)."""
    return pc.fill_null(evaluate(node, batch), False)


# ----------------------------------------------------------------------- type check
class _Checker(_Evaluator):
    """Evaluates on empty arrays and reports the first sub-expression Arrow cannot compute."""

    def __call__(self, node: Node) -> Value:
        if isinstance(node, Like):
            operand = super().__call__(node.operand)
            if not (pa.types.is_string(operand.type) or pa.types.is_large_string(operand.type)):
                raise ExpressionTypeError(
                    f"{render(node)}: LIKE needs a text operand, {render(node.operand)} is {operand.type}; "
                    "compare with = or cast the column to string first (cast_type)"
                )
        if isinstance(node, Compare) and (_is_null_literal(node.left) or _is_null_literal(node.right)):
            raise ExpressionTypeError(
                f"{render(node)}: a comparison with NULL is never true; use IS NULL or IS NOT NULL"
            )
        if isinstance(node, (And, Or, Not)):
            parts = node.items if isinstance(node, (And, Or)) else (node.operand,)
            for part in parts:
                part_type = self(part).type
                if not (pa.types.is_boolean(part_type) or pa.types.is_null(part_type)):
                    raise ExpressionTypeError(
                        f"{render(part)} is {part_type}, not a condition; AND, OR and NOT combine conditions "
                        "such as a comparison (x > 0) or x IS NOT NULL"
                    )
        try:
            value = super().__call__(node)
        except ExpressionTypeError:
            raise
        except KeyError as exc:
            raise ExpressionTypeError(f"unknown column {exc.args[0]}") from None
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            raise ExpressionTypeError(f"{render(node)}: {self._explain(node)} ({_first_line(exc)})") from None
        return value

    def _explain(self, node: Node) -> str:
        parts = {
            "Compare": "cannot compare",
            "Arithmetic": "cannot compute",
            "Between": "cannot compare",
            "InList": "cannot compare",
            "Negate": "cannot negate",
        }
        types = ", ".join(
            f"{render(child)} is {super(_Checker, self).__call__(child).type}" for child in _operands(node)
        )
        return (
            f"{parts.get(type(node).__name__, 'cannot evaluate')} these types ({types}); cast one side "
            "with cast_type or change the literal"
        )


def _operands(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Arithmetic, Compare)):
        return (node.left, node.right)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, (InList, Negate)):
        return (node.operand,)
    return ()


def _is_null_literal(node: Node) -> bool:
    return isinstance(node, Literal) and node.kind == "null"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_expression(node: Node, schema: pa.Schema, *, want_condition: bool) -> pa.DataType:
    """The expression's Arrow type over ``schema``; :class:`ExpressionTypeError` on a mismatch.

    Column names in ``node`` must already be resolved to the schema's names.
    """
    empty = {field.name: pa.array([], field.type) for field in schema}
    value = _Checker(empty)(node)
    if want_condition and not (pa.types.is_boolean(value.type) or pa.types.is_null(value.type)):
        raise ExpressionTypeError(
            f"{render(node)} is {value.type}, not a condition; write a comparison such as amount > 0"
        )
    return value.type
