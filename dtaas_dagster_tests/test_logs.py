"""Structured logs: DTAAS_LOG_FORMAT=json turns every line of a real run into JSON.

The end-to-end test runs ``dtaas load --task t --in-process`` against the SQL
Server fixture and parses every line the command and its run printed. The unit
tests pin the switch's error and the formatter's fields.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.logs import JsonLogFormatter, LogFormatError, fields, log_format
from dtaas_dagster_tests.runs import REPO_ROOT, dagster_home, run_load, source_config, write_config

ROWS = 1200


def _config(sqlserver: Any, database: str, lake: Path) -> dict[str, Any]:
    return {
        "sources": {"src": source_config(sqlserver, database)},
        "destinations": {"dst": {"type": "s3", "url": f"file://{lake}"}},
        "tasks": {
            "t": {
                "source": "src",
                "destination": "dst",
                "tables": ["dbo.events", "dbo.tiny"],
                "batch": {"rows": 500},
                "retry": {"max_retries": 0},
            }
        },
    }


def _seed(sqlserver_db: Any) -> None:
    ids = list(range(1, ROWS + 1))
    sqlserver_db.seed_table(
        "dbo",
        "events",
        pa.table({"id": ids, "name": [f"event {i}" for i in ids]}),
        columns={"id": "int", "name": "nvarchar(50)"},
        primary_key=["id"],
    )
    sqlserver_db.seed_table("dbo", "tiny", pa.table({"id": [1, 2]}), columns={"id": "int"}, primary_key=["id"])


def _split_output(output: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON objects of a run's output, and whatever text is not one.

    Two step processes write to the same pipe; a line in Dagster's format written
    in pieces can end up glued to a JSON line, so JSON objects are taken from
    anywhere in a line (every other character must still be accounted for).
    """
    decoder = json.JSONDecoder()
    parsed: list[dict[str, Any]] = []
    other: list[str] = []
    for line in output.splitlines():
        rest = line
        while (start := rest.find('{"timestamp"')) >= 0:
            try:
                entry, end = decoder.raw_decode(rest, start)
            except json.JSONDecodeError:
                break
            parsed.append(entry)
            rest = rest[:start] + rest[end:]
        if rest.strip():
            other.append(rest)
    return parsed, other


@pytest.mark.slow
def test_every_line_of_a_real_run_is_json_with_the_run_context(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    _seed(sqlserver_db)
    config_path = write_config(tmp_path, _config(sqlserver, sqlserver_db.name, tmp_path / "lake"))
    outcome = run_load(
        task="t",
        config_path=config_path,
        home=dagster_home(tmp_path),
        password=sqlserver.password,
        env={"DTAAS_LOG_FORMAT": "json"},
    )
    assert outcome.ok, outcome.output[-6000:]

    parsed, dagster_format = _split_output(outcome.output)
    # The one exception (docs/operations.md#logs): a step's subprocess announces itself with
    # Dagster's built-in console logger before the job, and so its loggers, is loaded.
    assert all(" - STEP_WORKER_STARTED - " in line for line in dagster_format), dagster_format
    assert len(dagster_format) <= 2, dagster_format
    expected_fields = {
        "timestamp",
        "level",
        "event",
        "run_id",
        "task",
        "table",
        "partition",
        "rows",
        "rows_per_second",
        "message",
    }
    for entry in parsed:
        assert expected_fields <= set(entry), entry

    # The product's lines: what each table reads, its progress, and its total.
    run_lines = [e for e in parsed if e["run_id"]]
    run_ids = {e["run_id"] for e in run_lines}
    assert len(run_ids) == 1, run_ids
    partition = run_lines[0]["partition"]
    assert partition and "-full-" in partition
    assert all(e["partition"] == partition and e["task"] == "t" for e in run_lines), run_lines[:3]

    # a start line only for a table of more than one batch (a one-batch table logs once, when read)
    starts = {e["table"]: e for e in run_lines if e["event"] == "table_start"}
    assert set(starts) == {"dbo.events"}
    assert starts["dbo.events"]["columns"] == 2 and starts["dbo.events"]["estimated_rows"] == ROWS

    # progress lines come at most every 5 s (a second here reads it all): test_progress_lines_are_json
    reads = {e["table"]: e for e in run_lines if e["event"] == "table_read"}
    assert reads["dbo.events"]["rows"] == ROWS and reads["dbo.tiny"]["rows"] == 2
    assert all(isinstance(e["rows_per_second"], int) and e["rows_per_second"] > 0 for e in reads.values())
    assert reads["dbo.events"]["message"].startswith(f"dbo.events: read {ROWS:,} / ~{ROWS:,} rows (100%)")

    # Dagster's own events of the run, with the asset and its row count.
    materialized = {e["asset"]: e for e in run_lines if e["event"] == "ASSET_MATERIALIZATION"}
    assert set(materialized) == {"t/dbo/events", "t/dbo/tiny"}
    assert materialized["t/dbo/events"]["rows"] == ROWS
    events = [(e["event"], e["step"]) for e in run_lines if e["event"].isupper()]
    assert {"STEP_START", "STEP_SUCCESS", "RUN_SUCCESS"} <= {event for event, _ in events}, (events, dagster_format)

    # `dtaas load`'s own line names the same partition.
    cli = [e for e in parsed if e["event"] == "cli"]
    assert cli and cli[0]["partition"] == partition


@pytest.fixture()
def process_loggers() -> Iterator[None]:
    """Put back what loading the definitions with JSON on does to this process's loggers."""
    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate, logging.getLogger(name).level)
        for name in ("dtaas_dagster", "py.warnings")
    }
    yield
    logging.captureWarnings(False)
    for name, (handlers, propagate, level) in saved.items():
        logger_ = logging.getLogger(name)
        logger_.handlers[:] = handlers
        logger_.propagate, logger_.level = propagate, level


