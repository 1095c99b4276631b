"""Unit tests of the configuration layer (no servers): dtaas.yaml -> models, and its error messages."""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dtaas_dagster import config as cfg
from dtaas_dagster.config import (
    ConfigError,
    DtaasConfig,
    S3Destination,
    TableConfig,
    TaskConfig,
    load_config,
    parse_config,
)
from dtaas_dagster.sqlserver.catalog import match_tables as _match_tables
from dtaas_dagster.variables import BUILTIN_VARIABLES


def match_tables(task: TaskConfig, catalog: list[tuple[str, str]]) -> list[TableConfig]:
    return _match_tables(task, catalog).tables


DELETE = object()


def _config_models() -> list[type[BaseModel]]:
    """Every public model of the config package (all its modules)."""
    import importlib
    import pkgutil

    found: dict[str, type[BaseModel]] = {}
    for module_info in pkgutil.iter_modules(cfg.__path__):
        module = importlib.import_module(f"{cfg.__name__}.{module_info.name}")
        for m in vars(module).values():
            if (
                isinstance(m, type)
                and issubclass(m, BaseModel)
                and m.__module__ == module.__name__
                and not m.__name__.startswith("_")
                and m.__name__ != "Model"
            ):
                found[m.__name__] = m
    return list(found.values())


BASE: dict[str, Any] = {
    "sources": {"sales": {"host": "db", "database": "sales", "user": "etl", "password_env": "SALES_PW"}},
    "destinations": {"lake": {"type": "s3", "url": "s3://my-lake/raw"}},
    "tasks": {"sales_to_lake": {"source": "sales", "destination": "lake", "tables": ["dbo.orders"]}},
}


def _config(edits: dict[str, Any]) -> dict[str, Any]:
    """BASE with ``{"a.b.c": value}`` edits applied (DELETE removes the key)."""
    data = copy.deepcopy(BASE)
    for path, value in edits.items():
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return data


def _error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="t.yaml")
    return str(info.value)


# --------------------------------------------------------------- happy paths


def test_example_config_loads_with_demo_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DTAAS_CONFIG", raising=False)
    monkeypatch.delenv("DTAAS_SQLSERVER_PORT", raising=False)
    monkeypatch.delenv("DTAAS_LAKE_URL", raising=False)
    config = load_config()
    source = config.sources["sales"]
    assert (source.host, source.port, source.database, source.user) == ("127.0.0.1", 14333, "sales", "sa")
    assert (source.password_env, source.driver, source.encrypt) == ("DTAAS_SALES_PASSWORD", "auto", "optional")
    lake = config.destinations["lake"]
    assert lake.is_local and lake.local_path == Path.cwd() / ".dtaas" / "lake"
    assert (lake.format, lake.effective_compression) == ("parquet", "snappy")
    demo = config.tasks["demo"]
    assert [t.name for t in demo.explicit_tables()] == [
        "dbo.customers",
        "dbo.products",
        "dbo.orders",
        "dbo.order_lines",
    ]
    assert (demo.mode, demo.parallel_tables, demo.schedule, demo.patterns()) == ("full_load", 4, None, [])
    assert demo.retry == cfg.RetryConfig()
    assert (demo.batch.rows, demo.file_size.rows) == (50_000, 1_000_000)


def test_commented_examples_in_dtaas_yaml_are_valid(tmp_path: Path) -> None:
    """The commented-out examples users copy from must themselves validate."""
    text = cfg.DEFAULT_CONFIG_PATH.read_text()
    # "# key: ..." and "# - item" lines are commented-out YAML; other comments are prose.
    commented_yaml = re.compile(r"^(\s*)# ?(\s*(?:[A-Za-z_][\w-]*:(?:\s|$)|- ).*)$")
    uncommented = "\n".join(commented_yaml.sub(r"\1\2", line) for line in text.splitlines())
    uncommented = uncommented.replace("variables: {}\n", "")
    (tmp_path / "all.yaml").write_text(uncommented)
    config = load_config(tmp_path / "all.yaml")
    assert set(config.tasks) == {"demo", "demo_cdc", "nightly_sales", "sales_to_snowflake"}
    assert config.tasks["demo_cdc"].mode == "full_load_and_cdc"
    assert config.destinations["warehouse"].asset_kind == "snowflake"
    assert config.tasks["sales_to_snowflake"].schema_drift == "evolve"
    nightly = config.tasks["nightly_sales"]
    assert nightly.patterns() == ["dbo.*"] and nightly.schedule and nightly.schedule.cron == "0 2 * * *"
    assert config.destinations["minio"].endpoint_url == "http://127.0.0.1:9000"
    assert config.static_variables == {"ETLCustomerId": "42"} and set(config.query_variables) == {"CustomerId"}
    lines = next(t for t in nightly.explicit_tables() if t.name == "dbo.order_lines")
    assert [t.type for t in lines.transformations] == [
        "add_column",
        "filter_rows",
        "add_column",
        "cast_type",
        "rename_column",
    ]


