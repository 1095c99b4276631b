"""The filter_rows language: parsing (never eval), rendering, SQL semantics in Arrow."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dtaas_dagster.transforms.arrow_eval import evaluate
from dtaas_dagster.transforms.expressions import ExpressionError, parse_expression, render


@pytest.mark.parametrize(
    "text",
    [
        "a = 1 AND NOT (b > 2.5 OR c IN (1, 2, NULL))",
        "[Order Id] LIKE 'A\\%%' AND d NOT BETWEEN -1 AND 2e3",
        "ts >= TIMESTAMP '2024-01-01 10:00:00.5' OR day < DATE '2024-02-29' OR x IS NOT NULL",
        "-(a + b) * 3 % 2 / 1 <> 0 AND s = 'it''s'",
        '"quoted name" != FALSE',
    ],
)
def test_render_parses_back_to_the_same_tree(text: str) -> None:
    tree = parse_expression(text)
    assert parse_expression(render(tree)) == tree


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('x')", r"unexpected character '\.'"),
        ("__import__('os')", r"expected AND, OR or the end of the expression, found '\('"),
        ("a = 1; DROP TABLE t", r"unexpected character ';'"),
        ("a = ", r"expected a column, a literal or '\(', found the end"),
        ("a IN (b)", r"IN lists hold literals only"),
        ("date = 1", r"DATE is a keyword|expected a quoted value after DATE"),
        ("x = DATE '2024-13-01'", r"is not a valid date"),
        ("a LIKE b", r"expected a quoted pattern after LIKE"),
        ("", r"the expression is empty"),
        ("NOT " * 100 + "a", r"nests deeper than"),
    ],
)
def test_bad_expressions_say_where_and_how(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        parse_expression(text)


def test_sql_semantics_three_valued_logic_in_and_modulo() -> None:
    batch = pa.record_batch({"a": pa.array([-7, 7, None, 2]), "s": pa.array(["Ab", "ab", None, "a_"])})

    def values(text: str) -> list[object]:
        return evaluate(parse_expression(text), batch).to_pylist()

    assert values("a % 2") == [-1, 1, None, 0] and values("a / 2") == [-3, 3, None, 1]
    assert values("a IN (2, NULL)") == [None, None, None, True]
    assert values("NOT (a IN (2, NULL))") == [None, None, None, False]
    assert values("a > 0 OR a IS NULL") == [False, True, True, True]
    assert values("a > 0 AND NULL IS NULL") == [False, True, None, True]
    assert values("s LIKE 'a%'") == [False, True, None, True]
    assert values("s LIKE 'a\\_'") == [False, False, None, True]
