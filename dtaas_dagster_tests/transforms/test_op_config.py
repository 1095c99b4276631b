"""The table step's op config: the YAML's transforms as default, one entry per table, parsed before loading."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

from dtaas_dagster.config import parse_config
from dtaas_dagster.factory import build_definitions
from dtaas_dagster.table_transforms import step_transforms

ORDERS = [
    {"type": "rename_column", "config": {"old_name": "ID", "new_name": "order_id"}},
    {"type": "replace_value", "config": {"column_name": "status", "old_value": "N/A", "new_value": None}},
]


def _config(tables_per_step: int | None = None) -> Any:
    return parse_config(
        {
            "sources": {"s": {"host": "db", "database": "sales", "user": "u", "password_env": "PW"}},
            "destinations": {"d": {"type": "s3", "url": "file:///tmp/lake"}},
            "variables": {"Cust": {"source": "s", "query": "SELECT 1 WHERE 'x' = '$sourceTableName'"}},
            "tasks": {
                "t": {
                    "source": "s",
                    "destination": "d",
                    "tables_per_step": tables_per_step,
                    "tables": [{"name": "dbo.orders", "transformations": ORDERS}, "dbo.lines"],
                }
            },
        }
    )


def _table_steps(defs: dg.Definitions) -> list[Any]:
    return [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]  # type: ignore[union-attr]


def test_the_launchpad_default_is_the_yaml_per_table() -> None:
    defs = build_definitions(_config(tables_per_step=2))
    (step,) = _table_steps(defs)
    field = step.op.config_schema.config_type.fields["tables"]
    assert field.default_value == {"dbo.orders": {"transformations": ORDERS}, "dbo.lines": {"transformations": []}}
    # the step needs the variables resource and the source its query variable runs on
    assert {"dtaas_variables", "sqlserver_s"} <= step.required_resource_keys


def test_step_transforms_parse_all_tables_before_loading() -> None:
    from dtaas_dagster.factory import build_table_spec

    config = _config()
    task = config.tasks["t"]
    table_specs = [build_table_spec(task_name="t", task=task, table=table) for table in task.explicit_tables()]
    parsed = step_transforms(
        {"tables": {"dbo.lines": {"transformations": [{"type": "drop_column", "config": {"column_name": "note"}}]}}},
        table_specs,
    )
    assert [s.type for s in parsed["dbo.orders"]] == ["rename_column", "replace_value"]  # YAML kept
    assert [s.config.column_name for s in parsed["dbo.lines"]] == ["note"]
    with pytest.raises(dg.Failure) as failure:
        step_transforms(
            {
                "tables": {
                    "dbo.orders": {"transformations": [{"type": "cast_type", "config": {"column_name": "x"}}]},
                    "dbo.lines": {
                        "transformations": [
                            {"type": "apply_function", "config": {"column_name": "x", "function": "uper"}}
                        ]
                    },
                }
            },
            table_specs,
        )
    text = failure.value.description or ""
    assert "nothing was loaded" in text and not failure.value.allow_retries
    assert "op config tables.dbo.orders.transformations[0].config.target_type: is required but missing" in text
    assert "op config tables.dbo.lines.transformations[0].config: unknown function 'uper'; did you mean 'upper'" in text