def test_path_argument_beats_env_and_env_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    for name, task in (("a", "from_env"), ("b", "from_arg")):
        data = _config({})
        data["tasks"] = {task: data["tasks"]["sales_to_lake"]}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DTAAS_CONFIG", str(tmp_path / "a.yaml"))
    assert list(load_config().tasks) == ["from_env"]
    assert list(load_config(tmp_path / "b.yaml").tasks) == ["from_arg"]


def test_env_interpolation_with_defaults_and_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_HOST", "sql.example.com")
    monkeypatch.setenv("T_PORT", "1533")
    monkeypatch.delenv("T_UNSET", raising=False)
    config = parse_config(
        _config(
            {
                "sources.sales.host": "${T_HOST}",
                "sources.sales.port": "${T_PORT:-1433}",
                "sources.sales.database": "db_${T_UNSET:-dev}",
                "variables": {"Customer": "${T_UNSET:-42}", "Literal": "$${NOT_A_VAR}"},
                "destinations.lake.path_template": "${Customer}/$sourceTableName/$partitionKey",
            }
        )
    )
    assert config.sources["sales"].host == "sql.example.com"
    assert config.sources["sales"].port == 1533
    assert config.sources["sales"].database == "db_dev"
    assert config.variables == {"Customer": "42", "Literal": "${NOT_A_VAR}"}
    # path_template keeps its own ${name} variables: not taken from the environment
    assert config.destinations["lake"].path_template == "${Customer}/$sourceTableName/$partitionKey"


def test_password_is_read_from_env_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    source = parse_config(_config({})).sources["sales"]
    monkeypatch.setenv("SALES_PW", "s3cret-value")
    assert source.password() == "s3cret-value"
    assert "s3cret-value" not in repr(source) and "s3cret-value" not in source.model_dump_json()
    monkeypatch.delenv("SALES_PW")
    with pytest.raises(ConfigError) as info:
        source.password()
    assert str(info.value) == (
        "environment variable SALES_PW (sources.sales.password_env) is not set; export it before running"
    )


def test_password_in_yaml_is_rejected_without_echoing_it() -> None:
    message = _error(_config({"sources.sales.password": "hunter2-secret"}))
    assert "sources.sales.password" in message
    assert "put the password in an environment variable and name it in password_env" in message
    assert "hunter2-secret" not in message


def test_all_problems_are_listed_one_line_each() -> None:
    message = _error(_config({"sources.sales.port": 0, "tasks.sales_to_lake.parallel_tables": 12}))
    lines = message.splitlines()
    assert len(lines) == 2 and all(line.startswith("t.yaml: ") for line in lines)
    assert lines[1] == (
        "t.yaml: tasks.sales_to_lake.parallel_tables: must be between 1 and 10 (got 12); "
        "set it to the number of tables to load at once"
    )


def test_yaml_booleans_and_numbers_become_the_words_odbc_expects(tmp_path: Path) -> None:
    path = tmp_path / "bools.yaml"
    path.write_text(
        "sources:\n  sales: {host: db, database: d, user: u, password_env: PW, encrypt: no,\n"
        "          odbc_extra: {MultiSubnetFailover: yes, ConnectRetryCount: 3}}\n"
        "destinations:\n  lake: {url: 'file:///tmp/x'}\n"
        "tasks:\n  t: {source: sales, destination: lake, tables: [dbo.a]}\n"
    )
    source = load_config(path).sources["sales"]
    assert source.encrypt == "no"
    assert source.odbc_extra == {"MultiSubnetFailover": "Yes", "ConnectRetryCount": "3"}


