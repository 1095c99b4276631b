"""A real dagster-daemon serving a dtaas code location, for end-to-end CDC tests and the benchmark.

``DaemonProcess(config_path, home, env)`` starts ``dagster-daemon run -m
dtaas_dagster`` (the sensor, run queue and monitoring daemons; runs are
launched by the DefaultRunLauncher through a code server the daemon starts),
and ``start_sensor(name)`` uses Dagster's CLI (``dagster sensor start``), as an
operator would. Stop it with ``stop()`` or use it as a context manager.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import dagster as dg


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class DaemonProcess:
    def __init__(self, *, home: Path, env: dict[str, str], cwd: Path) -> None:
        self.home, self.cwd = home, cwd
        self.env = dict(os.environ, **env, DAGSTER_HOME=str(home))
        self.log_path = home / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DaemonProcess:
        # Create the instance's SQLite storage first: the daemon and the heartbeat poll below
        # creating it at the same moment can leave a second alembic head ("more than one head").
        with dg.DagsterInstance.from_config(str(self.home)):
            pass
        self.process = subprocess.Popen(
            ["env", "--default-signal=INT", _bin("dagster-daemon"), "run", "-m", "dtaas_dagster"],
            env=self.env,
            cwd=self.cwd,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            while not instance.get_daemon_heartbeats():
                assert self.process.poll() is None, self.log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "dagster-daemon did not start"
                time.sleep(1)
        return self

    def start_sensor(self, name: str) -> None:
        completed = subprocess.run(
            [_bin("dagster"), "sensor", "start", "-m", "dtaas_dagster", name],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
