"""The real table assets, in-process, against the SQL Server double and file:// or moto: a fast tier.

Each test builds the code location from a dtaas.yaml (``build_definitions``) and
executes ``<task>_tables`` for one partition in this process
(``execute_in_process``: the same assets, resources, retry policy and IO manager
as a launched run, without starting processes). The run-machinery and
subprocess paths are covered by the slow tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dtaas_dagster.config import parse_config
from dtaas_dagster.destinations.files import read_partition
from dtaas_dagster.destinations.location import open_location
from dtaas_dagster.factory import build_definitions
from dtaas_dagster.manifest import MANIFEST_NAME
from dtaas_dagster.sqlserver.bulk import IncompleteRead, check_complete
from dtaas_dagster_tests.runs import PASSWORD_ENV, source_config

KEY = "2026-03-04T050607Z-full-rtest01"


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(autouse=True)
def _password(sqlserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sqlserver.password)


def _config(sqlserver: Any, database: str, lake: str, tables: list[Any], **task: Any) -> dict[str, Any]:
    destination = task.pop("destination", {"type": "s3", "url": lake})
    return {
        "sources": {"src": source_config(sqlserver, database)},
        "destinations": {"dst": destination},
        "variables": task.pop("variables", {}),
        "tasks": {"t": {"source": "src", "destination": "dst", "tables": tables, "retry": {"max_retries": 0}, **task}},
    }


def _run(config: dict[str, Any], instance: dg.DagsterInstance, key: str = KEY) -> dg.ExecuteInProcessResult:
    job = build_definitions(parse_config(config)).resolve_job_def("t_tables")
    instance.add_dynamic_partitions("t_loads", [key])
    return job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)


def _events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == kind]


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's message and the messages of its causes."""
    texts = []
    for event in _events(result, dg.DagsterEventType.STEP_FAILURE):
        error = event.step_failure_data.error if event.step_failure_data else None
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return "\n".join(texts)


def _seed(db: Any, name: str, rows: int = 5, key: bool = True) -> pa.Table:
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int32()),
            "Name": pa.array([f"n{i}" for i in range(rows)]),
            "secret": pa.array([f"s{i}" for i in range(rows)]),
        }
    )
    db.seed_table(
        "dbo",
        name,
        table,
        columns={"id": "int", "Name": "nvarchar(20)", "secret": "nvarchar(20)"},
        primary_key=["id"] if key else None,
    )
    return table


def test_columns_key_override_and_template_variables(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, "orders")
    _seed(sqlserver_db, "heap", key=False)
    config = _config(
        sqlserver,
        sqlserver_db.name,
        "",
        [
            {"name": "dbo.orders", "columns_include": ["ID", "name"]},
            {"name": "dbo.heap", "primary_key": ["ID"], "columns_exclude": ["SECRET"]},
        ],
        variables={"customer": "acme 7"},
        destination={
            "type": "s3",
            "url": f"file://{tmp_path}/lake",
            "path_template": "c=$customer/$taskName/$sourceTableShortName/$loadDate/$partitionKey",
        },
    )
    result = _run(config, instance)
    assert result.success, _failure_text(result)
    base = tmp_path / "lake" / "c=acme%207" / "t"
    orders = read_partition(
        open_location(f"file://{base}").fs, str(base / "orders" / "2026-03-04" / KEY.replace(":", "%3A"))
    )
    assert orders.column_names == ["id", "Name"]  # the table's spelling, in the order asked
    heap_dir = base / "heap" / "2026-03-04" / KEY
    heap = read_partition(open_location(f"file://{base}").fs, str(heap_dir))
    assert heap.column_names == ["id", "Name"] and heap.num_rows == 5
    import json

    assert json.loads((heap_dir / "_manifest.json").read_text())["primary_key"] == ["id"]  # the override
    materialized = {e.asset_key.path[-1]: e for e in _events(result, dg.DagsterEventType.ASSET_MATERIALIZATION)}
    assert set(materialized) == {"orders", "heap"}


def test_config_errors_against_the_catalog_are_reported_together_and_not_retried(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, "orders")
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        [
            {
                "name": "dbo.orders",
                "columns_include": ["id", "nope"],
                "primary_key": ["missing_key"],
                "datetime2": {"No_Such_Col": "string"},
            }
        ],
        retry={"max_retries": 3, "delay_seconds": 0},
    )
    result = _run(config, instance)
    assert not result.success
    text = _failure_text(result)
    for part in (
        "columns_include names nope",
        "primary_key names missing_key",
        "datetime2 names No_Such_Col",
        "Columns there: id, Name, secret",
    ):
        assert part in text, text
    assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    assert not list(tmp_path.rglob(MANIFEST_NAME))