def test_s3_url_parts_and_compression_defaults() -> None:
    dest = S3Destination(url="s3://my-lake/raw/sql/", format="csv")
    assert (dest.bucket, dest.prefix, dest.is_local, dest.effective_compression) == (
        "my-lake",
        "raw/sql",
        False,
        "none",
    )
    assert S3Destination(url="s3://my-lake").prefix == ""
    assert S3Destination(url="file:///tmp/lake").local_path == Path("/tmp/lake")


def test_every_field_has_a_description_and_models_are_frozen() -> None:
    models = _config_models()
    assert len(models) >= 8
    for model in models:
        assert model.model_config.get("frozen") and model.model_config.get("extra") == "forbid", model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
    config = parse_config(_config({}))
    with pytest.raises(Exception, match="frozen"):
        config.tasks["sales_to_lake"].parallel_tables = 2  # type: ignore[misc]


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("sources: {}\ntasks: {}\nsources: {}\n")
    with pytest.raises(ConfigError, match=r"line 3.*duplicate key 'sources'"):
        load_config(path)


# ----------------------------------------------------------------- bad configs

T = "tasks.sales_to_lake"
BAD_CONFIGS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "missing_source",
        {f"{T}.source": "slaes"},
        [
            f"{T}.source: task sales_to_lake: source 'slaes' is not defined; did you mean 'sales'? "
            "defined sources: sales"
        ],
    ),
    ("missing_required_field", {"sources.sales.host": DELETE}, ["sources.sales.host: is required", "add host:"]),
    (
        "unknown_key_suggestion",
        {f"{T}.parralel_tables": 3},
        [f"{T}.parralel_tables: unknown key 'parralel_tables'; did you mean 'parallel_tables'?", "allowed keys:"],
    ),
    ("unknown_top_level_key", {"task": {}}, ["task: unknown key 'task'; did you mean 'tasks'?"]),
    (
        "bad_port",
        {"sources.sales.port": 70000},
        ["sources.sales.port: must be between 1 and 65535 (got 70000)", "usually 1433"],
    ),
    (
        "port_not_a_number",
        {"sources.sales.port": "fourteen"},
        ["sources.sales.port: must be a whole number (got 'fourteen')", "usually 1433"],
    ),
    (
        "parallel_tables_0",
        {f"{T}.parallel_tables": 0},
        [f"{T}.parallel_tables: must be between 1 and 10 (got 0); set it to the number of tables to load at once"],
    ),
    ("parallel_tables_11", {f"{T}.parallel_tables": 11}, [f"{T}.parallel_tables: must be between 1 and 10 (got 11)"]),
    (
        "batch_rows_and_mb",
        {f"{T}.batch": {"rows": 10, "mb": 5}},
        [f"{T}.batch: give either rows or mb, not both; remove one of them"],
    ),
    ("file_size_neither", {f"{T}.file_size": {}}, [f"{T}.file_size: give either rows or mb; e.g. rows: 50000"]),
    ("batch_mb_zero", {f"{T}.batch": {"mb": 0}}, [f"{T}.batch.mb: must be greater than 0 and at most 4096", "mb: 64"]),
    (
        "bad_format",
        {"destinations.lake.format": "xml"},
        ["destinations.lake.format: must be one of 'parquet', 'csv' or 'jsonl' (got 'xml'); use parquet, csv or jsonl"],
    ),
    (
        "snappy_with_csv",
        {"destinations.lake.format": "csv", "destinations.lake.compression": "snappy"},
        ["destinations.lake.compression: snappy is only valid for parquet", "use gzip, zstd or none"],
    ),
    (
        "bad_url_scheme",
        {"destinations.lake.url": "gs://bucket/x"},
        ["destinations.lake.url: unsupported URL 'gs://bucket/x'", "s3://bucket[/prefix]", "file:///absolute/path"],
    ),
    (
        "bad_bucket_name",
        {"destinations.lake.url": "s3://My_Bucket"},
        ["destinations.lake.url: bucket name 'My_Bucket' is not a valid S3 bucket name", "s3://bucket[/prefix]"],
    ),
    (
        "bad_template_variable",
        {"destinations.lake.path_template": "$sourceTabelName/$partitionKey"},
        [
            "destinations.lake.path_template: unknown variable $sourceTabelName; did you mean 'sourceTableName'?",
            "define it under variables",
        ],
    ),
    (
        "dotdot_in_template",
        {"destinations.lake.path_template": "../$sourceTableName"},
        ["destinations.lake.path_template: must not contain '..' segments", "write it like"],
    ),
    (
        "leading_slash_template",
        {"destinations.lake.path_template": "/$sourceTableName"},
        ["destinations.lake.path_template: must be relative to url (no leading '/')"],
    ),
    (
        "template_without_partition_key",
        {"destinations.lake.path_template": "$sourceTableName/$loadDate"},
        ["destinations.lake.path_template: must contain $partitionKey", "directory of its own"],
    ),
    (
        "template_with_run_id",
        {"destinations.lake.path_template": "$sourceTableName/$partitionKey/${runId}"},
        ["destinations.lake.path_template: must not use $runId", "second copy"],
    ),
    (
        "empty_template",
        {"destinations.lake.path_template": "/"},
        ["destinations.lake.path_template: must be relative to url"],
    ),
    (
        "blank_template",
        {"destinations.lake.path_template": " "},
        ["destinations.lake.path_template: must not be empty"],
    ),
    (
        "password_in_yaml",
        {"sources.sales.password": "x"},
        ["sources.sales.password: ", "put the password in an environment variable and name it in password_env"],
    ),
    (
        "bad_env_name",
        {"sources.sales.password_env": "my-password"},
        ["sources.sales.password_env: must be the NAME of an environment variable", "name it here"],
    ),
    (
        "bad_credential_env_name",
        {"destinations.lake.access_key_id_env": "AKIA/abc"},
        ["destinations.lake.access_key_id_env: must be the NAME of an environment variable"],
    ),
    (
        "bad_cron",
        {f"{T}.schedule": {"cron": "0 25 * * *"}},
        [f"{T}.schedule.cron: '0 25 * * *' is not a valid five-field cron expression", "e.g. '0 2 * * *'"],
    ),
    ("cron_with_six_fields", {f"{T}.schedule": {"cron": "0 0 2 * * *"}}, [f"{T}.schedule.cron: ", "five-field"]),
    (
        "cron_and_interval",
        {f"{T}.schedule": {"cron": "0 2 * * *", "interval_minutes": 60}},
        [f"{T}.schedule: give either cron or interval_minutes, not both or neither", "drop schedule"],
    ),
    (
        "interval_too_long",
        {f"{T}.schedule": {"interval_minutes": 20000}},
        [f"{T}.schedule.interval_minutes: must be between 1 and 10080 (got 20000)"],
    ),
    (
        "bad_timezone",
        {f"{T}.schedule": {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}},
        [f"{T}.schedule.timezone: unknown time zone 'Mars/Olympus'; use an IANA name like UTC or Europe/Berlin"],
    ),
    (
        "bad_mode",
        {f"{T}.mode": "cdc_only"},
        [f"{T}.mode: must be one of", "(got 'cdc_only'); use full_load, cdc or full_load_and_cdc"],
    ),
    ("empty_tables", {f"{T}.tables": []}, [f"{T}.tables: must not be empty; list at least one table"]),
    (
        "table_without_schema",
        {f"{T}.tables": ["orders"]},
        [f"{T}.tables[0]: 'orders' must be schema.table (the schema is required)", "dbo.orders"],
    ),
    (
        "pattern_with_options",
        {f"{T}.tables": [{"name": "dbo.*", "primary_key": ["id"]}]},
        [f"{T}.tables[0].name: 'dbo.*' is a pattern; a table entry with options needs an exact name"],
    ),
    (
        "table_listed_twice",
        {f"{T}.tables": ["dbo.orders", {"name": "DBO.Orders"}]},
        [f"{T}.tables[1]: dbo.orders is listed twice; remove one entry"],
    ),
    (
        "unknown_table_option",
        {f"{T}.tables": [{"name": "dbo.orders", "primary_keys": ["id"]}]},
        [f"{T}.tables[0].primary_keys: unknown key 'primary_keys'; did you mean 'primary_key'?"],
    ),
    (
        "include_and_exclude",
        {f"{T}.tables": [{"name": "dbo.orders", "columns_include": ["a"], "columns_exclude": ["b"]}]},
        [f"{T}.tables[0].columns_exclude: give columns_include or columns_exclude, not both; remove one"],
    ),
    (
        "include_twice_any_case",
        {f"{T}.tables": [{"name": "dbo.orders", "columns_include": ["id", "ID", "v"]}]},
        [f"{T}.tables[0].columns_include: names the column id twice (ID; names compare case-insensitively"],
    ),
    (
        "key_twice",
        {f"{T}.tables": [{"name": "dbo.orders", "primary_key": ["a", "b", "A"]}]},
        [f"{T}.tables[0].primary_key: names the column a twice"],
    ),
    (
        "dotted_table_unbracketed",
        {f"{T}.tables": ["stg.dot.table"]},
        [f"{T}.tables[0]: 'stg.dot.table' has more than two parts", "stg.[dot.table]"],
    ),
    (
        "unclosed_bracket",
        {f"{T}.tables": ["stg.[dot.table"]},
        [f"{T}.tables[0]: 'stg.[dot.table' has a '[' without its closing ']'"],
    ),
    (
        "task_name_capitals",
        {"tasks": {"SalesToLake": BASE["tasks"]["sales_to_lake"]}},
        [
            "tasks.SalesToLake: task name 'SalesToLake' must match ^[a-z][a-z0-9_]{0,62}$",
            "Dagster job/asset name",
            "rename it, e.g. sales_to_lake",
        ],
    ),
    (
        "source_name_dash",
        {"sources": {"sales-db": BASE["sources"]["sales"]}, f"{T}.source": "sales-db"},
        ["sources.sales-db: source name 'sales-db' must match", "e.g. sales_db"],
    ),
    ("no_tasks", {"tasks": {}}, ["tasks: must not be empty; define at least one task"]),
    (
        "odbc_extra_pwd",
        {"sources.sales.odbc_extra": {"pwd": "x"}},
        ["sources.sales.odbc_extra.pwd: is set by the typed source fields", "remove it from odbc_extra"],
    ),
    (
        "odbc_extra_semicolon",
        {"sources.sales.odbc_extra": {"App": "x;PWD=leak"}},
        ["sources.sales.odbc_extra.App: key and value must not contain ; { } or =; remove those characters"],
    ),
    (
        "unknown_destination",
        {f"{T}.destination": "laek"},
        [
            f"{T}.destination: task sales_to_lake: destination 'laek' is not defined; did you mean 'lake'?",
            "defined destinations: lake",
        ],
    ),
    (
        "unknown_destination_type",
        {"destinations.lake.type": "gcs"},
        ["destinations.lake.type: must be one of 's3', 'snowflake' (got 'gcs'); use type: s3 or type: snowflake"],
    ),
    (
        "missing_env_var",
        {"sources.sales.host": "${DTAAS_TEST_SURELY_UNSET}"},
        [
            "sources.sales.host: environment variable DTAAS_TEST_SURELY_UNSET is not set; export it or write "
            "${DTAAS_TEST_SURELY_UNSET:-default}"
        ],
    ),
    (
        "negative_retry_delay",
        {f"{T}.retry": {"delay_seconds": -1}},
        [f"{T}.retry.delay_seconds: must be between 0 and 3600 (got -1)"],
    ),
    ("bad_backoff", {f"{T}.retry": {"backoff": "fibonacci"}}, [f"{T}.retry.backoff: ", "exponential, linear"]),
    (
        "bad_datetime2",
        {f"{T}.datetime2": "nanoseconds"},
        [f"{T}.datetime2: must be one of", "use auto, timestamp_ns, timestamp_us or string"],
    ),
    (
        "bad_column_datetime2",
        {f"{T}.tables": [{"name": "dbo.orders", "datetime2": {"created": "ns"}}]},
        [f"{T}.tables[0].datetime2.created: must be one of", "use auto, timestamp_ns"],
    ),
    (
        "bad_endpoint_url",
        {"destinations.lake.endpoint_url": "127.0.0.1:9000"},
        ["destinations.lake.endpoint_url: must be an http:// or https:// URL", "http://127.0.0.1:9000"],
    ),
    ("builtin_variable_name", {"variables": {"runId": "x"}}, ["variables.runId: is a built-in variable"]),
    (
        "max_concurrent_reads",
        {"sources.sales.max_concurrent_reads": 65},
        ["sources.sales.max_concurrent_reads: must be between 1 and 64 (got 65)"],
    ),
    (
        "bad_encrypt",
        {"sources.sales.encrypt": "maybe"},
        ["sources.sales.encrypt: must be one of", "use yes, no, optional or strict"],
    ),
]


