"""Runs go through Dagster's queue and launcher: what a person does in the UI, through its GraphQL API.

One `dagster dev` (webserver + daemon: the run queue, the sensor and schedule
loops, run monitoring) serves every test here, with an instance whose queue
runs ONE run at a time, against the SQL Server double's demo database. Every
call below is what the UI sends: launching `<task>_full_load` from the
launchpad, listing a job's runs, terminating a run, re-executing a failed run
from failure and from asset failure.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dtaas_dagster_tests.runs import REPO_ROOT
from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

pytestmark = [pytest.mark.slow, pytest.mark.double_only]

PASSWORD = "Runs-Test-Passw0rd"
LOCATION = {"repositoryLocationName": "dtaas_dagster", "repositoryName": "__repository__"}
TABLES = ["dbo.customers", "dbo.products", "dbo.orders", "dbo.order_lines"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Dagster:
    """A running `dagster dev` and the GraphQL calls the UI makes."""

    def __init__(self, port: int, double: DoubleProcess, lake: Path) -> None:
        self.port, self.double, self.lake = port, double, lake

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload
        return payload["data"]

    def launch(self, job: str, tags: dict[str, str] | None = None) -> str:
        params = {
            "selector": {**LOCATION, "jobName": job},
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self.graphql(LAUNCH, {"params": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def run(self, run_id: str) -> dict[str, Any]:
        return self.graphql(RUN, {"id": run_id})["runOrError"]

    def runs(self, **run_filter: Any) -> list[dict[str, Any]]:
        return self.graphql(RUNS, {"filter": run_filter})["runsOrError"]["results"]

    def wait(
        self, run_id: str, statuses: tuple[str, ...] = ("SUCCESS", "FAILURE", "CANCELED"), timeout: float = 300
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            time.sleep(1)
        raise AssertionError(f"run {run_id} is still {self.run(run_id)['status']}, not in {statuses}")

    def load_run_for(self, request_run_id: str, timeout: float = 120) -> dict[str, Any]:
        """The `<task>_tables` run the sensor created for a `<task>_full_load` request."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.runs(tags=[{"key": "dtaas/requested_by", "value": request_run_id}])
            if found:
                assert len(found) == 1, found
                return found[0]
            time.sleep(1)
        raise AssertionError(f"the sensor created no load run for request {request_run_id}")


RUN_FIELDS = """runId jobName status startTime endTime tags { key value }
  stepStats { stepKey status startTime endTime } assetMaterializations { assetKey { path } partition }"""
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { " + RUN_FIELDS + " } } }"
RUNS = "query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results { " + RUN_FIELDS + " } } } }"
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
TERMINATE = """mutation($id: String!) { terminateRun(runId: $id) {
  __typename ... on TerminateRunSuccess { run { runId } } ... on TerminateRunFailure { message }
  ... on PythonError { message } } }"""
