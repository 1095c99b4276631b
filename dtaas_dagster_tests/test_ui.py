"""The Dagster UI path on the example config: `dagster dev` shows the assets, and a full load
starts with no partition key.

This drives the webserver's GraphQL API, which is what the UI itself calls when
a person opens the asset graph and presses *Launch run* in the launchpad of
`demo_full_load` (no partition picker, no run config). The daemon's sensor then
starts the `demo_tables` run for the new snapshot. The run machinery itself
(queue, terminate, re-execution) is tested in test_run_machinery.py.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dtaas_dagster_tests.runs import REPO_ROOT, dagster_home
from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

pytestmark = [pytest.mark.slow, pytest.mark.double_only]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


def _wait_for_webserver(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "dagster dev exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError("dagster dev did not answer in time")


RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
RUNS_BY_TAG = """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
  ... on Runs { results { runId } } } }"""
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def _wait_for_run(port: int, run_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _graphql(port, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not finish")


def test_dagster_dev_shows_assets_and_launches_a_full_load_without_a_partition_key(tmp_path: Path) -> None:
    password = "Ui-Test-Passw0rd"
    lake = tmp_path / "lake"
    port = _free_port()
    with DoubleProcess(port=0, password=password, demo=True) as double:
        env = dict(os.environ, DTAAS_CONFIG=str(REPO_ROOT / "dtaas.yaml"), DTAAS_SQLSERVER_PORT=str(double.port),
                   DTAAS_SALES_PASSWORD=password, DTAAS_LAKE_URL=f"file://{lake}",
                   DAGSTER_HOME=str(dagster_home(tmp_path)))
        dagster = str(Path(sys.executable).with_name("dagster"))
        process = subprocess.Popen(
            ["env", "--default-signal=INT", dagster, "dev", "-m", "dtaas_dagster", "-h", "127.0.0.1", "-p", str(port)],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            _wait_for_webserver(port, process)
            nodes = _graphql(port, "{ assetNodes { assetKey { path } groupName kinds } }")["assetNodes"]
            demo_nodes = [n for n in nodes if n["assetKey"]["path"][0] == "demo"]
            assert sorted("/".join(n["assetKey"]["path"]) for n in demo_nodes) == [
                "demo/dbo/customers", "demo/dbo/order_lines", "demo/dbo/orders", "demo/dbo/products"]
            assert all(n["groupName"] == "demo" and set(n["kinds"]) == {"sqlserver", "file"} for n in demo_nodes)

            selector = {"repositoryLocationName": "dtaas_dagster", "repositoryName": "__repository__",
                        "jobName": "demo_full_load"}
            launched = _graphql(port, LAUNCH, {"params": {"selector": selector, "runConfigData": {}}})["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            request_id = launched["run"]["runId"]
            assert _wait_for_run(port, request_id) == "SUCCESS"
            deadline = time.monotonic() + 120
            tag = [{"key": "dtaas/requested_by", "value": request_id}]
            while not (found := _graphql(port, RUNS_BY_TAG, {"tags": tag})["runsOrError"]["results"]):
                assert time.monotonic() < deadline, "the sensor started no load for the request"
                time.sleep(1)
            assert _wait_for_run(port, found[0]["runId"]) == "SUCCESS"
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    manifests = sorted(lake.rglob("_manifest.json"))
    assert [m.parent.parent.name for m in manifests] == ["customers", "order_lines", "orders", "products"]
    assert {m.parent.name for m in manifests} == {manifests[0].parent.name}  # one snapshot partition
    assert "-full-r" in manifests[0].parent.name
