"""What a Dagster user sees on a table asset: table name, URI, owners, tags, freshness, pool."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pytest

from dtaas_dagster.config import ConfigError, parse_config
from dtaas_dagster.factory import build_definitions, pool_name


def _config(
    *, destination: dict[str, Any] | None = None, source: dict[str, Any] | None = None, **task: Any
) -> dict[str, Any]:
    return {
        "sources": {
            "sales": {
                "host": "DB-01.corp.example",
                "port": 1433,
                "database": "sales",
                "user": "etl",
                "password_env": "SALES_PW",
                **(source or {}),
            }
        },
        "destinations": {"lake": destination or {"type": "s3", "url": "s3://my-lake/raw"}},
        "variables": {"Customer": "acme"},
        "tasks": {
            "nightly": {"source": "sales", "destination": "lake", "tables": ["dbo.orders", "sales.items"], **task}
        },
    }


def _asset(config: dict[str, Any], key: list[str]) -> dg.AssetSpec:
    repository = build_definitions(parse_config(config)).get_repository_def()
    specs = {spec.key: spec for assets_def in repository.assets_defs_by_key.values() for spec in assets_def.specs}
    return specs[dg.AssetKey(key)]


def test_table_name_and_uri_of_the_default_template() -> None:
    spec = _asset(_config(), ["nightly", "dbo", "orders"])
    assert spec.metadata["dagster/table_name"] == "sales.dbo.orders"
    assert spec.metadata["dagster/uri"] == "s3://my-lake/raw/sales/dbo/orders/"
    assert spec.metadata["source_table"] == "sales.dbo.orders"


def test_uri_stops_at_the_first_per_partition_segment_and_escapes_values(tmp_path: Any) -> None:
    template = "customer=$Customer/$sourceTableShortName/$loadYear/$loadDate/x=$partitionKey"
    s3 = _asset(
        _config(destination={"type": "s3", "url": "s3://my-lake/raw/", "path_template": template}),
        ["nightly", "sales", "items"],
    )
    assert s3.metadata["dagster/uri"] == "s3://my-lake/raw/customer=acme/items/"
    local = _asset(
        _config(
            destination={
                "type": "s3",
                "url": f"file://{tmp_path}/lake",
                "path_template": "$partitionKey/$sourceTableShortName",
            }
        ),
        ["nightly", "dbo", "orders"],
    )
    assert local.metadata["dagster/uri"] == f"file://{tmp_path}/lake/"  # every segment after it varies


def test_uri_stops_at_a_query_variable_whose_value_comes_with_each_run() -> None:
    config = _config(
        destination={
            "type": "s3",
            "url": "s3://my-lake/raw",
            "path_template": "$Customer/$sourceTableShortName/$Batch/$partitionKey",
        }
    )
    config["variables"]["Batch"] = {"source": "sales", "query": "SELECT MAX(BatchId) FROM dbo.Batches"}
    spec = _asset(config, ["nightly", "dbo", "orders"])
    assert spec.metadata["dagster/uri"] == "s3://my-lake/raw/acme/orders/"


def test_a_file_destination_is_of_kind_file_and_s3_of_kind_s3(tmp_path: Any) -> None:
    local = _asset(_config(destination={"type": "s3", "url": f"file://{tmp_path}/lake"}), ["nightly", "dbo", "orders"])
    assert set(local.kinds) == {"sqlserver", "file"}
    assert local.metadata["dagster/uri"] == f"file://{tmp_path}/lake/sales/dbo/orders/"
    remote = _asset(_config(), ["nightly", "dbo", "orders"])
    assert set(remote.kinds) == {"sqlserver", "s3"}


def test_owners_tags_and_a_lag_freshness_policy_reach_every_table() -> None:
    config = _config(
        owners=["data-eng@example.com", "team:sales_data"],
        tags={"domain": "sales", "tier": "gold"},
        freshness={"max_lag_minutes": 1500, "warn_lag_minutes": 1440},
    )
    for key in (["nightly", "dbo", "orders"], ["nightly", "sales", "items"]):
        spec = _asset(config, key)
        assert list(spec.owners) == ["data-eng@example.com", "team:sales_data"]
        assert {k: v for k, v in spec.tags.items() if not k.startswith("dagster/")} == {
            "domain": "sales",
            "tier": "gold",
        }
        policy = spec.freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy)
        assert (policy.fail_window.to_timedelta(), policy.warn_window.to_timedelta()) == (
            dt.timedelta(minutes=1500),
            dt.timedelta(minutes=1440),
        )


def test_a_deadline_freshness_policy() -> None:
    spec = _asset(
        _config(freshness={"cron": "0 6 * * *", "timezone": "Europe/Berlin", "lower_bound_minutes": 360}),
        ["nightly", "dbo", "orders"],
    )
    policy = spec.freshness_policy
    assert (policy.deadline_cron, policy.timezone) == ("0 6 * * *", "Europe/Berlin")
    assert policy.lower_bound_delta == dt.timedelta(minutes=360)


def test_no_policy_owners_or_tags_unless_configured() -> None:
    spec = _asset(_config(), ["nightly", "dbo", "orders"])
    assert spec.freshness_policy is None and not spec.owners
    assert not {k for k in spec.tags if not k.startswith("dagster/")}


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"owners": ["Sales Team"]}, "tasks.nightly.owners: Invalid owner 'Sales Team'. Owner must be an email"),
        ({"tags": {"data domain": "x"}}, "tasks.nightly.tags: Found invalid tag keys: ['data domain']"),
        ({"tags": {"dtaas/task": "x"}}, "tag keys dtaas/task are reserved"),
        ({"freshness": {"max_lag_minutes": 60, "cron": "0 6 * * *"}}, "give either max_lag_minutes or cron"),
        ({"freshness": {"max_lag_minutes": 60, "warn_lag_minutes": 60}}, "warn_lag_minutes (60) must be below"),
        ({"freshness": {"cron": "0 6 * * *", "warn_lag_minutes": 5}}, "warn_lag_minutes goes with max_lag_minutes"),
    ],
)
def test_bad_owners_tags_and_freshness_are_refused_with_the_field(task: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=".*" + __import__("re").escape(message)):
        parse_config(_config(**task))


def test_pool_names_do_not_change_with_the_port_and_can_be_named() -> None:
    first = parse_config(_config(source={"port": 14333})).sources["sales"]
    second = parse_config(_config(source={"port": 50123})).sources["sales"]
    assert pool_name(first) == pool_name(second) == "sqlserver_db_01_corp_example"
    named = parse_config(_config(source={"pool": "sqlserver_erp"})).sources["sales"]
    assert pool_name(named) == "sqlserver_erp"
    asset = (
        build_definitions(parse_config(_config(source={"pool": "sqlserver_erp"})))
        .get_repository_def()
        .assets_defs_by_key[dg.AssetKey(["nightly", "dbo", "orders"])]
    )
    assert asset.op.pool == "sqlserver_erp"
    default = (
        build_definitions(parse_config(_config(source={"port": 50123})))
        .get_repository_def()
        .assets_defs_by_key[dg.AssetKey(["nightly", "dbo", "orders"])]
    )
    assert default.op.pool == "sqlserver_db_01_corp_example"
    with pytest.raises(ConfigError, match="sources.sales.pool"):
        parse_config(_config(source={"pool": "bad pool!"}))


def test_a_snowflake_table_is_named_by_its_templates_and_has_no_uri() -> None:
    snowflake = {
        "type": "snowflake",
        "account": "myorg-acct",
        "user": "LOADER",
        "password_env": "SF_PW",
        "warehouse": "LOAD_WH",
        "database": "RAW_$Customer",
        "schema": "$sourceSchemaName",
    }
    spec = _asset(_config(destination=snowflake), ["nightly", "sales", "items"])
    assert spec.metadata["dagster/table_name"] == "RAW_acme.sales.items"
    assert "dagster/uri" not in spec.metadata
    assert spec.metadata["source_table"] == "sales.sales.items"
    config = _config(destination={**snowflake, "database": "RAW_$Batch"})
    config["variables"]["Batch"] = {"source": "sales", "query": "SELECT MAX(BatchId) FROM dbo.Batches"}
    assert "dagster/table_name" not in _asset(config, ["nightly", "dbo", "orders"]).metadata  # known per run only
