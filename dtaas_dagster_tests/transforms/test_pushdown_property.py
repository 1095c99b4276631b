"""filter_rows pushed down to SQL Server keeps exactly the rows the Arrow filter keeps (property test).

Against the SQL Server fixture (the double, or a real server): one table with
numbers, bit, date, datetime2, text (Unicode, mixed case, trailing blanks) and
NULLs. For each generated condition, path A reads the whole table and filters
in Arrow only; path B reads with the pushed-down WHERE clause (bound
parameters) and runs what stays in Arrow. Both must keep the same ids.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtaas_dagster.config.transforms import FilterRows, FilterRowsConfig
from dtaas_dagster.sqlserver.snapshot import (
    SnapshotOptions,
    convert_batch,
    plan_snapshot,
    profile_columns,
    snapshot_read,
)
from dtaas_dagster.sqlserver.where import build_where, filtered_read
from dtaas_dagster.transforms.chain import TableContext
from dtaas_dagster.transforms.compile import compile_chain
from dtaas_dagster_tests.sqlserver.test_resource import resource_for

COLUMNS = {
    "id": "int",
    "i": "int",
    "b": "bigint",
    "d": "decimal(10,2)",
    "f": "float",
    "flag": "bit",
    "day": "date",
    "ts": "datetime2(6)",
    "s": "nvarchar(20)",
    "c": "char(4)",
}
WORDS = ["abc", "ABC", "Abc ", "a%b", "a_b", "[x]", "Ünï", "日本", "zz", "", "ab\\c"]


def _rows(count: int = 80) -> pa.Table:
    rng = random.Random(7)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    base = dt.datetime(2024, 1, 1)
    data: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for row in range(count):
        data["id"].append(row)
        data["i"].append(maybe(rng.randint(-5, 5)))
        data["b"].append(maybe(rng.choice([-(2**40), -1, 0, 3, 2**40])))
        data["d"].append(maybe(decimal.Decimal(rng.randint(-500, 500)) / 100))
        data["f"].append(maybe(rng.choice([-1.5, 0.0, 0.1, 2.25, 1e10])))
        data["flag"].append(maybe(rng.random() < 0.5))
        data["day"].append(maybe((base + dt.timedelta(days=rng.randint(0, 5))).date()))
        data["ts"].append(maybe(base + dt.timedelta(hours=rng.randint(0, 72), microseconds=rng.choice([0, 1, 999999]))))
        data["s"].append(maybe(rng.choice(WORDS)))
        data["c"].append(maybe(rng.choice(["ab", "AB", "xy", "x"])))
    types = {
        "id": pa.int32(),
        "i": pa.int32(),
        "b": pa.int64(),
        "d": pa.decimal128(10, 2),
        "f": pa.float64(),
        "flag": pa.bool_(),
        "day": pa.date32(),
        "ts": pa.timestamp("us"),
        "s": pa.string(),
        "c": pa.string(),
    }
    return pa.table({name: pa.array(values, types[name]) for name, values in data.items()})


@pytest.fixture(scope="module")
def table(sqlserver: Any, tmp_path_factory: Any) -> Any:
    """A module-wide database with the test table, and the resource and plan to read it."""
    name = f"pushdown_{random.Random().randrange(10**6)}"
    with sqlserver.connect() as connection:
        connection.cursor().execute(f"CREATE DATABASE [{name}]")
    try:
        sqlserver.seed_table(name, "dbo", "t", _rows(), columns=COLUMNS, primary_key=["id"])
        resource = resource_for(sqlserver, name, "msodbc18")
        options = SnapshotOptions()
        facts = resource.table_facts("dbo", "t", profile_columns=lambda d: profile_columns(d, options))
        plan = plan_snapshot(facts, options)
        yield resource, plan
    finally:
        with sqlserver.connect() as connection:
            connection.cursor().execute(f"DROP DATABASE [{name}]")


def _read(resource: Any, plan: Any, read: Any) -> pa.Table:
    batches = [convert_batch(b, plan) for b in resource.read_arrow(read)]
    return pa.Table.from_batches(batches, schema=plan.target_schema)


def _ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


def _chain(plan: Any, condition: str, *, pushdown: bool) -> Any:
    context = TableContext(table="dbo.t", source_types=plan.source_types, allow_pushdown=pushdown)
    spec = FilterRows(type="filter_rows", config=FilterRowsConfig(condition=condition))
    return compile_chain([spec], plan.target_schema, context)


def both_paths(resource: Any, plan: Any, condition: str) -> tuple[list[int], list[int], Any]:
    everything = _read(resource, plan, snapshot_read(plan))
    arrow_only = _chain(plan, condition, pushdown=False)
    expected = _ids(
        pa.Table.from_batches([arrow_only.apply(b) for b in everything.to_batches()], schema=arrow_only.output_schema)
    )
    pushed = _chain(plan, condition, pushdown=True)
    read = snapshot_read(plan)
    if pushed.pushdown is not None:
        read = filtered_read(
            read,
            select_sql=plan.select_sql,
            snapshot_isolation=plan.snapshot_isolation,
            predicate=pushed.pushdown.predicate,
        )
    fetched = _read(resource, plan, read)
    got = _ids(pa.Table.from_batches([pushed.apply(b) for b in fetched.to_batches()], schema=pushed.output_schema))
    return expected, got, pushed


# ------------------------------------------------------------------- strategies
def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


numbers = st.one_of(st.integers(-6, 6).map(str), st.sampled_from(["0.1", "2.25", "-1.50", "1e10", "1.5e0", "3.005"]))
predicates = st.one_of(
    st.builds(
        lambda c, op, n: f"{c} {op} {n}",
        st.sampled_from(["i", "b", "d", "f"]),
        st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="]),
        numbers,
    ),
    st.builds(
        lambda c, vals, neg: f"{c} {'NOT ' if neg else ''}IN ({', '.join(vals)})",
        st.sampled_from(["i", "d"]),
        st.lists(st.one_of(numbers, st.just("NULL")), min_size=1, max_size=4),
        st.booleans(),
    ),
    st.builds(lambda c, neg: f"{c} IS {'NOT ' if neg else ''}NULL", st.sampled_from(list(COLUMNS)), st.booleans()),
    st.builds(lambda op, v: f"flag {op} {v}", st.sampled_from(["=", "!="]), st.sampled_from(["TRUE", "FALSE"])),
    st.builds(lambda op, d: f"day {op} DATE '2024-01-0{d}'", st.sampled_from(["=", "<", ">="]), st.integers(1, 6)),
    st.builds(
        lambda op, h, us: f"ts {op} TIMESTAMP '2024-01-02 {h:02d}:00:00{us}'",
        st.sampled_from(["=", "<", ">", "<=", ">="]),
        st.integers(0, 23),
        st.sampled_from(["", ".000001", ".999999"]),
    ),
    st.builds(lambda op, w: f"s {op} {_quote(w)}", st.sampled_from(["=", "!=", "<", ">="]), st.sampled_from(WORDS)),
    st.builds(
        lambda w, neg: f"s {'NOT ' if neg else ''}IN ({w})",
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(lambda ws: ", ".join(map(_quote, ws))),
        st.booleans(),
    ),
    st.builds(
        lambda p, neg: f"s {'NOT ' if neg else ''}LIKE {_quote(p)}",
        st.text(alphabet="abAB%_[]\\Ü日 ", min_size=0, max_size=5),
        st.booleans(),
    ),
    st.builds(lambda w: f"c = {_quote(w)}", st.sampled_from(["ab", "AB", "ab  ", "x"])),
    st.builds(
        lambda lo, hi, neg: f"i {'NOT ' if neg else ''}BETWEEN {lo} AND {hi}",
        st.integers(-6, 3),
        st.integers(-3, 6),
        st.booleans(),
    ),
    st.builds(lambda n: f"i * 2 + 1 > {n}", st.integers(-10, 10)),
    st.builds(lambda: "i = b"),
    st.builds(lambda: "d > f"),
)
conditions = st.recursive(
    predicates,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) AND ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) OR ({b})", inner, inner),
        st.builds(lambda a: f"NOT ({a})", inner),
    ),
    max_leaves=4,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(condition=conditions)
def test_pushdown_and_arrow_keep_the_same_rows(table: Any, condition: str) -> None:
    resource, plan = table
    expected, got, _ = both_paths(resource, plan, condition)
    assert got == expected, condition


@pytest.mark.parametrize(
    ("condition", "where", "exact"),
    [
        ("i > 2 AND d <= 1.5", "([i] > CAST(? AS bigint) AND [d] <= CAST(? AS decimal(38,1)))", True),
        ("s = 'abc' OR flag = TRUE", "([s] = ? OR [flag] = CAST(? AS bit))", False),
        (
            "s LIKE 'a%' AND ts >= TIMESTAMP '2024-01-02 00:00:00'",
            "([s] LIKE ? AND [ts] >= CAST(? AS datetime2(7)))",
            False,
        ),
        (
            "day IN (DATE '2024-01-02', NULL) AND s IS NOT NULL",
            "([day] IN (CAST(? AS date), NULL) AND [s] IS NOT NULL)",
            True,
        ),
    ],
)
def test_pushable_conditions_read_fewer_rows(table: Any, condition: str, where: str, exact: bool) -> None:
    resource, plan = table
    expected, got, chain = both_paths(resource, plan, condition)
    assert got == expected
    assert build_where(chain.pushdown.predicate)[0] == where
    assert (not chain.filters) == exact  # an exact pushdown leaves no Arrow filter
    read = filtered_read(
        snapshot_read(plan),
        select_sql=plan.select_sql,
        snapshot_isolation=plan.snapshot_isolation,
        predicate=chain.pushdown.predicate,
    )
    assert _read(resource, plan, read).num_rows < _read(resource, plan, snapshot_read(plan)).num_rows


@pytest.mark.parametrize(
    "condition",
    [
        "c = 'ab  '",
        "i * 2 > 3",
        "s > 'abc'",
        "NOT (s = 'abc')",
        "s LIKE 'a_c'",
        "s = '日本'",
        "s LIKE 'Ü%'",
        "s LIKE '[x]%'",
        "f + 1 > d",
    ],
)
def test_conditions_sql_server_would_answer_differently_stay_in_arrow(table: Any, condition: str) -> None:
    resource, plan = table
    expected, got, chain = both_paths(resource, plan, condition)
    assert got == expected and chain.pushdown is None and chain.filters


def test_a_hostile_literal_is_a_parameter_not_sql(table: Any) -> None:
    resource, plan = table
    condition = "s = 'x''; DROP TABLE dbo.t--' OR s IN ('a'' OR ''1''=''1')"
    expected, got, chain = both_paths(resource, plan, condition)
    where, parameters = build_where(chain.pushdown.predicate)
    assert "DROP" not in where and parameters == ("x'; DROP TABLE dbo.t--", "a' OR '1'='1")
    assert got == expected == []
    assert _read(resource, plan, snapshot_read(plan)).num_rows == 80  # the table is still there, whole
