"""The demo in a real browser: a person starts a full load by clicking, and sees it work.

`dagster dev` (webserver and daemon) runs on the SQL Server double's demo
database; headless Chromium (Debian's `chromium`, driven by Playwright) opens
the UI and does what a person does: Jobs -> demo_full_load -> Launchpad ->
Launch Run; then Jobs -> demo_tables -> Runs -> the run the sensor started,
waits for Success, filters the run's log for the progress lines; then Catalog
-> demo/dbo/orders for its row count, storage and columns; then the
webserver's GraphQL API (what the page drew from) for the assets' group and
kinds, and the lake for one snapshot partition of every table. It replaces the
GraphQL-only UI test (one `dagster dev` and one load instead of two). `make setup`
installs Chromium (apt) and Playwright (pip, from requirements.lock); without
them this test fails and says so. It is skipped only when DTAAS_SKIP_BROWSER is
set (docs/operations.md#local-development).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dtaas_dagster_tests.runs import REPO_ROOT, dagster_home, free_port, serving
from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

# dagster dev starting, the sensor, the load and the UI on a busy 2-core machine: more than the suite's 300 s
pytestmark = [pytest.mark.slow, pytest.mark.double_only, pytest.mark.timeout(600)]

if os.environ.get("DTAAS_SKIP_BROWSER"):
    pytest.skip("DTAAS_SKIP_BROWSER is set", allow_module_level=True)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    import playwright.sync_api as playwright_api
except ImportError:  # pragma: no cover - depends on the machine
    playwright_api = None


@pytest.fixture()
def chromium() -> str:
    """Debian's Chromium and Playwright, or a failure that says how to get them (never a silent skip)."""
    if playwright_api is None:
        pytest.fail(
            "the Python package playwright is missing: run `make setup` (it installs requirements.lock), "
            "or set DTAAS_SKIP_BROWSER=1 to skip the browser test"
        )
    if CHROMIUM is None:
        pytest.fail(
            "Debian's chromium is missing: run `make setup` (apt-get install chromium), "
            "or set DTAAS_SKIP_BROWSER=1 to skip the browser test"
        )
    return CHROMIUM


ROWS = {"dbo.customers": 500, "dbo.products": 200, "dbo.orders": 1500, "dbo.order_lines": 3840}
LONG = 300_000  # ms: a load on a busy 2-core machine


@pytest.fixture()
def ui(tmp_path: Path) -> Iterator[str]:
    """`dagster dev` on the demo; yields the UI's base URL."""
    password = "Browser-Test-Passw0rd"
    port = free_port()
    with DoubleProcess(port=0, password=password, demo=True) as double:
        home = dagster_home(tmp_path)
        env = dict(
            os.environ,
            DTAAS_CONFIG=str(REPO_ROOT / "dtaas.yaml"),
            DTAAS_SQLSERVER_PORT=str(double.port),
            DTAAS_SALES_PASSWORD=password,
            DTAAS_LAKE_URL=f"file://{tmp_path / 'lake'}",
            DAGSTER_HOME=str(home),
        )
        env.pop("DTAAS_LOG_FORMAT", None)
        dagster = str(Path(sys.executable).with_name("dagster"))
        command = [
            "env",
            "--default-signal=INT",
            dagster,
            "dev",
            "-m",
            "dtaas_dagster",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        with serving(command, port=port, env=env, cwd=home, output=subprocess.DEVNULL):
            yield f"http://127.0.0.1:{port}"


NAV = {"Jobs": "/jobs", "Catalog": "/assets"}


def _click_nav(page: object, name: str) -> None:
    """Click an item of the UI's left navigation."""
    page.locator(f"a[href='{NAV[name]}']", has_text=name).first.click()  # type: ignore[attr-defined]


def test_a_person_starts_a_full_load_and_sees_tables_rows_and_progress(chromium: str, ui: str, tmp_path: Path) -> None:
    assert playwright_api is not None
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        # A fresh instance greets the first visitor with a newsletter dialog: a person skips it.
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"), lambda: page.get_by_role("button", name="Skip").click()
        )
        try:
            page.goto(ui + "/")
            # Start a full load: Jobs -> demo_full_load -> Launchpad -> Launch Run (no partition to type).
            _click_nav(page, "Jobs")
            page.get_by_role("link", name="demo_full_load").first.click()
            page.get_by_text("Launchpad", exact=True).first.click()
            page.get_by_role("button", name="Launch Run").click()
            page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}"))

            # The load itself: the run of demo_tables that the sensor starts once the request succeeded;
            # a person refreshes the job's run list until it shows up.
            _click_nav(page, "Jobs")
            page.get_by_role("link", name="demo_tables").first.click()
            page.get_by_role("tab", name="Runs").click()
            run_link = page.locator("a[href^='/runs/']").filter(has_not_text="View").first
            deadline = time.monotonic() + 300  # the daemon's sensor ticks every 5 s; a busy machine is slower
            while not run_link.count():
                assert time.monotonic() < deadline, (
                    f"no demo_tables run appeared on {page.url}: " + page.inner_text("body")[:2000]
                )
                page.wait_for_timeout(5000)
                page.reload()
                page.get_by_role("tab", name="Runs").click()
            run_link.click()
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=LONG)
            expect(page.get_by_text(re.compile(r"partition: \d{4}-\d\d-\d\dT\d{6}Z-full-r")).first).to_be_visible()
            page.get_by_placeholder(re.compile("Filter")).first.fill("rows/s")
            for table, rows in ROWS.items():  # one line per table of one batch: rows read / estimate, rows/s
                expect(
                    page.get_by_text(
                        re.compile(
                            rf"{re.escape(table)}: read {rows:,} / ~{rows:,} rows \(100%\) in [\d.]+s \([\d,]+ rows/s\)"
                        )
                    )
                ).to_be_visible()
            page.screenshot(path=str(tmp_path / "run.png"))

            # The tables in the catalog, and one table's page.
            _click_nav(page, "Catalog")
            for table in ("customers", "products", "orders", "order_lines"):
                expect(page.locator(f"a[href^='/assets/demo/dbo/{table}']").first).to_be_visible()
            page.locator("a[href^='/assets/demo/dbo/orders']").first.click()
            expect(page.get_by_text("Row count")).to_be_visible()
            expect(page.get_by_text("1,500", exact=True).first).to_be_visible()
            expect(page.get_by_text("sales.dbo.orders", exact=True).first).to_be_visible()  # dagster/table_name
            expect(page.get_by_text("SQL Server type: money")).to_be_visible()
            page.screenshot(path=str(tmp_path / "asset.png"))
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()

    # What the page drew comes from these: the demo's assets, in their group, of kinds SQL Server and
    # file (a file:// lake); and the lake holds one snapshot partition of every table.
    nodes = _graphql(ui, "{ assetNodes { assetKey { path } groupName kinds } }")["assetNodes"]
    demo = [n for n in nodes if n["assetKey"]["path"][0] == "demo"]
    assert sorted("/".join(n["assetKey"]["path"]) for n in demo) == [
        "demo/dbo/customers",
        "demo/dbo/order_lines",
        "demo/dbo/orders",
        "demo/dbo/products",
    ]
    assert all(n["groupName"] == "demo" and set(n["kinds"]) == {"sqlserver", "file"} for n in demo), demo
    manifests = sorted((tmp_path / "lake").rglob("_manifest.json"))
    assert [m.parent.parent.name for m in manifests] == ["customers", "order_lines", "orders", "products"]
    assert len({m.parent.name for m in manifests}) == 1 and "-full-r" in manifests[0].parent.name


def _graphql(ui: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{ui}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return dict(payload["data"])
