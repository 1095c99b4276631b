"""Table names: parsing (bracketed parts), matching against a catalog, asset-key parts, odd names end to end."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from dtaas_dagster.config import ConfigError, TaskConfig, parse_config
from dtaas_dagster.factory import build_definitions
from dtaas_dagster.sqlserver.catalog import match_tables
from dtaas_dagster.sqlserver.names import asset_name_part, format_table_name, parse_table_name
from dtaas_dagster_tests.runs import PASSWORD_ENV, source_config


@pytest.mark.parametrize(
    ("text", "schema", "table"),
    [
        ("dbo.orders", "dbo", "orders"),
        ("stg.[dot.table]", "stg", "dot.table"),
        ("[my schema].[a]]b]", "my schema", "a]b"),
        ("[x*].[?]", "x*", "?"),
    ],
)
def test_bracketed_parts_round_trip(text: str, schema: str, table: str) -> None:
    ref = parse_table_name(text)
    assert (ref.schema.text, ref.table.text, ref.is_pattern) == (schema, table, False)
    again = parse_table_name(format_table_name(schema, table))
    assert (again.schema.text, again.table.text) == (schema, table)


def test_wildcards_only_outside_brackets_and_names_compare_case_insensitively() -> None:
    assert parse_table_name("dbo.*").matches("DBO", "Orders")
    assert not parse_table_name("dbo.[*]").matches("dbo", "Orders")
    assert parse_table_name("dbo.[*]").matches("dbo", "*")
    assert parse_table_name("stg.dot*").matches("stg", "dot.table")


def test_asset_key_parts_are_distinct_for_names_that_differ_outside_ascii() -> None:
    assert asset_name_part("orders") == "orders"
    parts = {asset_name_part(n) for n in ("表格", "顧客", "order lines", "order_lines", "dot.table")}
    assert len(parts) == 5 and all(p.replace("_", "a").isalnum() and p.isascii() for p in parts)
    assert asset_name_part("表格") == asset_name_part("表格")  # stable


def _task(tables: list[Any], **kw: Any) -> TaskConfig:
    return TaskConfig(source="s", destination="d", tables=tables, **kw)


def test_a_dotted_name_matched_by_a_pattern_is_resolved_bracketed() -> None:
    selection = match_tables(_task(["stg.*"]), [("stg", "dot.table"), ("stg", "plain")])
    assert [t.name for t in selection.tables] == ["stg.[dot.table]", "stg.plain"]
    explicit = match_tables(_task(["stg.[DOT.table]"]), [("stg", "dot.table")])
    assert [t.name for t in explicit.tables] == ["stg.[dot.table]"]


def test_an_exclude_that_matches_nothing_gives_a_warning() -> None:
    selection = match_tables(
        _task(["dbo.*"], exclude_tables=["dbo.tmp_*", "dbo.ordrs"]),
        [("dbo", "orders"), ("dbo", "tmp_x")],
        task_name="t",
    )
    assert [t.name for t in selection.tables] == ["dbo.orders"]
    assert selection.warnings == [
        "task t: exclude_tables entry dbo.ordrs matched no table of the patterns in source s; "
        "check it for a typo or remove it."
    ]


@pytest.fixture()
def _password(sqlserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sqlserver.password)


@pytest.mark.usefixtures("_password")
def test_odd_names_load_end_to_end(sqlserver: Any, sqlserver_db: Any, tmp_path: Path) -> None:
    data = pa.table({"id": pa.array([1, 2], pa.int32())})
    for name in ("dot.table", "表格", "顧客"):
        sqlserver_db.seed_table("stg", name, data, primary_key=["id"])
    config = {
        "sources": {"src": source_config(sqlserver, sqlserver_db.name)},
        "destinations": {"lake": {"type": "s3", "url": f"file://{tmp_path}/lake"}},
        "tasks": {"t": {"source": "src", "destination": "lake", "tables": ["stg.*"], "retry": {"max_retries": 0}}},
    }
    defs = build_definitions(parse_config(config))
    keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    assert len(keys) == 3 and all(k.startswith("t/stg/") for k in keys)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("t_loads", ["p1"])
        result = defs.resolve_job_def("t_tables").execute_in_process(instance=instance, partition_key="p1")
    assert result.success
    written = sorted(p.parent.parent.name for p in (tmp_path / "lake").rglob("_manifest.json"))
    assert written == sorted(["dot.table", "表格", "顧客"])  # letters of any script stay as they are


def test_a_task_whose_source_is_down_does_not_take_the_others_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("DOWN_PW", "x")
    config = {
        "sources": {
            "down": {
                "host": "127.0.0.1",
                "port": closed,
                "database": "d",
                "user": "u",
                "password_env": "DOWN_PW",
                "encrypt": "no",
                "login_timeout_seconds": 2,
            },
            "fine": {"host": "db.example", "database": "d", "user": "u", "password_env": "DOWN_PW"},
        },
        "destinations": {"lake": {"type": "s3", "url": f"file://{tmp_path}"}},
        "tasks": {
            "broken": {"source": "down", "destination": "lake", "tables": ["dbo.*"]},
            "works": {"source": "fine", "destination": "lake", "tables": ["dbo.orders"]},
        },
    }
    with caplog.at_level(logging.ERROR, logger="dtaas_dagster"):
        defs = build_definitions(parse_config(config))
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {"works/dbo/orders"}
    unavailable = defs.resolve_job_def("broken_full_load")
    assert "UNAVAILABLE" in (unavailable.description or "") and "cannot reach SQL Server source 'down'" in (
        unavailable.description or ""
    )
    result = unavailable.execute_in_process(raise_on_error=False)
    assert not result.success
    assert any("task broken is unavailable" in r.getMessage() for r in caplog.records)
    # an explicit list does not need the server, and a plain config mistake still refuses the file
    config["tasks"]["broken"]["tables"] = ["dbo.orders", "dbo.orders"]
    with pytest.raises(ConfigError, match="listed twice"):
        build_definitions(parse_config(config))
