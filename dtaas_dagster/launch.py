"""``dtaas load``: start a task's full load from a script and follow it to the end.

The run is created by Dagster's own CLI, so it is an ordinary run of
``<task>_tables`` for one partition:

- default: ``dagster job launch`` submits it to the instance's run coordinator
  (queued behind ``max_concurrent_runs`` and tag limits when the coordinator is
  the queued one; a ``dagster-daemon`` must be running to dequeue it) and its
  run launcher starts it (a subprocess, a container, a pod);
- ``--in-process``: ``dagster job execute`` runs it in a child process of this
  command, without queue or launcher: for machines with no daemon.

Either way the exit status is 0 only when every table loaded.
"""

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from dtaas_dagster.config import ConfigError, load_config
from dtaas_dagster.jobs import load_run_tags, tables_job_name
from dtaas_dagster.logs import LogFormatError, cli_printer, job_run_config, log_format
from dtaas_dagster.partitions import new_request_origin, partitions_def_name, snapshot_key

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STUCK = 3
_DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _dagster_bin(name: str = "dagster") -> str:
    return str(Path(sys.executable).with_name(name))


@contextmanager
def _first_use_lock() -> Iterator[None]:
    """Serialize the storage set-up of two ``dtaas load`` started at once on a new DAGSTER_HOME.

    Both would create the instance's SQLite schemas at the same moment, and one fails
    (alembic: "more than one head"). A lock file in DAGSTER_HOME; a no-op where flock
    does not exist (the run storage of a shared deployment is a database server anyway).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    home = Path(os.environ["DAGSTER_HOME"])
    try:
        home.mkdir(parents=True, exist_ok=True)
        handle = open(home / ".dtaas-load.lock", "a+")  # noqa: SIM115 - closed below
    except OSError:  # a read-only DAGSTER_HOME (a mounted dagster.yaml, storage elsewhere): no lock
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def choose_partition(instance: dg.DagsterInstance, task: str, partition: str | None) -> str:
    """An existing partition (checked) or a new snapshot key, registered."""
    name = partitions_def_name(task)
    if partition:
        if not instance.has_dynamic_partition(name, partition):
            newest = sorted(instance.get_dynamic_partitions(name))[-3:]
            raise ConfigError(
                f"partition {partition!r} of task {task} does not exist; leave --partition out for a new snapshot"
                + (f", or use one of the newest: {', '.join(newest)}." if newest else ".")
            )
        return partition
    key = snapshot_key(dt.datetime.now(dt.UTC), new_request_origin())
    instance.add_dynamic_partitions(name, [key])
    return key


def _daemon_alive(instance: dg.DagsterInstance, within_seconds: float = 60) -> bool:
    heartbeats = instance.get_daemon_heartbeats()
    now = time.time()
    return any(now - beat.timestamp < within_seconds for beat in heartbeats.values())


def _follow(instance: dg.DagsterInstance, run_id: str, *, out: Callable[..., None], timeout: float | None) -> int:
    """Print the run's log lines until it ends; the exit status for the script."""
    cursor = None
    started = time.monotonic()
    warned_queue = False
    while True:
        connection = instance.get_records_for_run(run_id, cursor=cursor)
        cursor = connection.cursor
        for record in connection.records:
            entry = record.event_log_entry
            if "blocked by limit for pool" in (entry.user_message or ""):
                out(
                    f"  {entry.step_key}: {entry.user_message}: every slot of that pool is held by other steps. "
                    "It frees when they end; a killed run's slots come back after run monitoring marks it "
                    "failed (free_slots_after_run_end_seconds). See `dagster instance concurrency get --all`, "
                    "or raise the limit with `dtaas pools` / `dagster instance concurrency set <pool> <n>`."
                )
                continue
            level = entry.level if isinstance(entry.level, int) else logging.getLevelName(entry.level)
            if isinstance(level, int) and level >= logging.INFO and entry.user_message:
                step = f"{entry.step_key}: " if entry.step_key else ""
                event = entry.dagster_event.event_type_value if entry.dagster_event else "log"
                out(f"  {step}{entry.user_message}", run_id=run_id, step=entry.step_key, event=event)
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in _DONE:
            out(f"run {run_id}: {run.status.value}", run_id=run_id, event="run_end", status=run.status.value)
            return 0 if run.status == dg.DagsterRunStatus.SUCCESS else EXIT_FAILED
        waited = time.monotonic() - started
        if run is not None and run.status == dg.DagsterRunStatus.QUEUED and waited > 20 and not warned_queue:
            warned_queue = True
            if not _daemon_alive(instance):
                out(
                    f"run {run_id} is queued, but no dagster-daemon is running for this instance "
                    f"({os.environ.get('DAGSTER_HOME', 'DAGSTER_HOME unset')}): start one with "
                    "`dagster-daemon run -w workspace.yaml`, or use `dtaas load --in-process`."
                )
                return EXIT_STUCK
        if timeout is not None and waited > timeout:
            out(f"run {run_id} has not finished after {timeout:.0f}s; it goes on (see the UI). Giving up waiting.")
            return EXIT_STUCK
        time.sleep(1.0)