LOGS = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on MessageEvent { message } } } } }"""
REEXECUTE = """mutation($params: ReexecutionParams!) { launchRunReexecution(reexecutionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


CHECK_EXECUTIONS = """query($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 5) { runId status } }"""


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def _write_setup(tmp: Path, double_port: int, lake: Path) -> tuple[Path, Path]:
    config = {
        "sources": {
            "sales": {
                "host": "127.0.0.1",
                "port": double_port,
                "database": "sales",
                "user": "sa",
                "password_env": "DTAAS_SALES_PASSWORD",
                "encrypt": "no",
                "login_timeout_seconds": 5,
            }
        },
        "destinations": {"lake": {"type": "s3", "url": f"file://{lake}"}},
        "tasks": {
            "demo": {
                "source": "sales",
                "destination": "lake",
                "tables": TABLES,
                "parallel_tables": 2,
                "retry": {"max_retries": 0},
            }
        },
    }
    config_path = tmp / "dtaas.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    home = tmp / "dagster_home"
    home.mkdir()
    instance = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    instance["concurrency"]["runs"]["max_concurrent_runs"] = 1  # the queue holds all but one run
    instance["concurrency"]["pools"]["default_limit"] = 1  # one table read at a time on the server
    instance["run_monitoring"].update(poll_interval_seconds=5, free_slots_after_run_end_seconds=5)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    return config_path, home


@pytest.fixture(scope="module")
def dagster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dagster]:
    tmp = tmp_path_factory.mktemp("runs")
    lake = tmp / "lake"
    port = _free_port()
    with DoubleProcess(port=0, password=PASSWORD, demo=True) as double:
        config_path, home = _write_setup(tmp, double.port, lake)
        env = dict(os.environ, DTAAS_CONFIG=str(config_path), DTAAS_SALES_PASSWORD=PASSWORD, DAGSTER_HOME=str(home))
        dagster_bin = str(Path(sys.executable).with_name("dagster"))
        process = subprocess.Popen(
            [
                "env",
                "--default-signal=INT",
                dagster_bin,
                "dev",
                "-m",
                "dtaas_dagster",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            cwd=tmp,
            stdout=(tmp / "dev.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 240
            while True:
                assert process.poll() is None, (tmp / "dev.log").read_text()[-3000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, "dagster dev did not answer in time"
                    time.sleep(1)
            yield Dagster(port, double, lake)
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_a_launchpad_request_becomes_one_queued_run_with_every_table(dagster: Dagster) -> None:
    request_id = dagster.launch("demo_full_load")
    assert dagster.wait(request_id)["status"] == "SUCCESS"
    load = dagster.wait(dagster.load_run_for(request_id)["runId"])
    assert load["status"] == "SUCCESS" and load["jobName"] == "demo_tables"
    tags = _tags(load)
    # created by the sensor (the UI shows "Sensor", not "Manually launched"), for one new snapshot
    assert tags["dagster/sensor_name"] == "demo_full_load_requests"
    assert "-full-r" in tags["dagster/partition"]
    # two steps (parallel_tables: 2) of two tables each, and one materialization per table
    assert sorted(s["stepKey"] for s in load["stepStats"]) == ["demo__tables_01_of_02", "demo__tables_02_of_02"]
    # the server's pool (limit 1 here) keeps the two steps apart: one table read at a time
    first, second = sorted(load["stepStats"], key=lambda s: s["startTime"])
    assert second["startTime"] >= first["endTime"], load["stepStats"]
    materialized = sorted(("/".join(m["assetKey"]["path"]), m["partition"]) for m in load["assetMaterializations"])
    assert materialized == sorted((f"demo/dbo/{t.split('.')[1]}", tags["dagster/partition"]) for t in TABLES)
    # the job's run list (what the UI's Runs tab of demo_tables shows) includes it
    assert load["runId"] in {r["runId"] for r in dagster.runs(pipelineName="demo_tables")}
    assert (dagster.lake / "sales/dbo/orders" / tags["dagster/partition"] / "_manifest.json").exists()


def test_requests_wait_in_the_queue_behind_max_concurrent_runs(dagster: Dagster) -> None:
    dagster.double.control.add_latency(0.3)  # every statement slower: each load takes several seconds
    try:
        first, second = dagster.launch("demo_full_load"), dagster.launch("demo_full_load")
        loads = [dagster.load_run_for(first)["runId"], dagster.load_run_for(second)["runId"]]
        seen_queued = False
        while True:
            states = [dagster.run(run_id)["status"] for run_id in loads]
            seen_queued |= "QUEUED" in states and "STARTED" in states
            assert states.count("STARTED") <= 1, states
            if all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in states):
                break
            time.sleep(0.5)
    finally:
        dagster.double.control.clear_faults()
    runs = [dagster.run(run_id) for run_id in loads]
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"]
    assert seen_queued, "one load should have waited in the queue while the other ran"
    ordered = sorted(runs, key=lambda r: r["startTime"])
    assert ordered[1]["startTime"] >= ordered[0]["endTime"]  # never both at once


def test_terminate_from_the_ui_cancels_the_load(dagster: Dagster) -> None:
    dagster.double.control.add_latency(2.0)
    try:
        load_id = dagster.load_run_for(dagster.launch("demo_full_load"))["runId"]
        dagster.wait(load_id, statuses=("STARTED",))
        result = dagster.graphql(TERMINATE, {"id": load_id})["terminateRun"]
        assert result["__typename"] == "TerminateRunSuccess", result
        assert dagster.wait(load_id)["status"] == "CANCELED"
    finally:
        dagster.double.control.clear_faults()


def test_reexecution_from_asset_failure_loads_only_the_failed_table(dagster: Dagster) -> None:
    dagster.double.control.fail_statement(r"FROM \[dbo\]\.\[orders\]", times=1)
    try:
        load = dagster.wait(dagster.load_run_for(dagster.launch("demo_full_load"))["runId"])
    finally:
        dagster.double.control.clear_faults()
    assert load["status"] == "FAILURE"
    # dbo.orders failed; the three other tables (one of them in the same step) were loaded
    done = {"/".join(m["assetKey"]["path"]) for m in load["assetMaterializations"]}
    assert done == {"demo/dbo/customers", "demo/dbo/products", "demo/dbo/order_lines"}
    params = {"parentRunId": load["runId"], "strategy": "FROM_ASSET_FAILURE"}
    result = dagster.graphql(REEXECUTE, {"params": params})["launchRunReexecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    retry = dagster.wait(result["run"]["runId"])
    assert retry["status"] == "SUCCESS"
    assert [("/".join(m["assetKey"]["path"]), m["partition"]) for m in retry["assetMaterializations"]] == [
        ("demo/dbo/orders", _tags(load)["dagster/partition"])
    ]
    # and "from failure" re-runs the failed step for the same partition
    params = {"parentRunId": load["runId"], "strategy": "FROM_FAILURE"}
    result = dagster.graphql(REEXECUTE, {"params": params})["launchRunReexecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    again = dagster.wait(result["run"]["runId"])
    assert again["status"] == "SUCCESS" and _tags(again)["dagster/partition"] == _tags(load)["dagster/partition"]
    assert {"/".join(m["assetKey"]["path"]) for m in again["assetMaterializations"]} >= {"demo/dbo/orders"}


def test_reexecution_from_asset_failure_checks_the_reloaded_table_again(dagster: Dagster) -> None:
    """A read cut short fails the table's row_count check; "from asset failure" must reload the
    table *and* evaluate its checks again (they are blocking), so the failure is replaced."""
    # the bulk read only (it ends with ROWCOUNT_BIG()); a profile query of the table comes first
    dagster.double.control.drop_after_rows(100, matching=r"FROM \[dbo\]\.\[orders\].*ROWCOUNT_BIG", times=1)
    try:
        load = dagster.wait(dagster.load_run_for(dagster.launch("demo_full_load"))["runId"])
    finally:
        dagster.double.control.clear_faults()
    assert load["status"] == "FAILURE"

    def newest_row_count() -> dict[str, str]:
        variables = {"key": {"path": ["demo", "dbo", "orders"]}, "name": "row_count"}
        return dagster.graphql(CHECK_EXECUTIONS, variables)["assetCheckExecutions"][0]

    assert newest_row_count() == {"runId": load["runId"], "status": "FAILED"}
    params = {"parentRunId": load["runId"], "strategy": "FROM_ASSET_FAILURE"}
    result = dagster.graphql(REEXECUTE, {"params": params})["launchRunReexecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    retry = dagster.wait(result["run"]["runId"])
    assert retry["status"] == "SUCCESS"
    assert [m["assetKey"]["path"][-1] for m in retry["assetMaterializations"]] == ["orders"]
    assert newest_row_count() == {"runId": retry["runId"], "status": "SUCCEEDED"}


def test_a_killed_run_is_marked_failed_and_gives_back_its_pool_slot(dagster: Dagster) -> None:
    """kill -9 of a run's processes while a step holds the server's only pool slot: Dagster marks
    the run failed, run monitoring frees the slot, and the next load runs."""
    import psutil

    dagster.double.control.add_latency(1.0)
    try:
        load_id = dagster.load_run_for(dagster.launch("demo_full_load"))["runId"]
        deadline = time.monotonic() + 120
        while not any(s["status"] == "IN_PROGRESS" for s in dagster.run(load_id)["stepStats"]):
            assert time.monotonic() < deadline, "no step started"
            time.sleep(0.5)
        messages = [e.get("message", "") for e in dagster.graphql(LOGS, {"id": load_id})["logsForRun"]["events"]]
        [pid] = {int(m.split("pid: ")[1].split(")")[0]) for m in messages if "Started process for run (pid:" in m}
        worker = psutil.Process(pid)
        for process in [*worker.children(recursive=True), worker]:
            process.kill()  # SIGKILL: no cleanup, no slot release
    finally:
        dagster.double.control.clear_faults()
    assert dagster.wait(load_id, timeout=120)["status"] == "FAILURE"
    # the slot comes back (free_slots_after_run_end_seconds), so the next load is not blocked forever
    after = dagster.wait(dagster.load_run_for(dagster.launch("demo_full_load"))["runId"], timeout=300)
    assert after["status"] == "SUCCESS"