def _runs_log_config(monkeypatch: pytest.MonkeyPatch, value: str) -> dict[str, Any]:
    """Per job of the example config, the ``loggers`` a run gets without run config of its own."""
    from dtaas_dagster.definitions import defs

    monkeypatch.setenv("DTAAS_CONFIG", str(REPO_ROOT / "dtaas.yaml"))
    monkeypatch.setenv("DTAAS_LOG_FORMAT", value)
    repository = defs().get_repository_def()
    found = {}
    for job in repository.get_all_jobs():
        if job.name.startswith("__"):  # Dagster's implicit asset job: docs/operations.md#logs
            continue
        if job.partitioned_config is not None:  # a partitioned job's runs take the partition's config
            config = job.partitioned_config.get_run_config_for_partition_key("2026-12-02T031025Z-full-rabcdef")
        else:
            config = job.run_config or {}
        found[job.name] = (sorted(job.loggers), dict(config).get("loggers"))
    return found


def test_default_stays_dagsters_readable_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset: no job names a logger, so Dagster's own colored console logger writes every run."""
    found = _runs_log_config(monkeypatch, "")
    assert {"demo_tables", "demo_full_load", "demo_cdc_cdc_checks"} <= set(found)
    assert all(loggers == (["console"], None) for loggers in found.values()), found


def test_json_reaches_every_job_of_the_code_location(monkeypatch: pytest.MonkeyPatch, process_loggers: None) -> None:
    from dtaas_dagster.logs import json_console_logger

    found = _runs_log_config(monkeypatch, "json")
    assert all(loggers == (["console"], {"console": {}}) for loggers in found.values()), found
    from dtaas_dagster.definitions import defs

    job = defs().get_repository_def().get_job("demo_cdc_tables")
    assert job.loggers["console"] is json_console_logger
    assert any(isinstance(h.formatter, JsonLogFormatter) for h in logging.getLogger("dtaas_dagster").handlers)


def test_an_unknown_log_format_is_refused_with_the_fix() -> None:
    assert log_format({}) == "colored"
    assert log_format({"DTAAS_LOG_FORMAT": " JSON "}) == "json"
    with pytest.raises(LogFormatError, match="DTAAS_LOG_FORMAT is 'jsn'; set it to json"):
        log_format({"DTAAS_LOG_FORMAT": "jsn"})


def test_formatter_keeps_extra_fields_and_errors() -> None:
    logger = logging.Logger("t")
    record = logger.makeRecord(
        "t",
        logging.ERROR,
        __file__,
        1,
        "boom %s",
        ("x",),
        None,
        extra=fields("table_failed", table="dbo.a", partition="p1", failure="transient"),
    )
    try:
        raise RuntimeError("driver said no")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonLogFormatter().format(record))
    assert line["event"] == "table_failed" and line["table"] == "dbo.a" and line["partition"] == "p1"
    assert line["failure"] == "transient" and line["message"] == "boom x" and line["level"] == "ERROR"
    assert line["run_id"] is None and "RuntimeError: driver said no" in line["error"]


def test_progress_lines_are_json_with_rows_and_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress lines of a long read (one every PROGRESS_EVERY_SECONDS; 0 here: one per batch)."""
    import io

    from dtaas_dagster import table_load

    monkeypatch.setattr(table_load, "PROGRESS_EVERY_SECONDS", 0.0)
    out = io.StringIO()
    logger = logging.Logger("dtaas_dagster.run", level=logging.INFO)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogFormatter())
    logger.addHandler(handler)
    batches = [pa.record_batch({"id": list(range(n))}) for n in (500, 500, 200)]
    read = list(
        table_load.progress(
            iter(batches),
            log=logger,
            table="dbo.events",
            estimate=1000,  # type: ignore[arg-type]
            partition="p1",
            details="2 columns",
        )
    )
    assert read == batches  # passed through unchanged
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["rows"]) for e in lines] == [
        ("progress", 500),
        ("progress", 1000),
        ("progress", 1200),
        ("table_read", 1200),
    ]
    assert all(
        e["table"] == "dbo.events"
        and e["partition"] == "p1"
        and e["estimated_rows"] == 1000
        and isinstance(e["rows_per_second"], int)
        for e in lines
    )
    assert lines[0]["message"].startswith("dbo.events: 500 / ~1,000 rows (50%), ")
    assert lines[-1]["message"].endswith("rows/s); 2 columns") and lines[-1]["elapsed_seconds"] >= 0
