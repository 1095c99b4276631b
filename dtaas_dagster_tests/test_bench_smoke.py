"""Smoke tests of bench/full_load.py, bench/many_tables.py and bench/cdc.py: each runs end to end
and prints its summary line.

No timing is asserted (numbers depend on the machine); only that every variant
ran, moved the expected rows (the benchmark checks that itself and exits
non-zero otherwise) and that the last line has the documented format.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _bench(script: str, *args: str, summary: re.Pattern[str], timeout: float) -> str:
    """Run ``bench/<script>``: it must exit 0 and end with its summary line; its whole output."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    lines = done.stdout.strip().splitlines()
    assert summary.match(lines[-1]), lines[-1]
    return "\n".join(lines)


SUMMARY = re.compile(
    r"^full_load rows_per_s=\d+ vs_raw=\d+\.\d\d vs_pandas=\d+\.\d\d rss_5m_over_1m=\d+\.\d\d "
    r"rss_max_over_plain=\d+\.\d\d$"
)


@pytest.mark.slow
def test_full_load_benchmark_prints_its_summary_line() -> None:
    table = _bench("full_load.py", "--rows", "20000", "--quick", summary=SUMMARY, timeout=240)
    for variant in ("pipeline_file", "pipeline_s3", "raw_arrow_odbc", "pandas"):
        assert re.search(rf"^{variant} +20,000 ", table, re.MULTILINE), f"{variant} row missing:\n{table}"
    assert re.search(r"^pipeline_file +100,000 ", table, re.MULTILINE), table
    for variant in ("pipeline_max", "pipeline_max_plain"):  # the (max) table: 2,000 rows
        assert re.search(rf"^{variant} +2,000 ", table, re.MULTILINE), f"{variant} row missing:\n{table}"


MANY_TABLES_SUMMARY = re.compile(r"^many_tables tables=6 wall_s=\d+\.\d per_table_cpu_s=\d+\.\d\d\d$")


@pytest.mark.slow
def test_many_tables_benchmark_prints_its_summary_line() -> None:
    table = _bench(
        "many_tables.py", "--tables", "6", "--baseline-tables", "2", "--skip-no-checks",
        summary=MANY_TABLES_SUMMARY, timeout=600,
    )  # fmt: skip
    # both loads ran and were verified (the script checks every manifest's row count and exits non-zero otherwise)
    assert re.search(r"^step_per_table +2 ", table, re.MULTILINE), table
    assert re.search(r"^grouped +6 ", table, re.MULTILINE), table
    assert "CPU per table: step_per_table / grouped = " in table


CDC_SUMMARY = re.compile(
    r"^cdc changes_per_s=\d+ vs_raw=\d+\.\d\d tick_100_tables_s=\d+\.\d\d\d "
    r"latency_p50_s=\d+\.\d latency_p95_s=\d+\.\d$"
)


@pytest.mark.slow
def test_cdc_benchmark_prints_its_summary_line() -> None:
    # --quick: 20,000 changes, 20 tables over 2,000 partitions, 15 s of changes through the real daemon
    table = _bench("cdc.py", "--quick", summary=CDC_SUMMARY, timeout=600)
    assert "throughput: 20,000 changes in " in table  # every change was written (counted from the files' rows)
    assert "the windows' catalog facts came in 1 batch(es)" in table, table
    assert re.search(r"medians: \d+\.\ds between ticks; per run \d+\.\ds in the queue", table), table
