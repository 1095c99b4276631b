"""`make dev` (`dtaas dev`) starts the UI without warnings a user must learn to ignore."""

import os
import sys
import time
from pathlib import Path

import pytest

from dtaas_dagster_tests.runs import REPO_ROOT, free_port, serving

pytestmark = [pytest.mark.slow, pytest.mark.double_only]


def test_dev_starts_without_warnings(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "DTAAS_"))}
    with (
        log.open("w") as out,
        serving(
            [sys.executable, "-m", "dtaas_dagster.cli", "dev", "--port", str(port)],
            port=port,
            env=env,
            cwd=REPO_ROOT,
            output=out,
            describe=lambda: "\n" + log.read_text()[-3000:],
        ),
    ):
        time.sleep(10)  # the daemon's first sensor ticks
    output = log.read_text()
    assert f"Serving dagster-webserver on http://127.0.0.1:{port}" in output
    warnings = [line for line in output.splitlines() if "warning" in line.lower()]
    assert not warnings, warnings
