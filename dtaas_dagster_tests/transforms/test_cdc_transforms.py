"""Transforms on a CDC task end to end (in-process sensor ticks and runs): the replay equals the transformed source.

The snapshot and every change window go through the same chain; filter_rows
turns an update that stops matching into a delete, so the destination holds
exactly the source rows that match, transformed.
"""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster_tests.cdc.harness import CdcHarness, cdc_config, source_rows
from dtaas_dagster_tests.cdc.test_cdc_flow import _exec, _password, _setup, instance  # noqa: F401 - fixtures

TRANSFORMS = [
    {"type": "apply_function", "config": {"column_name": "v", "function": "upper"}},
    {"type": "add_column", "config": {"column_name": "amount_x2", "expression": "amount * 2"}},
    {"type": "filter_rows", "config": {"condition": "amount >= 2"}},
    {"type": "drop_column", "config": {"column_name": "changed"}},
]


def _expected(db: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "v": r["v"].upper() if r["v"] is not None else None,
            "amount": r["amount"],
            "amount_x2": r["amount"] * 2,
        }
        for r in source_rows(db, "dbo", "orders", "id")
        if r["amount"] is not None and r["amount"] >= 2
    ]


def test_cdc_windows_are_transformed_like_the_snapshot(
    sqlserver: Any,
    sqlserver_db: Any,
    tmp_path: Path,
    instance: dg.DagsterInstance,  # noqa: F811
) -> None:
    capture = _setup(sqlserver_db)
    _exec(
        sqlserver_db,
        "INSERT INTO dbo.orders VALUES (1, N'a', 1.50, NULL), (2, N'b', 2.00, NULL), "
        "(3, N'ç', 5.00, NULL), (4, N'd', 9.00, NULL)",
    )
    capture.step()
    config = cdc_config(
        sqlserver, sqlserver_db.name, tmp_path / "lake", [{"name": "dbo.orders", "transformations": TRANSFORMS}]
    )
    harness = CdcHarness(config, sqlserver, instance, tmp_path / "lake")
    [snapshot] = harness.cycle()
    assert snapshot.success
    _exec(
        sqlserver_db,
        "UPDATE dbo.orders SET amount = 1.00 WHERE id = 3",  # stops matching: must leave the destination
        "UPDATE dbo.orders SET amount = 7.00 WHERE id = 1",  # starts matching: must arrive
        "UPDATE dbo.orders SET v = N'bb' WHERE id = 2",  # still matches: updated, transformed
        "DELETE FROM dbo.orders WHERE id = 4",
        "INSERT INTO dbo.orders VALUES (5, N'e', 0.50, NULL), (6, N'f', 6.00, NULL)",
    )
    capture.step()
    [window] = harness.cycle()
    assert window.success
    replayed = harness.replayed("dbo", "orders").sort_by("id").to_pylist()
    assert replayed == _expected(sqlserver_db)
    assert [r["id"] for r in replayed] == [1, 2, 6] and replayed[1]["v"] == "BB"
    assert replayed[0]["amount_x2"] == decimal.Decimal("14.00")
    materialization = [e for e in window.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION][0]
    metadata = materialization.event_specific_data.materialization.metadata  # type: ignore[union-attr]
    assert metadata["dtaas/transforms"].value == TRANSFORMS
    assert "dtaas/filter_pushdown" not in metadata  # change reads are never filtered in SQL Server


@pytest.mark.parametrize(
    "transform",
    [
        {"type": "rename_column", "config": {"old_name": "id", "new_name": "order_id"}},
        {"type": "drop_column", "config": {"column_name": "id"}},
    ],
)
def test_cdc_refuses_a_transform_that_breaks_the_merge_key(
    sqlserver: Any,
    sqlserver_db: Any,
    tmp_path: Path,
    instance: dg.DagsterInstance,  # noqa: F811
    transform: dict[str, Any],
) -> None:
    capture = _setup(sqlserver_db)
    _exec(sqlserver_db, "INSERT INTO dbo.orders VALUES (1, N'a', 1.50, NULL)")
    capture.step()
    config = cdc_config(
        sqlserver, sqlserver_db.name, tmp_path / "lake", [{"name": "dbo.orders", "transformations": [transform]}]
    )
    [snapshot] = CdcHarness(config, sqlserver, instance, tmp_path / "lake").cycle()
    assert not snapshot.success
    failure = [e for e in snapshot.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE][0]
    assert "primary-key column id, which mode cdc/full_load_and_cdc needs" in failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert not list((tmp_path / "lake").rglob("_manifest.json"))
