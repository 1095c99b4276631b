"""Helpers for end-to-end tests: write a dtaas.yaml, run `dagster job execute`, read the instance.

Runs are real: a `dagster job execute -m dtaas_dagster` subprocess with its own
DAGSTER_HOME (SQLite), talking to the SQL Server fixture and to moto's S3
server over TCP on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "DTAAS_TEST_SOURCE_PASSWORD"
S3_KEY_ENV = "DTAAS_TEST_S3_KEY_ID"
S3_SECRET_ENV = "DTAAS_TEST_S3_SECRET"


@dataclass
class RunOutcome:
    returncode: int
    output: str
    dagster_home: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def source_config(sqlserver: Any, database: str, **overrides: Any) -> dict[str, Any]:
    return {
        "host": sqlserver.host,
        "port": sqlserver.port,
        "database": database,
        "user": sqlserver.user,
        "password_env": PASSWORD_ENV,
        "encrypt": "no",
        "trust_server_certificate": True,
        "login_timeout_seconds": 5,
        **overrides,
    }


def s3_destination(bucket: str, endpoint_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "s3",
        "url": f"s3://{bucket}/lake",
        "endpoint_url": endpoint_url,
        "region": "us-east-1",
        "access_key_id_env": S3_KEY_ENV,
        "secret_access_key_env": S3_SECRET_ENV,
        **overrides,
    }


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    path = directory / "dtaas.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def dagster_home(directory: Path) -> Path:
    home = directory / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    return home


def run_job(
    *,
    job: str,
    config_path: Path,
    home: Path,
    password: str,
    extra_args: list[str] | None = None,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> RunOutcome:
    """`dagster job execute -m dtaas_dagster -j <job>`, as a user's script would run it."""
    environment = dict(os.environ)
    environment.update(
        DTAAS_CONFIG=str(config_path),
        DAGSTER_HOME=str(home),
        **{PASSWORD_ENV: password},
    )
    environment.update(env or {})
    dagster = str(Path(sys.executable).with_name("dagster"))
    completed = subprocess.run(
        [dagster, "job", "execute", "-m", "dtaas_dagster", "-j", job, *(extra_args or [])],
        env=environment,
        cwd=config_path.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return RunOutcome(completed.returncode, completed.stdout + completed.stderr, home)


def run_load(
    *,
    task: str,
    config_path: Path,
    home: Path,
    password: str,
    partition: str | None = None,
    in_process: bool = True,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> RunOutcome:
    """`dtaas load --task <task>` as a user's script runs it (in-process unless asked otherwise)."""
    environment = dict(os.environ)
    environment.update(DTAAS_CONFIG=str(config_path), DAGSTER_HOME=str(home), **{PASSWORD_ENV: password})
    environment.update(env or {})
    command = [sys.executable, "-m", "dtaas_dagster.cli", "load", "--task", task]
    command += ["--partition", partition] if partition else []
    command += ["--in-process"] if in_process else []
    completed = subprocess.run(
        command, env=environment, cwd=config_path.parent, capture_output=True, text=True, timeout=timeout
    )
    return RunOutcome(completed.returncode, completed.stdout + completed.stderr, home)


def run_log(home: Path) -> list[tuple[str, str]]:
    """Every run's event log at ``home``, as (event type, message) pairs ("LOG" for plain log lines).

    Sturdier than the CLI's printed output for asserting what a run did."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [
            (entry.dagster_event.event_type_value if entry.dagster_event else "LOG", entry.user_message or "")
            for run in instance.get_runs()
            for entry in instance.all_logs(run.run_id)
        ]


def materializations(home: Path, asset_key: list[str]) -> list[Any]:
    """The materializations of one asset recorded in the instance at ``home``, oldest first."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = instance.fetch_materializations(dg.AssetKey(asset_key), limit=1000, ascending=True)
        return [record.asset_materialization for record in result.records]


def pool_limit(home: Path, pool: str) -> int | None:
    """The slot count of a concurrency pool in the instance at ``home`` (None when unset)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        if pool not in set(storage.get_concurrency_keys()):
            return None
        return storage.get_concurrency_info(pool).slot_count


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    command: Sequence[str],
    *,
    port: int,
    env: dict[str, str],
    cwd: Path,
    output: IO[Any] | int | None,
    describe: Any = lambda: "",
    start_timeout: float = 240,
) -> Iterator[subprocess.Popen[Any]]:
    """Start a `dagster dev`-like command in its own session, wait for its webserver's
    /server_info on 127.0.0.1:``port``, and stop it (SIGINT, then SIGKILL) afterwards.
    ``describe()`` adds the process's output to a failure message."""
    process = subprocess.Popen(
        list(command), env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            assert process.poll() is None, f"{command[0]} exited early {describe()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"the UI did not answer in time {describe()}"
                time.sleep(1)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