@pytest.mark.parametrize(("edits", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_field_and_fix(edits: dict[str, Any], expected: list[str]) -> None:
    message = _error(_config(edits))
    assert message.startswith("t.yaml: ")
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_secret_values_are_not_echoed() -> None:
    message = _error(_config({"sources.sales.odbc_extra": {"App": "x;PWD=leak-me"}}))
    assert "leak-me" not in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("sources:\n  sales:\n    host: [127.0.0.1\n    port: 1433\ntasks: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line ") and "invalid YAML" in message and "fix the syntax" in message


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("", "an empty file"), ("42\n", "a int")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "top.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: the top level must be a mapping with keys sources, destinations")
    assert f"(got {kind})" in str(info.value)


def test_missing_file_names_path_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTAAS_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert f"config file {tmp_path / 'nope.yaml'} not found (from environment variable DTAAS_CONFIG)" in message
    assert "set DTAAS_CONFIG" in message


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert typing.get_type_hints(load_config)["return"] is DtaasConfig


# --------------------------------------------------------------- match_tables

CATALOG = [
    ("dbo", "Orders"),
    ("dbo", "order_lines"),
    ("dbo", "Customers"),
    ("dbo", "tmp_import"),
    ("sales_eu", "invoices"),
    ("sales_us", "invoices"),
    ("audit", "log"),
]


def _task(tables: list[Any], exclude: list[str] | None = None) -> TaskConfig:
    return TaskConfig(source="sales", destination="lake", tables=tables, exclude_tables=exclude or [])


def test_match_tables_patterns_are_case_insensitive_and_sorted() -> None:
    names = [t.name for t in match_tables(_task(["DBO.*"]), CATALOG)]
    assert names == ["dbo.Customers", "dbo.order_lines", "dbo.Orders", "dbo.tmp_import"]
    assert [t.name for t in match_tables(_task(["sales_*.INVOICES"]), CATALOG)] == [
        "sales_eu.invoices",
        "sales_us.invoices",
    ]
    assert [t.name for t in match_tables(_task(["dbo.order?"]), CATALOG)] == ["dbo.Orders"]


def test_match_tables_excludes_apply_to_patterns_only() -> None:
    task = _task(["dbo.tmp_import", "dbo.*"], exclude=["dbo.TMP_*", "dbo.order_*"])
    assert [t.name for t in match_tables(task, CATALOG)] == ["dbo.tmp_import", "dbo.Customers", "dbo.Orders"]


def test_match_tables_keeps_explicit_options_and_catalog_spelling() -> None:
    task = _task([{"name": "dbo.orders", "primary_key": ["id"], "datetime2": {"created": "string"}}, "dbo.*"])
    tables = match_tables(task, CATALOG)
    assert tables[0] == TableConfig(name="dbo.Orders", primary_key=["id"], datetime2={"created": "string"})
    assert [t.name for t in tables].count("dbo.Orders") == 1 and len(tables) == 4


def test_match_tables_unknown_explicit_table_suggests_a_name() -> None:
    with pytest.raises(ConfigError) as info:
        match_tables(_task(["dbo.Orderz"]), CATALOG)
    assert str(info.value) == "table dbo.Orderz not found in source sales; did you mean dbo.Orders?"


def test_match_tables_pattern_that_matches_nothing_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"pattern hr\.\* matched no table in source sales"):
        match_tables(_task(["hr.*"]), CATALOG)


def test_every_field_is_documented() -> None:
    docs = (cfg.DEFAULT_CONFIG_PATH.parent / "docs" / "configuration.md").read_text()
    models = _config_models()
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields if f"`{name}`" not in docs]
    assert not missing, f"not in docs/configuration.md: {missing}"
    for builtin in BUILTIN_VARIABLES:
        assert f"`{builtin}`" in docs