@pytest.mark.double_only
@pytest.mark.parametrize(("fault", "retries"), [("deadlock", 2), ("dropped", 1)])
def test_transient_faults_are_retried_exactly_as_often_as_they_happen(
    fault: str, retries: int, sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    expected = _seed(sqlserver_db, "orders", rows=3_000)
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        ["dbo.orders"],
        batch={"rows": 500},
        retry={"max_retries": 4, "delay_seconds": 0.1, "backoff": "exponential", "jitter": "none"},
    )
    if fault == "deadlock":
        sqlserver.control.fail_statement(r"FROM \[dbo\]\.\[orders\]", times=retries)
    else:
        sqlserver.control.drop_after_rows(1_000, matching=r"FROM \[dbo\]\.\[orders\]", times=retries)
    try:
        result = _run(config, instance)
    finally:
        sqlserver.control.clear_faults()
    assert result.success, _failure_text(result)
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == retries
    [manifest] = list(tmp_path.rglob(MANIFEST_NAME))
    table = read_partition(open_location(f"file://{manifest.parent}").fs, str(manifest.parent))
    assert table.sort_by("id").to_pylist() == expected.to_pylist()


@pytest.mark.double_only
def test_permission_denied_fails_at_once_naming_the_grant(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, "orders")
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        ["dbo.orders"],
        retry={"max_retries": 3, "delay_seconds": 0},
    )
    sqlserver.control.fail_statement(
        r"FROM \[dbo\]\.\[orders\]",
        times=10,
        number=229,
        severity=14,
        message="The SELECT permission was denied on the object 'orders', database 'x', schema 'dbo'.",
    )
    try:
        result = _run(config, instance)
    finally:
        sqlserver.control.clear_faults()
    assert not result.success
    assert "lacks a permission it needs" in _failure_text(result) and "GRANT SELECT" in _failure_text(result)
    assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []


@pytest.mark.double_only
def test_one_failing_table_does_not_stop_its_step_and_the_retry_loads_only_it(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    for name in ("a", "b", "c"):
        _seed(sqlserver_db, name)
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        ["dbo.a", "dbo.b", "dbo.c"],
        parallel_tables=1,
        retry={"max_retries": 2, "delay_seconds": 0.1, "jitter": "none"},
    )
    sqlserver.control.fail_statement(r"FROM \[dbo\]\.\[b\]", times=1)
    try:
        result = _run(config, instance)
    finally:
        sqlserver.control.clear_faults()
    assert result.success, _failure_text(result)
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    order = [e.asset_key.path[-1] for e in _events(result, dg.DagsterEventType.ASSET_MATERIALIZATION)]
    assert order == ["a", "c", "b"]  # c was loaded in the first attempt, after b failed; only b in the retry


@pytest.mark.double_only
@pytest.mark.parametrize("max_retries", [0, 1])
def test_the_failure_says_whether_a_retry_is_left(
    max_retries: int, sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, "orders")
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        ["dbo.orders"],
        retry={"max_retries": max_retries, "delay_seconds": 0.1, "jitter": "none"},
    )
    sqlserver.control.fail_statement(r"FROM \[dbo\]\.\[orders\]", times=10)  # a deadlock, every attempt
    try:
        result = _run(config, instance)
    finally:
        sqlserver.control.clear_faults()
    assert not result.success
    texts = []  # per attempt, in order: the error and its causes
    for event in result.all_events:
        if event.event_type in (dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_FAILURE):
            error, chain = getattr(event.event_specific_data, "error", None), []
            while error is not None:
                chain.append(error.message)
                error = error.cause
            texts.append("\n".join(chain))
    assert len(texts) == max_retries + 1, texts
    last = "no retry is left (retry.max_retries): re-execute the run from failure"
    assert last in texts[-1] and "a retry of the step" not in texts[-1]
    assert all("a retry of the step loads (or checks again) only these" in text for text in texts[:-1])


@pytest.mark.double_only
def test_a_step_describes_its_tables_in_bulk_and_a_failed_bulk_read_costs_one_table_a_retry(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    names = ["a", "b", "c", "d"]
    for name in names:
        _seed(sqlserver_db, name)
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        [f"dbo.{n}" for n in names],
        parallel_tables=1,
        retry={"max_retries": 2, "delay_seconds": 0.1, "jitter": "none"},
    )
    # every one-table describe fails (the driver sends ? as @P<n>): only the bulk read can describe them
    sqlserver.control.fail_statement(r"c\.TABLE_NAME = @P\d+", times=100)
    sqlserver.control.fail_statement(r"c\.TABLE_NAME IN \(", times=1)  # the first bulk read: a deadlock
    try:
        result = _run(config, instance)
    finally:
        sqlserver.control.clear_faults()
    assert result.success, _failure_text(result)
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    order = [e.asset_key.path[-1] for e in _events(result, dg.DagsterEventType.ASSET_MATERIALIZATION)]
    assert order == ["b", "c", "d", "a"]  # a asked for the failed read; b read ahead again; the retry loaded a
    assert len(list(tmp_path.rglob(MANIFEST_NAME))) == 4