@contextmanager
def _run_config_args() -> Iterator[list[str]]:
    """``-c <file>`` with the jobs' default run config (JSON logs), or nothing.

    Dagster's CLI runs a job with the run config it is given, not the job's
    default, and takes run config only from files.
    """
    config = job_run_config()
    if not config:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="dtaas-load-") as directory:
        path = Path(directory) / "run_config.json"
        path.write_text(json.dumps(config))
        yield ["-c", str(path)]


def run_load(
    *,
    task: str,
    config_path: str | None,
    partition: str | None = None,
    in_process: bool = False,
    timeout: float | None = None,
    out: Callable[..., None] | None = None,
) -> int:
    """Start (and follow) one full load of ``task``; returns the exit status.

    ``out`` prints a line (keyword fields are for JSON logs); by default plain
    text, or JSON lines when ``DTAAS_LOG_FORMAT=json``.
    """
    try:
        format_ = log_format()
    except LogFormatError as exc:
        raise ConfigError(str(exc)) from None
    out = out or cli_printer(format_, task=task)
    config = load_config(config_path)
    if task not in config.tasks:
        raise ConfigError(f"task {task!r} is not defined; tasks: {', '.join(config.tasks)}.")
    if not os.environ.get("DAGSTER_HOME"):
        raise ConfigError(
            "DAGSTER_HOME is not set: runs would vanish into a temporary instance. Set it to the "
            "directory of your dagster.yaml (the one the UI and the daemon use)."
        )
    env = dict(os.environ)
    if config_path:
        env["DTAAS_CONFIG"] = str(Path(config_path).absolute())
    with _first_use_lock():  # a new instance's storage is created here, one process at a time
        instance = dg.DagsterInstance.get()
        instance.get_run_records(limit=1)
        instance.get_dynamic_partitions(partitions_def_name(task))
    with instance, _run_config_args() as run_config:
        key = choose_partition(instance, task, partition)
        tags = {**load_run_tags(task, key, trigger="cli"), "dagster/partition": key}
        job = tables_job_name(task)
        if in_process:
            out(f"task {task}: loading partition {key} in this process (dagster job execute)", partition=key)
            command = [
                _dagster_bin(),
                "job",
                "execute",
                "-m",
                "dtaas_dagster",
                "-j",
                job,
                "--tags",
                json.dumps(tags),
                *run_config,
            ]
            # Dagster 1.13 marks `dagster job execute` superseded by `dg launch` (dagster-dg-cli, not a
            # dependency); the warning is about our command line, not the user's, so it is not shown.
            quiet = {"PYTHONWARNINGS": "ignore:Function `job_execute_command` is superseded"}
            completed = subprocess.run(command, env={**env, **quiet}, check=False)
            return 0 if completed.returncode == 0 else EXIT_FAILED
        run_id = str(uuid.uuid4())
        out(
            f"task {task}: submitting run {run_id} of {job} for partition {key} (dagster job launch)",
            partition=key,
            run_id=run_id,
        )
        command = [
            _dagster_bin(),
            "job",
            "launch",
            "-m",
            "dtaas_dagster",
            "-j",
            job,
            "--tags",
            json.dumps(tags),
            "--run-id",
            run_id,
            *run_config,
        ]
        launched = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if launched.returncode != 0 or instance.get_run_by_id(run_id) is None:
            out(f"dagster job launch failed (exit {launched.returncode}):\n{launched.stdout}{launched.stderr}")
            return EXIT_FAILED
        return _follow(instance, run_id, out=out, timeout=timeout)
