"""`make dev` (`dtaas dev`) starts the UI without warnings a user must learn to ignore."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dtaas_dagster_tests.runs import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.double_only]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dev_starts_without_warnings(tmp_path) -> None:
    port = _free_port()
    log = tmp_path / "dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "DTAAS_"))}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "dtaas_dagster.cli", "dev", "--port", str(port)],
                                   cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the UI did not come up:\n" + log.read_text()[-3000:]
                time.sleep(1)
        time.sleep(10)  # the daemon's first sensor ticks
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert f"Serving dagster-webserver on http://127.0.0.1:{port}" in output
    warnings = [line for line in output.splitlines() if "warning" in line.lower()]
    assert not warnings, warnings
