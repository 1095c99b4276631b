"""Structured logs: one switch, ``DTAAS_LOG_FORMAT=json``.

Unset (or ``colored``), every process logs in Dagster's own readable format.
With ``DTAAS_LOG_FORMAT=json`` every log line that the product and its runs
emit is one JSON object (docs/operations.md#logs):

- the runs: the code location's jobs get :func:`json_console_logger` as their
  ``console`` logger (``Definitions(loggers=...)``), so each step process
  writes Dagster's events and the product's lines as JSON to stderr;
- the code location's own Python loggers (``dtaas_dagster``, Python warnings)
  get the same formatter when the definitions load;
- ``dtaas load`` prints its own lines as JSON (:func:`cli_printer`);
- Dagster's processes take the same word on their command line
  (``dagster-webserver --log-format json``, ``dagster-daemon run``,
  ``dagster code-server start``): docker-compose.yml passes the variable.

Fields of a line: ``timestamp``, ``level``, ``event`` (a Dagster event type
such as ``STEP_START`` or ``ASSET_MATERIALIZATION``, a product event such as
``table_read``/``progress``/``table_done``, or ``log``), ``run_id``, ``job``,
``step``, ``task``, ``table``, ``partition``, ``asset``, ``rows``,
``rows_per_second``, ``message``; fields that do not apply are ``null``. The
product's lines carry their numbers through ``extra={"dtaas": {...}}``
(:func:`fields`), which Dagster passes on to run loggers unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

LOG_FORMAT_ENV = "DTAAS_LOG_FORMAT"
FORMATS = ("colored", "json")
# The record attribute under which the product's structured fields travel.
EXTRA_KEY = "dtaas"
# Dagster puts the run's context (run id, job, step, run tags, the event) on each
# record it hands to a run logger under this attribute.
_DAGSTER_META = "dagster_meta"
_PRODUCT_LOGGERS = ("dtaas_dagster", "py.warnings")


class LogFormatError(ValueError):
    """``DTAAS_LOG_FORMAT`` holds a word we do not know."""


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """``colored`` (Dagster's format, the default) or ``json``, from ``DTAAS_LOG_FORMAT``."""
    value = (os.environ if environ is None else environ).get(LOG_FORMAT_ENV, "").strip().lower() or "colored"
    if value not in FORMATS:
        raise LogFormatError(
            f"environment variable {LOG_FORMAT_ENV} is {value!r}; set it to json for one JSON object per log "
            "line, or to colored (or leave it unset) for Dagster's readable format"
        )
    return value


def fields(event: str, **values: Any) -> dict[str, dict[str, Any]]:
    """The ``extra=`` of a product log line: ``context.log.info(msg, extra=fields("progress", rows=...))``."""
    return {EXTRA_KEY: {"event": event, **values}}


def _event_asset(event: Any) -> tuple[str | None, str | None]:
    """The asset key and partition of a Dagster event, when it has them."""
    try:
        key, partition = event.asset_key, event.partition
    except Exception:  # noqa: BLE001 - events without asset data raise on these properties
        return None, None
    return (key.to_user_string() if key is not None else None), partition


def _materialized_rows(event: Any) -> int | None:
    """``dagster/row_count`` of an ASSET_MATERIALIZATION event (None for other events)."""
    try:
        value = event.step_materialization_data.materialization.metadata.get("dagster/row_count")
    except Exception:  # noqa: BLE001 - only materialization events have this data
        return None
    return getattr(value, "value", None)


def _timestamp(created: float) -> str:
    return dt.datetime.fromtimestamp(created, tz=dt.UTC).isoformat(timespec="milliseconds")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, with the run's context and the product's fields."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, _DAGSTER_META, None) or {}
        tags = meta.get("job_tags") or {}
        product = dict(getattr(record, EXTRA_KEY, None) or {})
        event = meta.get("dagster_event")
        event_type = event.event_type_value if event is not None else None
        if event_type and event_type.startswith("PIPELINE_"):  # Dagster's stored names for RUN_* events
            event_type = "RUN_" + event_type[len("PIPELINE_") :]
        asset, event_partition = _event_asset(event) if event is not None else (None, None)
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "event": product.pop("event", None) or event_type or "log",
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "step": meta.get("step_key"),
            "task": product.pop("task", None) or tags.get("dtaas/task"),
            "table": product.pop("table", None),
            "partition": product.pop("partition", None) or event_partition or tags.get("dagster/partition"),
            "asset": asset,
            "rows": product.pop("rows", None) if "rows" in product else _materialized_rows(event),
            "rows_per_second": product.pop("rows_per_second", None),
            "message": meta.get("orig_message") or record.getMessage(),
            "logger": record.name,
        }
        line.update(product)
        if record.exc_info:
            line["error"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    return handler


@dg.logger(
    config_schema={
        "log_level": dg.Field(
            str,
            is_required=False,
            default_value="DEBUG",
            description="Lowest level written (Dagster's console default is DEBUG).",
        )
    },
    description="One JSON object per line on stderr (DTAAS_LOG_FORMAT=json).",
)
def json_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    # A fresh Logger, not logging.getLogger(): Dagster creates one per run and step.
    logger_ = logging.Logger("dtaas_dagster.run", level=level if isinstance(level, int) else logging.DEBUG)
    logger_.addHandler(json_handler())
    return logger_


def configure_process_logging(log_format_value: str) -> None:
    """JSON for this process's product loggers and Python warnings (idempotent)."""
    if log_format_value != "json":
        return
    logging.captureWarnings(True)
    for name in _PRODUCT_LOGGERS:
        logger_ = logging.getLogger(name)
        if not any(isinstance(h.formatter, JsonLogFormatter) for h in logger_.handlers):
            logger_.addHandler(json_handler())
        logger_.propagate = False
        if logger_.level == logging.NOTSET:
            logger_.setLevel(logging.INFO)


def run_loggers(log_format_value: str) -> dict[str, dg.LoggerDefinition] | None:
    """The jobs' loggers for ``Definitions(loggers=...)``: None keeps Dagster's default."""
    return {"console": json_console_logger} if log_format_value == "json" else None


def job_run_config() -> dict[str, Any] | None:
    """The default run config that turns the JSON logger on in a job, or None (Dagster's default).

    Dagster starts a job's loggers only when its run config names them (else it
    uses its colored console logger), so with JSON on every job of the code
    location carries ``loggers: {console: {}}``; sensors, schedules, the
    launchpad and ``dagster job execute`` all start from that default. Read at
    definitions-build time, with :func:`log_format`'s check.
    """
    return {"loggers": {"console": {}}} if log_format() == "json" else None


def cli_printer(log_format_value: str, *, task: str) -> Callable[..., None]:
    """How ``dtaas load`` prints a line: plain text, or a JSON object with the same fields as a run's."""
    if log_format_value != "json":
        return lambda message, **_: print(message, flush=True)

    def emit(message: str, **values: Any) -> None:
        line = {
            "timestamp": _timestamp(dt.datetime.now(dt.UTC).timestamp()),
            "level": "INFO",
            "event": values.pop("event", "cli"),
            "run_id": values.pop("run_id", None),
            "job": None,
            "step": None,
            "task": task,
            "table": None,
            "partition": values.pop("partition", None),
            "asset": None,
            "rows": None,
            "rows_per_second": None,
            "message": message,
            "logger": "dtaas.cli",
            **values,
        }
        print(json.dumps(line, default=str, ensure_ascii=False), flush=True)

    return emit