def test_a_small_table_logs_one_line_and_a_big_one_says_when_it_starts(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, "small", rows=5)
    _seed(sqlserver_db, "big", rows=3_000)
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        ["dbo.small", "dbo.big"],
        batch={"rows": 1_000},
        parallel_tables=1,
    )
    result = _run(config, instance)
    assert result.success, _failure_text(result)
    lines = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.user_message.startswith(("dbo.small", "dbo.big"))
    ]
    assert [line.split(":")[0] for line in lines] == ["dbo.small", "dbo.big", "dbo.big"], lines
    assert lines[0].startswith("dbo.small: read 5 / ~5 rows (100%) in ")
    assert lines[0].endswith("; 3 columns, snapshot isolation on")
    assert lines[1] == "dbo.big: reading ~3,000 rows; 3 columns, snapshot isolation on"
    assert lines[2].startswith("dbo.big: read 3,000 / ~3,000 rows (100%) in ")


def test_destination_errors_fail_at_once_and_name_the_destination(
    sqlserver: Any,
    sqlserver_db: Any,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    moto_s3: Any,
    s3_credentials: Any,
) -> None:
    _seed(sqlserver_db, "orders")
    (tmp_path / "a_file").write_text("not a directory")
    cases = {
        "parent is a file": ({"type": "s3", "url": f"file://{tmp_path}/a_file/lake"}, "is a file, not a directory"),
        "unwritable": ({"type": "s3", "url": "file:///sys/dtaas-lake"}, "not writable by this process"),
        "missing bucket": (
            {
                "type": "s3",
                "url": "s3://no-such-bucket-dtaas/x",
                "endpoint_url": moto_s3.endpoint_url,
                "access_key_id_env": s3_credentials.key_id_env,
                "secret_access_key_env": s3_credentials.secret_env,
            },
            "the bucket does not exist",
        ),
        "unset credentials": (
            {
                "type": "s3",
                "url": "s3://some-bucket/x",
                "endpoint_url": moto_s3.endpoint_url,
                "access_key_id_env": "DTAAS_UNSET_KEY_VAR",
                "secret_access_key_env": s3_credentials.secret_env,
            },
            "DTAAS_UNSET_KEY_VAR",
        ),
    }
    for case, (destination, message) in cases.items():
        config = _config(
            sqlserver,
            sqlserver_db.name,
            "",
            ["dbo.orders"],
            destination=destination,
            retry={"max_retries": 3, "delay_seconds": 0},
        )
        result = _run(config, instance, key=f"{KEY}{len(message)}")
        text = _failure_text(result)
        assert not result.success, case
        assert message in text and "destination dst (destinations.dst.url" in text, (case, text)
        assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == [], case
        assert s3_credentials.secret not in text


class _Reader:
    """A stand-in for arrow-odbc's BatchReader after the rows (the count result set)."""

    def __init__(self, counts: list[int] | None, error: Exception | None = None) -> None:
        self._counts, self._error = counts, error

    def more_results(self, batch_size: int) -> bool:
        if self._error:
            raise self._error
        return self._counts is not None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"rows_sent": pa.array(self._counts or [], pa.int64())})


def test_the_completeness_check_has_three_ways_to_fail() -> None:
    check_complete(_Reader([10]), 10, what="db.dbo.t")
    with pytest.raises(IncompleteRead, match="stopped after 6 rows: the connection ended"):
        check_complete(_Reader(None), 6, what="db.dbo.t")
    with pytest.raises(IncompleteRead, match=r"stopped after 6 rows.*\(link failure\)"):
        check_complete(_Reader([10], error=RuntimeError("link failure")), 6, what="db.dbo.t")
    with pytest.raises(IncompleteRead, match="received 6 rows but SQL Server sent 10"):
        check_complete(_Reader([10]), 6, what="db.dbo.t")


@pytest.mark.double_only
def test_a_connection_dropped_mid_result_is_caught_by_the_count(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    _seed(sqlserver_db, "orders", rows=4_000)
    config = _config(sqlserver, sqlserver_db.name, f"file://{tmp_path}/lake", ["dbo.orders"], batch={"rows": 500})
    sqlserver.control.drop_after_rows(1_500, matching=r"FROM \[dbo\]\.\[orders\]", times=1)
    try:
        result = _run(config, instance)
    finally:
        sqlserver.control.clear_faults()
    assert not result.success
    assert "stopped after" in _failure_text(result) or "received" in _failure_text(result)
    assert not list(tmp_path.rglob("part-*")) and not list(tmp_path.rglob(MANIFEST_NAME))
    assert pq  # parquet reader available for the other tests


def test_datetime2_overrides_match_column_names_case_insensitively(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    from dtaas_dagster_tests.all_types import seed_all_types

    seed_all_types(sqlserver_db)
    config = _config(
        sqlserver,
        sqlserver_db.name,
        f"file://{tmp_path}/lake",
        [{"name": "DBO.ALL_TYPES", "datetime2": {"C_SENTINEL_TEXT": "string", "c_DATETIME2_7": "string"}}],
    )
    result = _run(config, instance)
    assert result.success, _failure_text(result)
    [manifest] = list(tmp_path.rglob(MANIFEST_NAME))
    table = read_partition(open_location(f"file://{manifest.parent}").fs, str(manifest.parent))
    assert table.schema.field("c_sentinel_text").type == pa.string()
    assert table.schema.field("c_datetime2_7").type == pa.string()  # the user protected it: the text is exact
    assert "2024-01-01 00:00:00.1234567" in table.column("c_datetime2_7").to_pylist()
